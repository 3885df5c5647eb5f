"""Collapse metrics for any arrays: UFM solutions or a real network's features.

Regression (Andriopoulos et al., NeurIPS 2024): :func:`nrc1`, :func:`nrc2`, :func:`nrc3`,
:func:`fit_gamma`, :func:`stable_rank`. One instance per call; batch with ``jax.vmap``.
"""

from ._regression import (
    collapse_target as collapse_target,
)
from ._regression import (
    fit_gamma as fit_gamma,
)
from ._regression import (
    nrc1 as nrc1,
)
from ._regression import (
    nrc2 as nrc2,
)
from ._regression import (
    nrc3 as nrc3,
)
from ._regression import (
    principal_basis as principal_basis,
)
from ._regression import (
    stable_rank as stable_rank,
)
from ._regression import (
    target_covariance as target_covariance,
)

__all__ = [
    "collapse_target",
    "fit_gamma",
    "nrc1",
    "nrc2",
    "nrc3",
    "principal_basis",
    "stable_rank",
    "target_covariance",
]
