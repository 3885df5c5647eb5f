"""Small numerical helpers: symmetric eigen-decompositions, safe norms, spectral functions.

NaN in, NaN out: every helper here that guards a division or a square root against 0 leaves a
NaN (and, where a result cannot be defined, an inf) as NaN. A comparison with NaN is False, so
the usual ``where(x > 0, f(x), 0)`` silently turns NaN into 0; the helpers below test for it.
The guarded branches keep a finite gradient (exactly 0 at ``x = 0``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """Matrix product at full float32 precision on accelerators (no TF32/bf16 passes)."""
    return jnp.matmul(a, b, precision=HIGHEST)


def full_precision(fn):
    """Decorator: trace ``fn`` with every matrix product at full precision
    (``jax.default_matmul_precision("highest")``), also inside a caller's ``jit``.

    GPUs multiply float32 matrices in TF32 (10-bit mantissa) by default, which caps relative
    accuracy near 1e-3 and would break the documented float32 accuracy of solutions, closed
    forms and metrics. The precision is recorded in the traced program, so jit caches keep the
    two apart; on CPUs it changes nothing.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapper


def sym(A: jax.Array) -> jax.Array:
    """Symmetric part ``(A + A^T)/2``."""
    return 0.5 * (A + A.T)


def eigh_desc(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition of a symmetric matrix with eigenvalues in descending order."""
    w, V = jnp.linalg.eigh(sym(A))
    return w[::-1], V[:, ::-1]


def spectral_fn(A: jax.Array, fn) -> jax.Array:
    """``U diag(fn(w)) U^T`` for symmetric ``A = U diag(w) U^T`` (symmetric solver)."""
    w, V = jnp.linalg.eigh(sym(A))
    return (V * fn(w)) @ V.T


def pow2_normalise(x: jax.Array) -> jax.Array:
    """``x * 2^-e`` with ``2^(e-1) <= max |x| < 2^e``: exact (only the exponents change), and
    squares and products of the result neither overflow nor underflow, whatever the scale of
    ``x`` within the normal range (features at 1e-20 in float32 would otherwise square to 0
    and read as collapse; subnormal inputs, which XLA may flush to 0, are not rescued). For the
    metrics that do not depend on the scale of an input. An all-zero ``x`` is returned as it
    is; a NaN or inf stays (its exponent is taken as 0)."""
    _, e = jnp.frexp(jnp.max(jnp.abs(x)))
    return jnp.ldexp(x, -e)


def safe_norm(x: jax.Array) -> jax.Array:
    """Frobenius norm with a gradient that is finite (exactly 0) at ``x = 0``; NaN stays NaN."""
    sq = jnp.sum(x**2)
    pos = sq > 0
    # The fallback is ``sq`` itself: 0 at x = 0 (gradient 2x = 0), NaN when x holds a NaN.
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), sq)


def safe_normalise(x: jax.Array) -> jax.Array:
    """``x / ||x||_F``; 0 where ``x = 0``; all NaN where the norm is NaN or infinite."""
    n = safe_norm(x)
    out = x / jnp.where(n > 0, n, 1.0)
    return jnp.where(jnp.isfinite(n), out, jnp.nan)


def safe_normalise_rows(X: jax.Array) -> jax.Array:
    """Each row divided by its Euclidean norm; zero rows stay zero (with a finite gradient);
    a row whose norm is NaN or infinite becomes all NaN."""
    sq = jnp.sum(X**2, axis=-1, keepdims=True)
    pos = sq > 0
    out = X / jnp.sqrt(jnp.where(pos, sq, 1.0))
    return jnp.where(jnp.isfinite(sq), out, jnp.nan)


def safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` for ``b >= 0``, with ``0`` where ``b == 0`` and NaN where ``a`` or ``b`` is NaN.

    For ratios that are 0/0 only at a degenerate but legitimate point (all features equal, a
    zero matrix), where 0 is the documented convention. The 0-branch has gradient 0.
    """
    pos = b > 0
    fallback = jnp.where(jnp.isnan(b), jnp.nan, 0.0 * a)
    return jnp.where(pos, a / jnp.where(pos, b, 1.0), fallback)


def inv_above(e: jax.Array, cut: jax.Array, power: float = 1.0) -> jax.Array:
    """``e**(-power)`` where ``e > cut``, 0 where ``e <= cut`` (a pseudo-inverse cut-off), NaN
    where ``e`` or ``cut`` is NaN: an eigenvalue cut-off never drops a NaN silently."""
    keep = e > cut
    val = jnp.where(keep, e, 1.0) ** (-power)
    bad = jnp.isnan(e) | jnp.isnan(cut)
    return jnp.where(keep, val, jnp.where(bad, jnp.nan, 0.0))


def relative_cut(e: jax.Array, size: int) -> jax.Array:
    """The usual relative cut-off ``size * eps * max(e_max, 0)`` for descending eigenvalues
    ``e`` (NaN if ``e_max`` is NaN)."""
    return size * eps_of(e) * jnp.maximum(e[0], 0.0)


def all_finite(*arrays) -> jax.Array:
    """Scalar bool: every entry of every given array (``None`` skipped) is finite."""
    ok = jnp.asarray(True)
    for x in arrays:
        if x is not None:
            ok = ok & jnp.all(jnp.isfinite(x))
    return ok


def nan_unless_finite(out, *arrays):
    """``out`` (any pytree of float arrays) where every input array is finite, else all NaN.

    Metrics end with this: discrete steps (argmax, eigenvalue cut-offs) and arithmetic with inf
    can produce finite numbers from non-finite input, which would read as a real measurement.
    """
    ok = all_finite(*arrays)
    return jax.tree_util.tree_map(lambda v: jnp.where(ok, v, jnp.nan), out)


def eps_of(x: jax.Array) -> jax.Array:
    return jnp.finfo(jnp.result_type(x)).eps
