"""Data types that several modules share (kept apart so that no two modules import each other)."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax


class Params(NamedTuple):
    """Variables of a one-layer UFM (regression and classification), samples first.

    Attributes:
        H: features, shape ``(N, d)``.
        W: linear head, shape ``(n, d)``.
        b: bias, shape ``(n,)`` (all zeros when the problem has no bias).
    """

    H: jax.Array
    W: jax.Array
    b: jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["targets", "ridge", "lambda_W", "lambda_b"],
    meta_fields=["bias", "feature_dim"],
)
@dataclasses.dataclass(frozen=True)
class MSEData:
    """What an MSE problem hands the exact solver (``ufm/_exact.py``), a pytree whose ``bias``
    and ``feature_dim`` are static. The objective, with ridge ``rho``::

        L = 1/(2N) ||H W^T + 1 b^T - Y||^2 + rho/(2N) ||H||^2 + lambda_W/2 ||W||^2
            [+ lambda_b/2 ||b||^2]
    """

    targets: jax.Array | None  # (N, n); None in the summary the solver loop sees
    ridge: jax.Array  # rho
    lambda_W: jax.Array
    lambda_b: jax.Array  # used only when bias == "reg"
    bias: str  # "none" | "free" | "reg" (static)
    feature_dim: int  # d (static)

    def _replace(self, **changes) -> MSEData:
        return dataclasses.replace(self, **changes)
