"""Reading and checking the input of ``ufm metrics``: an ``.npz`` archive or a directory of
``.npy`` files, memory-mapped for streaming. Every failure is a ValueError or OSError whose
message names the file, the array and what was expected (the CLI turns it into exit 2)."""

from __future__ import annotations

import math
import os
import re
import struct
import zipfile

import numpy as np

from .._validate import check_real_dtype

_KEY = re.compile(r"^(H|W|b)(?:_(\d+))?$")


def _npz_member_memmap(path: str, fh, info: zipfile.ZipInfo):
    """Memory-map one stored (uncompressed) ``.npy`` member of a zip archive."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(
            f"{path}: member {info.filename!r} is compressed and cannot be memory-mapped; save "
            "with np.savez (not savez_compressed) or use a directory of .npy files"
        )
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: corrupt zip entry {info.filename!r}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    version = np.lib.format.read_magic(fh)
    reader = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = reader(fh)
    if dtype.hasobject:
        raise ValueError(f"{path}: member {info.filename!r} holds Python objects, not numbers")
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order=order)


def _member(where: str, read):
    """``read()``, with any failure (object arrays, corrupt data) as a ValueError naming it."""
    try:
        return read()
    except Exception as err:
        raise ValueError(f"{where}: cannot read it as a numeric array ({err})") from err


def load_arrays(path: str, streaming: bool) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` or a directory of ``.npy`` files (memory-mapped when
    ``streaming``). Every failure is a ValueError or OSError with a message naming the file."""
    if not os.path.exists(path):
        raise OSError(f"{path}: no such file or directory")
    try:
        if os.path.isdir(path):
            names = sorted(f for f in os.listdir(path) if f.endswith(".npy"))
            if not names:
                raise ValueError(f"{path}: directory holds no .npy files")
            mode = "r" if streaming else None
            return {
                f[:-4]: _member(
                    os.path.join(path, f),
                    lambda f=f: np.load(os.path.join(path, f), mmap_mode=mode, allow_pickle=False),
                )
                for f in names
            }
        if not zipfile.is_zipfile(path):
            hint = (
                "a single .npy array; save the arrays together with np.savez or put the .npy "
                "files in a directory"
                if path.endswith(".npy")
                else "not an .npz archive (write one with np.savez(path, H=..., W=..., Y=...))"
            )
            raise ValueError(f"{path}: {hint}")
        if not streaming:
            with np.load(path, allow_pickle=False) as z:
                return {k: _member(f"{path}: member {k!r}", lambda k=k: z[k]) for k in z.files}
        with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
            return {
                info.filename[:-4]: _npz_member_memmap(path, fh, info)
                for info in zf.infolist()
                if info.filename.endswith(".npy")
            }
    except (ValueError, OSError):
        raise
    except Exception as err:  # BadZipFile, EOFError, corrupt headers, ...
        raise ValueError(f"{path}: cannot read the arrays ({type(err).__name__}: {err})") from err


def _layered(arrays: dict, letter: str) -> list | None:
    """``[X]`` for key ``X``, ``[X_0, X_1, ...]`` for numbered keys, None when absent."""
    plain = letter in arrays
    numbered = {
        int(m.group(2)): k
        for k in arrays
        if (m := _KEY.match(k)) and m.group(1) == letter and m.group(2) is not None
    }
    if plain and numbered:
        raise ValueError(f"give either {letter} or {letter}_0, {letter}_1, ..., not both")
    if plain:
        return [arrays[letter]]
    if not numbered:
        return None
    missing = [i for i in range(max(numbered) + 1) if i not in numbered]
    if missing:
        raise ValueError(f"{letter}_{missing[0]} is missing (found {sorted(numbered.values())})")
    return [arrays[numbered[i]] for i in range(len(numbered))]


def _real(a, name: str, ndim: int, what: str):
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    check_real_dtype(a.dtype, name)  # float16: the library's TypeError (exit 2)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of shape {what}, got shape {a.shape}")
    if ndim == 2 and a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {a.shape}")
    return a


def finite(a, name: str, start: int = 0) -> None:
    """Raise naming the first row (counted from ``start``) that holds NaN or inf."""
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            where = f" (first at row {start + int(np.argwhere(bad)[0][0])})" if a.ndim else ""
            raise ValueError(f"{name} contains NaN or inf{where}")


def _label_range(labels, B: int) -> tuple[int, int]:
    """Smallest and largest label, read in chunks (labels may be memory-mapped)."""
    lo, hi = None, None
    for a in range(0, len(labels), B):
        c = np.asarray(labels[a : a + B])
        lo = int(c.min()) if lo is None else min(lo, int(c.min()))
        hi = int(c.max()) if hi is None else max(hi, int(c.max()))
    return lo, hi


