"""Small numerical helpers: symmetric eigen-decompositions, safe norms, spectral functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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


def safe_norm(x: jax.Array) -> jax.Array:
    """Frobenius norm with a gradient that is finite (0) at ``x = 0``."""
    sq = jnp.sum(x**2)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def safe_normalise(x: jax.Array) -> jax.Array:
    """``x / ||x||_F``, and 0 where ``x = 0``."""
    n = safe_norm(x)
    return x / jnp.where(n > 0, n, 1.0)


def safe_normalise_rows(X: jax.Array) -> jax.Array:
    """Each row divided by its Euclidean norm; zero rows stay zero (with a finite gradient)."""
    sq = jnp.sum(X**2, axis=-1, keepdims=True)
    pos = sq > 0
    return X / jnp.sqrt(jnp.where(pos, sq, 1.0))


def eps_of(x: jax.Array) -> jax.Array:
    return jnp.finfo(jnp.result_type(x)).eps
