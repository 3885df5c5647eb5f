"""The sweep table and its resumable CSV file.

File format (UTF-8 text, one row per line, every line ended by ``\\n``)::

    # ufm-sweep/1 fingerprint=<16 hex digits>
    # {"description": {...}, "meta": {...}, "schema": [[name, kind], ...]}
    lambda_H,lambda_W,seed,status,loss,...
    0.001,0.001,0,successful,0.0123...,...

The fingerprint is the SHA-256 (first 16 hex digits) of the canonical JSON of the description:
the problem (type, static options, every leaf not swept, arrays by a hash of their bytes), the
grid values, the seeds, the solver and its settings, and the columns. Floats are written with
``repr`` (shortest round-trip form), so a value read back is bit-for-bit the value written.

Rows are appended a chunk at a time with one write, then ``flush`` and ``fsync``. A row is
complete iff its ``\\n`` is on disk, so after a kill (``kill -9``, a full disk) the file holds
complete rows plus at most one torn last line, which :meth:`ResultsFile.open` cuts off before
anything is appended. Complete rows are never rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np

from .grid import FORMAT, differences

_KINDS = {"float": np.float64, "int": np.int64, "str": np.str_}


def _format(kind: str, v) -> str:
    if kind == "float":
        return repr(float(v))
    if kind == "int":
        return str(int(v))
    return str(v)


def _parse(kind: str, text: str):
    if kind == "float":
        return float(text)
    if kind == "int":
        return int(text)
    return text


class SweepTable:
    """The result of :func:`ufm.sweep`: one row per grid point, columns of numpy arrays.

    ``table["loss"]`` is a column (``float64``, ``int64`` or ``str`` array), ``table.names`` the
    column names in order (the grid keys, ``seed``, ``status``, ``loss``, ...; see
    :func:`ufm.sweep`), ``len(table)`` the number of rows. ``meta`` holds what plots need
    (e.g. the theoretical thresholds). :meth:`to_csv` needs nothing extra; :meth:`to_pandas`
    needs pandas.
    """

    def __init__(self, columns: dict[str, np.ndarray], schema=None, meta: dict | None = None):
        self.columns = {k: np.asarray(v) for k, v in columns.items()}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns must have equal lengths, got {sorted(lengths)}")
        if schema is None:
            schema = [(k, _kind_of(v)) for k, v in self.columns.items()]
        self.schema = [tuple(s) for s in schema]
        self.meta = dict(meta or {})

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {self.names}")
        return self.columns[name]

    def __contains__(self, name) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __repr__(self) -> str:
        ok = int(np.sum(self["status"] == "successful")) if "status" in self else 0
        return f"SweepTable({len(self)} rows, {ok} successful, columns={self.names})"

    def to_pandas(self):
        """A ``pandas.DataFrame`` with the same columns (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError(
                "SweepTable.to_pandas needs pandas (pip install pandas); to_csv needs nothing"
            ) from err
        return pd.DataFrame({k: v for k, v in self.columns.items()})

    def to_parquet(self, path) -> None:
        """Write the table as a Parquet file (needs pyarrow: the ``parquet`` extra).

        Columns and their types are the table's (``float64``, ``int64``, strings); ``meta``
        (e.g. the thresholds) is stored as JSON under the schema metadata key ``ufm.meta``.
        Read it back with ``pyarrow.parquet.read_table(path)`` or ``pandas.read_parquet``.
        """
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ImportError(
                "SweepTable.to_parquet needs pyarrow: pip install 'ufm[parquet]' (or pip install "
                "pyarrow); to_csv needs nothing"
            ) from err
        kinds = dict(self.schema)
        arrays = {}
        for name, col in self.columns.items():
            kind = kinds.get(name, _kind_of(col))
            arrays[name] = pa.array(col.astype(_KINDS[kind]) if kind != "str" else col.tolist())
        table = pa.table(arrays)
        table = table.replace_schema_metadata({"ufm.meta": json.dumps(self.meta)})
        pq.write_table(table, path)

    def to_csv(self, path) -> None:
        """Write the table as CSV (header line, then one line per row; floats round-trip)."""
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(self.names) + "\n")
            f.write(format_rows(self.schema, self.columns))

    @classmethod
    def from_csv(cls, path) -> SweepTable:
        """Read a results file written by :func:`ufm.sweep` (``out=``), rows in file order."""
        header, body = _read(path)
        if header is None:
            raise ValueError(f"{path}: not a ufm sweep results file (no '# {FORMAT}' header)")
        schema = [tuple(s) for s in header["schema"]]
        rows, _ = parse_rows(path, schema, body)
        return cls(rows, schema, header.get("meta"))


def _kind_of(arr: np.ndarray) -> str:
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return "int"
    if np.issubdtype(arr.dtype, np.floating):
        return "float"
    return "str"


def format_rows(schema, columns: dict[str, np.ndarray]) -> str:
    """The CSV lines of ``columns`` (each ended by ``\\n``)."""
    cols = [[_format(kind, v) for v in columns[name]] for name, kind in schema]
    return "".join(",".join(fields) + "\n" for fields in zip(*cols, strict=True))