def parse(arrays: dict, batch_size: int = 1 << 16) -> dict:
    """Check the arrays and return ``{task, H, W, b, Y or labels, num_classes, N}``."""
    H = _layered(arrays, "H")
    if H is None:
        raise ValueError(f"no features: expected H or H_0, H_1, ...; found {sorted(arrays)}")
    L = len(H)
    names = ["H"] if "H" in arrays else [f"H_{i}" for i in range(L)]
    for h, name in zip(H, names, strict=True):
        _real(h, name, 2, "(N, p)")
    N = H[0].shape[0]
    if N == 0:
        raise ValueError(f"{names[0]} has no rows (N = 0)")
    for h, name in zip(H, names, strict=True):
        if h.shape[0] != N:
            raise ValueError(f"{name} has {h.shape[0]} rows but {names[0]} has {N}: N must match")
    W, b = _layered(arrays, "W"), _layered(arrays, "b")
    suffix = ["" if L == 1 and "H" in arrays else f"_{i}" for i in range(L)]
    for X, letter in ((W, "W"), (b, "b")):
        if X is not None and len(X) != L:
            raise ValueError(f"{len(X)} {letter} arrays for {L} feature arrays: give one a layer")
    if b is not None and W is None:
        raise ValueError("biases b given without weights W")
    for i in range(L) if W is not None else ():
        _real(W[i], f"W{suffix[i]}", 2, "(out, p)")
        if W[i].shape[1] != H[i].shape[1]:
            raise ValueError(
                f"W{suffix[i]} has shape {W[i].shape}; it must have p = {H[i].shape[1]} columns "
                f"(the columns of H{suffix[i]})"
            )
        finite(W[i], f"W{suffix[i]}")
        if b is not None:
            _real(b[i], f"b{suffix[i]}", 1, "(out,)")
            if b[i].shape != (W[i].shape[0],):
                raise ValueError(
                    f"b{suffix[i]} must have shape ({W[i].shape[0]},), got {b[i].shape}"
                )
            finite(b[i], f"b{suffix[i]}")
    has_y, has_labels = "Y" in arrays, "labels" in arrays
    if has_y == has_labels:
        raise ValueError(
            "give targets Y (regression) or labels (classification)"
            + (", not both" if has_y else f"; found {sorted(arrays)}")
        )
    out = {"H": H, "W": W, "b": b, "N": N, "names": names}
    if has_y:
        if "num_classes" in arrays:
            raise ValueError("num_classes is for classification (labels), not for Y")
        Y = arrays["Y"]
        Y = Y.reshape(-1, 1) if Y.ndim == 1 else Y
        _real(Y, "Y", 2, "(N, n)")
        if Y.shape[0] != N:
            raise ValueError(f"Y has {Y.shape[0]} rows but the features have N = {N}")
        if Y.shape[1] == 0:
            raise ValueError("Y has no columns")
        return {**out, "task": "regression", "Y": Y}
    labels = arrays["labels"]
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D integer array (N,), got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != N:
        raise ValueError(f"labels has {labels.shape[0]} entries but the features have N = {N}")
    lo, hi = _label_range(labels, batch_size)
    if lo < 0:
        raise ValueError(f"labels must be >= 0, got {lo}")
    K = hi + 1
    if "num_classes" in arrays:
        k = np.asarray(arrays["num_classes"])
        if k.dtype.kind not in "iu" or k.ndim != 0:
            raise ValueError(f"num_classes must be an integer scalar, got {k.dtype} {k.shape}")
        if int(k) < K:
            raise ValueError(
                f"labels reach {K - 1}, so num_classes must be > {K - 1}, got {int(k)}"
            )
        K = int(k)
    if K < 2:
        raise ValueError(f"classification needs at least 2 classes, got num_classes = {K}")
    if K > N:  # before allocating K counters: N samples cannot cover more than N classes
        raise ValueError(
            f"every class needs a sample: num_classes = {K} (labels reach {hi}) exceeds the "
            f"N = {N} samples"
        )
    counts = np.zeros(K, dtype=np.int64)
    for a in range(0, N, batch_size):  # in chunks: labels may be memory-mapped
        counts += np.bincount(np.asarray(labels[a : a + batch_size]), minlength=K)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"classes {empty.tolist()[:10]} of num_classes = {K} have no samples")
    return {**out, "task": "classification", "labels": labels, "num_classes": K}
