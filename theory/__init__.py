"""theory: closed-form global optima of UFMs, exact symbolic checks, comparisons with solvers.

* :mod:`theory.regression` - the regression UFM (Andriopoulos et al., NeurIPS 2024):
  :func:`regression.optimum`, :func:`regression.zero_regularisation_check`.
* :mod:`theory.classification` - the balanced classification UFM, MSE (no, free, regularised
  bias) and cross-entropy (Tirer & Bruna 2022; Zhou et al. 2022; Zhu et al. 2021).
* :mod:`theory.deep` - the deep / extended UFM (Tirer & Bruna 2022; Súkeník et al. 2023): the
  exact optimum of the deep linear model for any targets, the ReLU model where established, the
  deep-neural-collapse candidate; :mod:`theory.symbolic_deep` derives ``kappa_P^crit`` and the
  root equations for ``P`` factors in sympy.
* :mod:`theory.symbolic` - the regression closed form in exact sympy arithmetic, with an exact check
  that the objective's gradient vanishes there; :mod:`theory.symbolic_classification` derives
  the classification thresholds and losses symbolically.
* :func:`compare` - relative errors of a :class:`ufm.Solution` against the closed form;
  :func:`precompile` compiles its program ahead (e.g. in a thread while a solver compiles).
"""

from . import classification as classification
from . import deep as deep
from . import regression as regression
from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._compare import precompile as precompile

__all__ = ["Comparison", "classification", "compare", "deep", "precompile", "regression"]
