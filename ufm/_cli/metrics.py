"""``ufm metrics``: layer-wise collapse metrics of a network's saved features.

Input: an ``.npz`` archive (``np.savez``) or a directory of ``.npy`` files, with the arrays

* ``H`` or ``H_0, H_1, ...``: features ``(N, p_l)``, the input of layer ``l``;
* ``W`` or ``W_0, W_1, ...`` (optional): the layers' weights ``(out_l, p_l)``;
* ``b`` or ``b_0, b_1, ...`` (optional, classification): biases ``(out_l,)``;
* ``Y`` ``(N, n)`` or ``(N,)``: regression targets, **or** ``labels`` ``(N,)`` integers with
  optional ``num_classes`` (a scalar; default ``max(labels) + 1``) for classification.

Regression prints the deep NRC metrics of Rangamani & Unal per layer, named ``deep_nrc1`` ...
``deep_nrc4`` (the keys ``nrc1`` ... ``nrc4`` of :func:`ufm.metrics.deep_nrc`), and, when the
last weight has ``n`` rows (the head), ``nrc1``-``nrc3`` of Andriopoulos et al.
(:func:`ufm.metrics.nrc1` ... :func:`ufm.metrics.nrc3`) at the fitted ``gamma``
(:func:`ufm.metrics.fit_gamma`). The two families are different definitions and never share a
name: ``deep_nrc1`` is the fraction of feature *variance* outside the top-``n`` principal
directions, ``nrc1`` the mean energy of the *normalised, uncentred samples* outside them.
Classification prints NC1-NC4 per layer; NC2 of the weights, NC3 and NC4 for each layer whose
weight has ``num_classes`` rows (the classifier).

Exit status 0, or 2 with a one-line message for bad input (missing keys, wrong ranks or
dtypes, mismatched N, NaN or inf, unreadable files).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from ._metrics_io import finite as _finite
from ._metrics_io import load_arrays, parse

EPILOG = """\
Without --streaming every array is loaded into memory and the full-array functions of
ufm.metrics compute the metrics (float64). With --streaming the features and targets are
memory-mapped and fed in batches of --batch-size rows to the streaming accumulators
(ufm.metrics.DeepNRCAccumulator, NRCAccumulator, DeepNCAccumulator): memory is independent of
N. Streaming reads a directory of .npy files (H_0.npy, W_0.npy, Y.npy, ...) or an
uncompressed .npz (np.savez, not np.savez_compressed); NC4 reads the features twice.
--json prints one JSON object: {"file", "task", "num_samples", "feature_dims", "layers":
[{"layer", "dim", "metrics": {name: value}}], "head", and "num_targets", "first_collapsed"
(regression) or "num_classes"}. A metric that is not defined at a layer (NaN, e.g. nc4 where
the weight has no row per class) is written as null, so the output is valid JSON; every other
value is a number. The table shows such a value as '-'. NaN or inf in the input is an error
(exit 2), never a NaN metric.

