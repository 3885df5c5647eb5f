"""Argument checks for the metrics: shapes, dtypes and label values, before any work.

Shapes, ranks and dtypes raise at once (also while tracing); label *values* are checked when
the labels are concrete, on the caller's original array before any conversion, so that a label
beyond the int32 range cannot wrap into a valid class under JAX's default 32-bit mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._validate import check_label_values, check_real_dtype, is_concrete


def _as_array(x, name: str):
    """``x`` as a JAX or numpy array (no dtype conversion yet), or a TypeError naming ``name``."""
    if isinstance(x, jax.Array):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from err


def real_array(x, name: str, ndim: int, what: str) -> jax.Array:
    """``x`` as a real floating JAX array of rank ``ndim`` (integers and bools become floats).

    Raises TypeError for strings, objects and complex numbers (whose imaginary part would be
    dropped), ValueError for the wrong rank or an empty axis; ``what`` describes the expected
    shape.
    """
    arr = _as_array(x, name)
    kind = np.dtype(arr.dtype).kind
    if kind == "f" or str(arr.dtype) == "bfloat16":
        check_real_dtype(arr.dtype, name)  # float16 / bfloat16: a clear TypeError
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array of shape {what}, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of shape {what}, got shape {arr.shape}")
    if 0 in arr.shape:  # no samples or no features: nothing to measure (not "collapsed")
        raise ValueError(f"{name} must be non-empty, of shape {what}, got shape {arr.shape}")
    arr = jnp.asarray(arr)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def real_matrix(x, name: str, what: str) -> jax.Array:
    """A real 2-D array (see :func:`real_array`)."""
    return real_array(x, name, 2, what)


def real_scalar(x, name: str) -> jax.Array:
    """A real scalar (Python number or 0-d array; may be traced)."""
    arr = _as_array(x, name)
    kind = np.dtype(arr.dtype).kind
    if kind not in "fiub":
        raise TypeError(f"{name} must be a real number, got {x!r}")
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return jnp.asarray(arr)


def nonnegative_scalar(x, name: str) -> jax.Array:
    """A real scalar that, when concrete, is >= 0; a traced one is the caller's to guard (a
    negative value gives NaN). Unlike ``_validate.check_nonnegative_scalar`` (for the
    problems' lambdas), NaN and inf pass: a metric turns them into NaN, it does not refuse."""
    arr = real_scalar(x, name)
    if is_concrete(arr) and float(arr) < 0:
        raise ValueError(f"{name} must be >= 0, got {float(arr)!r}")
    return arr


def check_int(x, name: str, minimum: int) -> int:
    """A Python or numpy integer ``>= minimum`` (bools rejected), returned as ``int``."""
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {x!r}")
    return int(x)


def check_num_classes(num_classes) -> int:
    return check_int(num_classes, "num_classes", 2)


def check_labels(labels, N: int, num_classes: int) -> jax.Array:
    """Integer labels of shape ``(N,)`` with values in ``[0, num_classes)``, every class present.

    The dtype and, for concrete labels, the values are checked on the original array: a label
    of 2**32 + 1 is rejected, not wrapped to 1 by a conversion to int32.
    """
    arr = _as_array(labels, "labels")
    if not np.issubdtype(np.dtype(arr.dtype), np.integer):
        raise TypeError(
            f"labels must be integers (class indices in [0, num_classes)), got dtype {arr.dtype}"
        )
    if arr.shape != (N,):
        raise ValueError(f"labels must have shape (N,) = ({N},), got {arr.shape}")
    check_label_values(arr, num_classes)
    return jnp.asarray(arr)


def check_columns(W: jax.Array, d: int, name: str, what: str) -> None:
    """Raise unless ``W`` (2-D) has ``d`` columns."""
    if W.shape[1] != d:
        raise ValueError(f"{name} must have shape {what} with {d} columns, got {W.shape}")


def layer_list(x, name: str) -> list:
    """A non-empty list or tuple of per-layer arrays (not a single array)."""
    if isinstance(x, jax.Array | np.ndarray) or not isinstance(x, Sequence) or isinstance(x, str):
        raise TypeError(
            f"{name} must be a list or tuple with one array per layer, got {type(x).__name__}"
        )
    if len(x) == 0:
        raise ValueError(f"{name} must hold at least one layer, got an empty sequence")
    return list(x)


def check_option(value, name: str, allowed: tuple) -> None:
    if not isinstance(value, str) or value not in allowed:
        names = [repr(a) for a in allowed]
        choices = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"{name} must be {choices}, got {value!r}")
