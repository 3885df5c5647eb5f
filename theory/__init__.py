"""theory: closed-form global optima of UFMs, exact symbolic checks, comparisons with solvers.

* :mod:`theory.regression` - the regression UFM (Andriopoulos et al., NeurIPS 2024):
  :func:`regression.optimum`, :func:`regression.zero_regularisation_check`.
* :mod:`theory.classification` - the balanced classification UFM, MSE (no, free, regularised
  bias) and cross-entropy (Tirer & Bruna 2022; Zhou et al. 2022; Zhu et al. 2021);
  :mod:`theory.imbalanced_mse` - MSE with any class sizes (Dang et al., ICML 2023): per-class
  death levels, the centred target's secular spectrum, the minority-collapse window (Fang et
  al., PNAS 2021); :mod:`theory.symbolic_imbalanced` derives them in sympy;
  :mod:`theory.label_smoothing` - the balanced cross-entropy optimum with label smoothing
  (Guo et al., TMLR 2025), derived in sympy by :mod:`theory.symbolic_smoothing`;
  :mod:`theory.ce_convex` - the cross-entropy UFM with any class sizes, bias and smoothing,
  solved as a convex problem in class-mean logit space and certified by a duality gap, and
  the minority-collapse threshold of cross-entropy (Fang et al., PNAS 2021);
  :mod:`theory.seli` - the SELI geometry of cross-entropy as ``lambda -> 0`` for any class
  sizes (Thrampoulidis et al., NeurIPS 2022).
* :mod:`theory.deep` - the deep / extended UFM (Tirer & Bruna 2022; Súkeník et al. 2023): the
  exact optimum of the deep linear model for any targets, the ReLU model where established, the
  deep-neural-collapse candidate; :mod:`theory.symbolic_deep` derives ``kappa_P^crit`` and the
  root equations for ``P`` factors in sympy.
* :mod:`theory.symbolic` - the regression closed form in exact sympy arithmetic, with an exact check
  that the objective's gradient vanishes there; :mod:`theory.symbolic_classification` derives
  the classification thresholds and losses symbolically.
* :func:`reference` - the one owner of what theory predicts for a problem and how a solution
  compares (a :class:`Reference` per problem kind; ``available``/``reason`` where theory
  predicts nothing); :func:`compare`, :func:`ufm.sweep`'s closed-form columns and ``ufm check``
  use it.
* :func:`compare` - relative errors of a :class:`ufm.Solution` against the closed form;
  :func:`precompile` compiles its program ahead (e.g. in a thread while a solver compiles).

``theory`` builds on the core of :mod:`ufm` (its problems, solvers and metrics submodules) and
never imports the ``ufm`` facade or its workflows (sweeps, plots, the command line).
"""

# Imported in this order: the order in which messages list the problem kinds.
# isort: off
from . import regression as regression
from . import imbalanced_mse as imbalanced_mse
from . import classification as classification
from . import label_smoothing as label_smoothing
from . import ce_convex as ce_convex
from . import seli as seli
from . import deep as deep
from . import _regression_reference as _regression_reference
from . import _classification_reference as _classification_reference
from . import _deep_reference as _deep_reference

# isort: on
from ._classification_reference import ClassificationReference as ClassificationReference
from ._compare import compare as compare
from ._compare import precompile as precompile
from ._deep_reference import DeepReference as DeepReference
from ._reference import Comparison as Comparison
from ._reference import Reference as Reference
from ._reference import reference as reference
from ._regression_reference import RegressionReference as RegressionReference

__all__ = [
    "ClassificationReference",
    "Comparison",
    "DeepReference",
    "Reference",
    "RegressionReference",
    "classification",
    "ce_convex",
    "compare",
    "deep",
    "imbalanced_mse",
    "label_smoothing",
    "precompile",
    "reference",
    "regression",
    "seli",
]
