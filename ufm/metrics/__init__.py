"""Collapse metrics for any arrays: UFM solutions or a real network's features.

Regression (Andriopoulos et al., NeurIPS 2024): :func:`nrc1`, :func:`nrc2`, :func:`nrc3`,
:func:`fit_gamma`, :func:`stable_rank`. Classification (Papyan, Han, Donoho, PNAS 2020):
:func:`nc1` ... :func:`nc4`, :func:`etf_distance`, :func:`orthogonal_frame_distance`.
Imbalanced classes: :func:`nc1_per_class`, :func:`minority_collapse` (Fang et al., PNAS 2021),
:func:`gram_distance` (e.g. to the SELI geometry of Thrampoulidis et al., NeurIPS 2022).
Layer-wise, for a deep UFM or any network's per-layer features: :func:`deep_nc` (NC1-NC4 per
layer) and :func:`deep_nrc` (deep neural regression collapse, Rangamani & Unal, CPAL 2026).
One instance per call; batch with ``jax.vmap``. Every metric returns NaN, never a finite
number, when its input holds NaN or inf.
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
from ._deep_nc import deep_nc
from ._deep_nrc import deep_nrc
from ._imbalance import gram_distance, minority_collapse, nc1_per_class
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
    "deep_nc",
    "deep_nrc",
    "etf_distance",
    "fit_gamma",
    "gram_distance",
    "minority_collapse",
    "nc1",
    "nc1_per_class",
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

# Streaming accumulators: features fed batch by batch, memory independent of N.
from ._streaming import NRCAccumulator, accumulate  # noqa: E402
from ._streaming_deep import DeepNCAccumulator, DeepNRCAccumulator  # noqa: E402
from ._streaming_imbalance import PerClassNC1Accumulator  # noqa: E402
from ._streaming_nc import NCAccumulator  # noqa: E402

__all__ += [
    "DeepNCAccumulator",
    "DeepNRCAccumulator",
    "NCAccumulator",
    "NRCAccumulator",
    "PerClassNC1Accumulator",
    "accumulate",
]
