"""theory: closed-form global optima of UFMs, exact symbolic checks, comparisons with solvers.

* :mod:`theory.regression` - the regression UFM (Andriopoulos et al., NeurIPS 2024):
  :func:`regression.optimum`, :func:`regression.zero_regularisation_check`.
* :mod:`theory.symbolic` - the same closed form in exact sympy arithmetic, with an exact check
  that the objective's gradient vanishes there.
* :func:`compare` - relative errors of a :class:`ufm.Solution` against the closed form.
"""

from . import regression as regression
from ._compare import Comparison as Comparison
from ._compare import compare as compare

__all__ = ["Comparison", "compare", "regression"]
