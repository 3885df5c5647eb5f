"""Collapse metrics for any arrays: UFM solutions or a real network's features.

Regression (Andriopoulos et al., NeurIPS 2024): :func:`nrc1`, :func:`nrc2`, :func:`nrc3`,
:func:`fit_gamma`, :func:`stable_rank`. Classification (Papyan, Han, Donoho, PNAS 2020):
:func:`nc1` ... :func:`nc4`, :func:`etf_distance`, :func:`orthogonal_frame_distance`. One
instance per call; batch with ``jax.vmap``.
"""

from ._classification import (
    class_means,
    etf_distance,
    nc1,
    nc2,
    nc3,
    nc4,
    orthogonal_frame_distance,
)
from ._regression import (
    collapse_target,
    fit_gamma,
    nrc1,
    nrc2,
    nrc3,
    principal_basis,
    stable_rank,
    target_covariance,
)

__all__ = [
    "class_means",
    "collapse_target",
    "etf_distance",
    "fit_gamma",
    "nc1",
    "nc2",
    "nc3",
    "nc4",
    "nrc1",
    "nrc2",
    "nrc3",
    "orthogonal_frame_distance",
    "principal_basis",
    "stable_rank",
    "target_covariance",
]