def parse_rows(path, schema, lines: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """Columns from complete CSV lines; a malformed line is an error naming it."""
    names = [n for n, _ in schema]
    cols = {n: [] for n in names}
    for i, line in enumerate(lines):
        fields = line.split(",")
        if len(fields) != len(schema):
            raise ValueError(
                f"{path}: row {i + 1} has {len(fields)} fields, expected {len(schema)}; the file "
                "was edited or damaged outside ufm.sweep (move it away to start afresh)"
            )
        try:
            for (name, kind), text in zip(schema, fields, strict=True):
                cols[name].append(_parse(kind, text))
        except ValueError as err:
            raise ValueError(f"{path}: row {i + 1} is malformed ({err})") from None
    return {n: np.asarray(cols[n], dtype=_KINDS[k]) for n, k in schema}, len(lines)


def header_text(fp: str, desc: dict, schema, meta: dict) -> str:
    blob = json.dumps({"description": desc, "meta": meta, "schema": schema}, sort_keys=True)
    return f"# {FORMAT} fingerprint={fp}\n# {blob}\n" + ",".join(n for n, _ in schema) + "\n"


def _read(path, with_size: bool = False):
    """``(header dict or None, complete body lines)`` and, with ``with_size``, the byte size
    of the complete lines; a torn last line is left out."""
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.split("\n")[:-1]  # the part after the last "\n" is torn (or empty)
    size = sum(len(line.encode()) + 1 for line in lines)
    header, body = None, []
    if len(lines) >= 3 and lines[0].startswith(f"# {FORMAT} "):
        try:
            header = json.loads(lines[1][2:])
        except json.JSONDecodeError:
            header = None
        else:
            header["fingerprint"] = lines[0].split("fingerprint=")[-1]
            body = lines[3:]
    return (header, body, size) if with_size else (header, body)


def read_rows(path, fp: str, schema) -> dict[str, np.ndarray] | None:
    """The complete rows of a results file of the sweep with fingerprint ``fp``, read only;
    ``None`` when the file cannot be read or belongs to another sweep."""
    try:
        header, body = _read(path)
        if header is None or header["fingerprint"] != fp:
            return None
        return parse_rows(path, [list(s) for s in schema], body)[0]
    except (OSError, ValueError):
        return None


def check_output_path(path) -> str:
    """A clear error, before any work, unless ``path`` can hold the results file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"out={path!r} is a directory; give a file path such as results.csv")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"out={path!r}: the directory {parent!r} does not exist")
    if os.path.exists(path):
        if not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"out={path!r} exists but is not readable and writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out={path!r}: the directory {parent!r} is not writable")
    return path


class ResultsFile:
    """An open, checked results file that rows are appended to (see the module docstring)."""

    def __init__(self, path: str, schema, f, done: dict[str, np.ndarray], repaired: bool):
        self.path, self.schema, self._f = path, schema, f
        self.done, self.repaired = done, repaired

    @classmethod
    def open(cls, path, desc: dict, fp: str, schema, meta: dict) -> ResultsFile:
        """Create the file with its header, or reopen an existing one of the same sweep: check
        the fingerprint and the columns, cut a torn last line, and read the rows done."""
        path = check_output_path(path)
        schema = [list(s) for s in schema]
        head = header_text(fp, desc, schema, meta)
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if exists:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
            if len(text.split("\n")) <= 3 and head.startswith(text):
                exists = False  # a header torn while it was first written: write it again
        if not exists:
            f = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (kept open)
            f.write(head)
            _sync(f)
            return cls(path, schema, f, parse_rows(path, schema, [])[0], False)
        header, body, keep = _read(path, with_size=True)
        if header is None:
            raise ValueError(
                f"out={path!r} exists and is not a ufm sweep results file (its first line is not "
                f"'# {FORMAT} fingerprint=...'); refusing to touch it: choose another path"
            )
        if header["fingerprint"] != fp:
            diff = ", ".join(differences(header.get("description", {}), desc)) or "fingerprint"
            raise ValueError(
                f"out={path!r} holds results of a different sweep (differs in: {diff}); not "
                "merging: choose another path, or delete the file to start afresh"
            )
        if [list(s) for s in header["schema"]] != schema:
            raise ValueError(f"out={path!r} has different columns; choose another path")
        done, _ = parse_rows(path, schema, body)
        repaired = keep != os.path.getsize(path)
        f = open(path, "r+", encoding="utf-8", newline="")  # noqa: SIM115 (kept open)
        if repaired:
            f.truncate(keep)
            _sync(f)
        f.seek(0, os.SEEK_END)
        return cls(path, schema, f, done, repaired)

    def append(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows with one write, then flush and fsync."""
        self._f.write(format_rows(self.schema, columns))
        _sync(self._f)

    def close(self) -> None:
        self._f.close()


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())
