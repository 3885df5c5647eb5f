"""ufm: the Unconstrained Feature Model, solved fast and held against closed-form theory.

Public API (samples first: targets ``(M, n)``, features ``H (M, d)``, head ``W (n, d)``):

* problems (:mod:`ufm.problems`): :class:`RegressionUFM`, :class:`ClassificationUFM`,
  :class:`DeepUFM` (variables :class:`DeepParams`), :func:`stack`, :class:`Params`;
* solving: :func:`solve` -> :class:`Solution` with a :class:`Status`; solvers :class:`Exact`,
  :class:`LBFGS`, :class:`OptaxSolver` (or any optax optimiser);
* restarts: ``solve(..., restarts=R)`` -> :class:`Restarts`;
* sweeps: :func:`sweep` -> :class:`SweepTable`; :func:`shard_samples`; plots in :mod:`ufm.plot`;
* normalisations: :func:`convert_lambdas` (:data:`CONVENTIONS`, :class:`Convention`),
  :func:`convert_label_smoothing` (:data:`LABEL_SMOOTHING_CONVENTIONS`);
* metrics: :mod:`ufm.metrics` (NRC, NC, deep NC / deep NRC, streaming accumulators);
* a small MLP trainer that records layer-wise collapse: :mod:`ufm.train`.
"""

from . import metrics as metrics
from . import plot as plot
from . import train as train
from ._normalisation import CONVENTIONS as CONVENTIONS
from ._normalisation import LABEL_SMOOTHING_CONVENTIONS as LABEL_SMOOTHING_CONVENTIONS
from ._normalisation import Convention as Convention
from ._normalisation import convert_label_smoothing as convert_label_smoothing
from ._normalisation import convert_lambdas as convert_lambdas
from ._solution import Restarts as Restarts
from ._solution import Solution as Solution
from ._solution import Status as Status
from ._solution import Trajectory as Trajectory
from ._solution import status_messages as status_messages
from ._solve import solve as solve
from ._solvers import LBFGS as LBFGS
from ._solvers import Exact as Exact
from ._solvers import OptaxSolver as OptaxSolver
from ._solvers import Solver as Solver
from ._sweep import SweepTable as SweepTable
from ._sweep import shard_samples as shard_samples
from ._sweep import sweep as sweep
from ._types import Params as Params
from .problems import ClassificationUFM as ClassificationUFM
from .problems import DeepParams as DeepParams
from .problems import DeepUFM as DeepUFM
from .problems import Problem as Problem
from .problems import RegressionUFM as RegressionUFM
from .problems import stack as stack

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS",
    "ClassificationUFM",
    "Convention",
    "DeepParams",
    "DeepUFM",
    "Exact",
    "LBFGS",
    "OptaxSolver",
    "Params",
    "Problem",
    "RegressionUFM",
    "Restarts",
    "Solution",
    "Solver",
    "Status",
    "Trajectory",
    "LABEL_SMOOTHING_CONVENTIONS",
    "convert_label_smoothing",
    "convert_lambdas",
    "metrics",
    "solve",
    "stack",
    "status_messages",
    "SweepTable",
    "plot",
    "shard_samples",
    "sweep",
    "train",
]
