"""Argument checks and one-hot helpers for :mod:`theory.deep` (all raise before any work)."""

from __future__ import annotations

import numpy as np


def check_widths(widths) -> tuple[int, ...]:
    if isinstance(widths, int | np.integer) and not isinstance(widths, bool):
        raise TypeError(f"widths must be a sequence of ints such as (d,) or (d1, d2), got {widths}")
    try:
        w = tuple(widths)
    except TypeError as err:
        raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}") from err
    if not w:
        raise ValueError("widths must be non-empty: (d_1, ..., d_L) with L >= 1")
    for d in w:
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise TypeError(f"widths must hold ints, got {d!r} in {w}")
        if d < 1:
            raise ValueError(f"every width must be >= 1, got widths = {w}")
    return tuple(int(d) for d in w)


def positive(x, name: str) -> float:
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a real number, got {x!r}") from err
    if v.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {v.shape}")
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0 (closed forms need it), got {v}")
    return float(v)


def check_lambdas(lambda_H, lambda_W, L: int) -> np.ndarray:
    lH = positive(lambda_H, "lambda_H")
    lw = np.asarray(lambda_W, dtype=object if isinstance(lambda_W, list | tuple) else None)
    if lw.ndim == 0:
        lWs = [positive(lambda_W, "lambda_W")] * L
    elif lw.ndim == 1 and len(lw) == L:
        lWs = [positive(v, f"lambda_W[{i}]") for i, v in enumerate(lw)]
    else:
        raise ValueError(
            f"lambda_W must be a scalar or a sequence of L = {L} values (one per weight "
            f"layer), got shape {lw.shape}"
        )
    return np.array([lH, *lWs])


def check_model(lambda_H, lambda_W, widths, activation, bias):
    w = check_widths(widths)
    lam = check_lambdas(lambda_H, lambda_W, len(w))
    if activation not in ("linear", "relu"):
        raise ValueError(f"activation must be 'linear' or 'relu', got {activation!r}")
    if not isinstance(bias, bool | np.bool_):
        raise TypeError(f"bias must be a bool, got {bias!r}")
    return lam, w


def check_targets(targets) -> np.ndarray:
    Y = np.asarray(targets)
    if Y.ndim != 2 or 0 in Y.shape:
        raise ValueError(f"targets must be a non-empty 2-D array (N, n), got shape {Y.shape}")
    if not (np.issubdtype(Y.dtype, np.floating) or np.issubdtype(Y.dtype, np.integer)):
        raise TypeError(f"targets must be real numbers, got dtype {Y.dtype}")
    Y = Y.astype(np.float64)
    if not np.all(np.isfinite(Y)):
        raise ValueError("targets must be finite; they contain NaN or inf")
    return Y


def one_hot_balanced(targets) -> tuple[int, int] | None:
    """``(K, n)`` if ``targets (N, K)`` are one-hot rows with ``n >= 1`` samples in every class,
    else ``None``."""
    Y = np.asarray(targets)
    if Y.ndim != 2 or Y.shape[1] < 2 or not np.all((Y == 0) | (Y == 1)):
        return None
    counts = Y.sum(0)
    if not np.all(Y.sum(1) == 1) or not np.all(counts == counts[0]) or counts[0] < 1:
        return None
    return Y.shape[1], int(counts[0])


def one_hot(labels, num_classes) -> np.ndarray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {lab.dtype} {lab.shape}")
    if lab.size == 0 or lab.min() < 0 or lab.max() >= num_classes:
        raise ValueError(f"labels must be non-empty with values in [0, {num_classes})")
    return np.eye(num_classes)[lab]
