"""gradflow: gradient flows, SDEs and SGD of normalized homogeneous networks.

See shared/THEORY.md for the conventions every function here follows.
"""

from . import bounds, data, metrics, predict
from ._compare import compare
from ._ensembles import ensemble_summary, sde_vs_sgd
from ._flow import SOLVERS, flow
from ._hessian import stable_learning_rate, top_hessian_eigenvalue
from ._noise import SGDNoise
from ._problem import Problem
from ._sgd import Diverged, sgd
from ._trajectory import Trajectory, load

__version__ = "0.1.0"

__all__ = [
    "data",
    "metrics",
    "predict",
    "bounds",
    "Problem",
    "flow",
    "sgd",
    "compare",
    "SOLVERS",
    "Diverged",
    "SGDNoise",
    "sde_vs_sgd",
    "ensemble_summary",
    "Trajectory",
    "load",
    "stable_learning_rate",
    "top_hessian_eigenvalue",
    "__version__",
]
