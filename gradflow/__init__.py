"""gradflow: gradient flows, SDEs and SGD of normalized homogeneous networks.

See shared/THEORY.md for the conventions every function here follows.
"""

from . import bounds, data, metrics, predict
from ._compare import compare
from ._flow import SOLVERS, flow
from ._hessian import stable_learning_rate, top_hessian_eigenvalue
from ._problem import Problem
from ._sgd import Diverged, sgd
from ._trajectory import Trajectory, load

__version__ = "0.1.0"

__all__ = [
    "data", "metrics", "predict", "bounds",
    "Problem", "flow", "sgd", "compare", "SOLVERS", "Diverged",
    "Trajectory", "load", "stable_learning_rate", "top_hessian_eigenvalue",
    "__version__",
]