Names. Regression layers: deep_nrc1 (variance outside the top-n PCA), deep_nrc2 (linear CKA of
H and Y), deep_nrc3 (mean cosine between the top-n PCA and W's input subspace), deep_nrc4
(least-squares probe MSE), Rangamani & Unal (CPAL 2026); "head": nrc1 (normalised samples'
energy outside the top-n PCA), nrc2 (outside W's row space), nrc3 (distance of W W^T to
(Sigma^1/2 - sqrt(gamma))_+ at the fitted gamma), gamma, Andriopoulos et al. (NeurIPS 2024).
Classification layers: nc1 ... nc4 of Papyan, Han & Donoho (PNAS 2020) and variants."""


def register(sub) -> None:
    """Add the ``metrics`` sub-command to the ``ufm`` parser's sub-parsers."""
    c = sub.add_parser(
        "metrics",
        help="layer-wise collapse metrics (NC or NRC) of saved features",
        description=(
            "Read per-layer features H (or H_0, H_1, ...), weights W (or W_0, ...), optional "
            "biases b (or b_0, ...), and targets Y (regression) or labels (classification, "
            "optional num_classes) from an .npz file or a directory of .npy files, and print "
            "the collapse metrics of every layer."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("path", metavar="FILE", help="an .npz archive or a directory of .npy files")
    c.add_argument("--json", action="store_true", help="print JSON (NaN as null) instead of tables")
    c.add_argument(
        "--streaming", action="store_true", help="memory-map the arrays and read them in batches"
    )
    c.add_argument(
        "--batch-size",
        type=int,
        default=4096,
        dest="batch_size",
        help="rows per batch with --streaming (default 4096)",
    )
    c.set_defaults(run=metrics)


# ----------------------------------------------------------------------------------------------
# Computing


def _weights(data) -> list | None:
    return None if data["W"] is None else [np.asarray(w) for w in data["W"]]


def _biases(data) -> list | None:
    return None if data["b"] is None else [np.asarray(b) for b in data["b"]]


def _regression_head(data):
    """The last weight when it has n rows (the head), else None."""
    W = data["W"]
    return None if W is None or W[-1].shape[0] != data["Y"].shape[1] else np.asarray(W[-1])


def _batches(data, target: str, B: int):
    """A function returning a fresh iterator of ``([H_l batch], target batch)``, checking NaN."""
    N = data["N"]

    def gen():
        for a in range(0, N, B):
            Hs = [np.asarray(h[a : a + B]) for h in data["H"]]
            t = np.asarray(data[target][a : a + B])
            for h, name in zip(Hs, data["names"], strict=True):
                _finite(h, name, a)
            _finite(t, target, a)
            yield Hs, t

    return gen


def compute_streaming(data, batch_size: int) -> tuple[dict, dict | None]:
    """Per-layer metrics ``{name: (L,)}`` (and the scalar ``first_collapsed``) and the head's
    NRC1-NRC3, from the streaming accumulators."""
    from ufm import metrics as um

    L = len(data["H"])
    if data["task"] == "classification":
        acc = um.DeepNCAccumulator(data["num_classes"], _weights(data), _biases(data), num_layers=L)
        return um.accumulate(acc, _batches(data, "labels", batch_size)), None
    deep = um.DeepNRCAccumulator(_weights(data), num_layers=L)
    head_W = _regression_head(data)
    head = None if head_W is None else um.NRCAccumulator(head_W)
    for Hs, Y in _batches(data, "Y", batch_size)():
        deep.update(Hs, Y)
        if head is not None:
            head.update(Hs[-1], Y)
    return deep.result(), None if head is None else head.result()


def _andriopoulos(H, W, Y) -> dict:
    """NRC1-NRC3 of the head, at the fitted gamma (full arrays)."""
    from ufm import metrics as um

    gamma, nrc3 = um.fit_gamma(W, Y)
    return {"nrc1": um.nrc1(H, Y.shape[1]), "nrc2": um.nrc2(H, W), "nrc3": nrc3, "gamma": gamma}


def compute_full(data) -> tuple[dict, dict | None]:
    """The same from the full-array functions of :mod:`ufm.metrics` (float64)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from ufm import metrics as um

    for h, name in zip(data["H"], data["names"], strict=True):
        _finite(h, name)
    # float64 throughout, as the streaming mode: float32 files are converted, not measured in
    # float32 (features with a large common offset lose their digits there)
    data = dict(data)
    data["H"] = [np.asarray(h, np.float64) for h in data["H"]]
    for key in ("W", "b"):
        if data[key] is not None:
            data[key] = [None if a is None else np.asarray(a, np.float64) for a in data[key]]
    if data["task"] == "regression":
        data["Y"] = np.asarray(data["Y"], np.float64)
    # jitted: one XLA compilation, several times faster than running the ops one by one
    if data["task"] == "classification":
        deep_nc = jax.jit(um.deep_nc, static_argnames=("num_classes",))
        K = data["num_classes"]
        res = deep_nc(data["H"], data["labels"], K, _weights(data), _biases(data))
        return {k: np.asarray(v) for k, v in res.items()}, None
    Y = data["Y"]
    _finite(Y, "Y")
    W = _weights(data)
    # deep_nrc needs weights; without them, stand-ins whose two metrics are dropped (the
    # streaming accumulator omits the same two)
    stand_in = W is None
    if stand_in:
        W = [np.ones((1, h.shape[1])) for h in data["H"]]
    res = {k: np.asarray(v) for k, v in jax.jit(um.deep_nrc)(data["H"], W, Y).items()}
    if stand_in:
        res = {k: v for k, v in res.items() if k not in ("nrc3", "srank_weights")}
    head_W = _regression_head(data)
    head = None
    if head_W is not None:
        head = {k: float(v) for k, v in jax.jit(_andriopoulos)(data["H"][-1], head_W, Y).items()}
    return res, head


def _per_layer(res: dict, L: int) -> list[dict]:
    """One ``{name: float}`` a layer, names in the display order of ``_DESCRIPTIONS``."""
    keys = (k for k, v in res.items() if np.shape(v) == (L,))
    names = sorted(keys, key=lambda k: (_ORDER.get(k, len(_ORDER)), k))
    return [{k: float(res[k][i]) for k in names} for i in range(L)]


# ----------------------------------------------------------------------------------------------
# Printing

# The per-layer regression metrics of ufm.metrics.deep_nrc (Rangamani & Unal) under their own
# names: ``nrc1`` ... ``nrc3`` are the head's metrics of Andriopoulos et al., other definitions.
DEEP_NRC_NAMES = {f"nrc{i}": f"deep_nrc{i}" for i in range(1, 5)}

_DESCRIPTIONS = {
    "deep_nrc1": "variance fraction outside the top-n PCA",
    "deep_nrc2": "linear CKA(H, Y), all columns",
    "deep_nrc3": "mean cos, PCA vs W input subspace",
    "deep_nrc4": "probe MSE, P = pinv(H, 1e-3) Y_c",
    "srank_features": "sum e / e_1 of Sigma_H",
    "srank_features_sq": "sum e^2 / e_1^2 (authors' code)",
    "srank_weights": "||W||_F^2 / ||W||_2^2",
    "srank_targets": "sum l / l_1 of Sigma_Y",
    "srank_targets_sq": "sum l^2 / l_1^2 (authors' code)",
    "collapsed": "1 if deep_nrc1 < 1e-2",
    "nc1": "tr(Sigma_W Sigma_B^+) / K",
    "nc2": "ETF distance, centred means",
    "nc2_equinorm": "std/mean of centred mean norms",
    "nc2_orthogonal": "frame distance, uncentred means",
    "nc3": "self-duality (K-row W), else alignment",
    "nc3_alignment": "energy of W outside span(means)",
    "nc4": "classifier != nearest mean (K-row W)",
}
_ORDER = {k: i for i, k in enumerate(_DESCRIPTIONS)}


def _fmt(v) -> str:
    """A number for the table; NaN (a metric not defined at this layer) as '-'."""
    return "-" if v is None or math.isnan(v) else f"{v:.6g}"


def _table(layers: list[dict]) -> str:
    names = list(dict.fromkeys(k for row in layers for k in row))
    head = f"{'metric':<24}" + "".join(f"{'layer ' + str(i):>13}" for i in range(len(layers)))
    lines = [head, "-" * len(head)]
    for k in names:
        vals = "".join(f"{_fmt(row.get(k)):>13}" for row in layers)
        lines.append(f"{k:<24}{vals}   {_DESCRIPTIONS.get(k, '')}".rstrip())
    return "\n".join(lines)


def _json_value(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def metrics(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    data = parse(load_arrays(args.path, args.streaming), args.batch_size)
    if args.streaming:
        res, head = compute_streaming(data, args.batch_size)
    else:
        res, head = compute_full(data)
    if data["task"] == "regression":
        res = {DEEP_NRC_NAMES.get(k, k): v for k, v in res.items()}
    dims = [int(h.shape[1]) for h in data["H"]]
    layers = _per_layer(res, len(dims))
    first = float(res["first_collapsed"]) if "first_collapsed" in res else None
    if args.json:
        doc = {
            "file": args.path,
            "task": data["task"],
            "num_samples": int(data["N"]),
            "feature_dims": dims,
            "layers": [
                {"layer": i, "dim": dims[i], "metrics": {k: _json_value(v) for k, v in r.items()}}
                for i, r in enumerate(layers)
            ],
            "head": None if head is None else {k: _json_value(v) for k, v in head.items()},
        }
        if data["task"] == "classification":
            doc["num_classes"] = data["num_classes"]
        else:
            doc["num_targets"] = int(data["Y"].shape[1])
            doc["first_collapsed"] = None if first is None or math.isnan(first) else int(first)
        print(json.dumps(doc, allow_nan=False))
        return 0
    mode = f"streaming, batches of {args.batch_size} rows" if args.streaming else "in memory"
    if data["task"] == "classification":
        what = f"classification, K = {data['num_classes']} classes"
        title = "neural collapse NC1-NC4 (Papyan, Han & Donoho 2020), per layer"
    else:
        what = f"regression, n = {data['Y'].shape[1]} targets"
        title = "deep neural regression collapse (Rangamani & Unal 2026), per layer"
    print(f"ufm metrics: {args.path} ({mode})")
    print(f"  {what}, N = {data['N']} samples, {len(dims)} layer(s) of widths {dims}\n")
    print(title)
    print(_table(layers))
    if first is not None:
        where = "none" if first == len(dims) else f"layer {first:.0f}"
        print(f"first collapsed layer (deep_nrc1 < 1e-2): {where}")
    if head is not None:
        print(f"\nhead (layer {len(dims) - 1}): NRC1-NRC3 of Andriopoulos et al. (NeurIPS 2024)")
        print(
            f"  nrc1  = {_fmt(head['nrc1']):<12} normalised samples' energy outside the top-n PCA"
        )
        print(
            f"  nrc2  = {_fmt(head['nrc2']):<12} normalised samples' energy outside W's row space"
        )
        print(
            f"  nrc3  = {_fmt(head['nrc3']):<12} W W^T vs (Sigma^1/2 - sqrt(gamma))_+, normalised"
        )
        print(f"  gamma = {_fmt(head['gamma']):<12} argmin of nrc3 over [0, lambda_min(Sigma)]")
    return 0
