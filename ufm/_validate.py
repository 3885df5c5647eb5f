"""Argument checks shared by problems, solvers and metrics.

Errors come in two tiers (as in optimistix): shapes, ranks and option names are checked while
tracing and raise ``ValueError``/``TypeError`` at once; checks of *values* (NaN, negative
lambdas) need concrete arrays and are skipped for traced ones, e.g. inside ``jax.vmap``, where a
bad value shows up as a non-successful ``status`` instead of an exception.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """Whether ``x`` holds values we can inspect (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def float_array(x, name: str, dtype=None) -> jax.Array:
    """Convert ``x`` to a floating JAX array, raising a clear error for non-numeric input."""
    try:
        arr = jnp.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from err
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(dtype or jnp.result_type(float))
    return arr


def check_finite(x: jax.Array, name: str) -> None:
    """Raise if a concrete array holds NaN or inf."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")


def check_nonnegative_scalar(x: jax.Array, name: str) -> None:
    """Raise unless ``x`` is a scalar and, when concrete, finite and >= 0."""
    if jnp.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(x)}")
    if is_concrete(x):
        v = float(x)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")


def check_shape(x, shape: tuple, name: str, what: str) -> None:
    """Raise unless ``x.shape`` equals ``shape`` (entries ``None`` match anything)."""
    s = jnp.shape(x)
    if len(s) != len(shape) or any(e is not None and e != a for e, a in zip(shape, s, strict=True)):
        raise ValueError(f"{name} must have shape {what}, got {s}")


def check_label_values(labels, num_classes: int) -> None:
    """Raise if concrete integer ``labels`` leave ``[0, num_classes)`` or leave a class empty."""
    if not is_concrete(labels):
        return
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, num_classes) = [0, {num_classes}), got values in "
            f"[{lab.min()}, {lab.max()}]"
        )
    empty = np.setdiff1d(np.arange(num_classes), lab)
    if empty.size:
        raise ValueError(
            f"every class needs at least one sample: classes {empty.tolist()} of "
            f"num_classes = {num_classes} have none in labels"
        )
