"""The UFM problems, one module each; :mod:`ufm.problems._base` states the interface that
:func:`ufm.solve` and the solvers use. Adding a problem means one module here and one
re-export line."""

from ._base import Problem as Problem
from ._base import Reduction as Reduction
from ._base import stack as stack
from .classification import ClassificationUFM as ClassificationUFM
from .classification import ClassMeanUFM as ClassMeanUFM
from .deep import DeepParams as DeepParams
from .deep import DeepUFM as DeepUFM
from .regression import RegressionUFM as RegressionUFM
