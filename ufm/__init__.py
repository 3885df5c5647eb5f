"""ufm: the Unconstrained Feature Model, solved fast and held against closed-form theory.

Public API (samples first: targets ``(M, n)``, features ``H (M, d)``, head ``W (n, d)``):

* problems: :class:`RegressionUFM`, :class:`ClassificationUFM`, :func:`stack`, :class:`Params`;
* solving: :func:`solve` -> :class:`Solution` with a :class:`Status`; solvers :class:`Exact`,
  :class:`LBFGS`, :class:`OptaxSolver` (or any optax optimiser);
* normalisations: :func:`convert_lambdas`;
* metrics: :mod:`ufm.metrics`.
"""

from . import metrics as metrics
from ._classification import ClassificationUFM as ClassificationUFM
from ._normalisation import CONVENTIONS as CONVENTIONS
from ._normalisation import convert_lambdas as convert_lambdas
from ._problem import Params as Params
from ._problem import RegressionUFM as RegressionUFM
from ._problem import stack as stack
from ._solution import Solution as Solution
from ._solution import Status as Status
from ._solution import Trajectory as Trajectory
from ._solution import status_messages as status_messages
from ._solve import solve as solve
from ._solvers import LBFGS as LBFGS
from ._solvers import Exact as Exact
from ._solvers import OptaxSolver as OptaxSolver

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS",
    "ClassificationUFM",
    "Exact",
    "LBFGS",
    "OptaxSolver",
    "Params",
    "RegressionUFM",
    "Solution",
    "Status",
    "Trajectory",
    "convert_lambdas",
    "metrics",
    "solve",
    "stack",
    "status_messages",
]
