"""gradflow: gradient flows, SDEs and SGD of normalized homogeneous networks.

See shared/THEORY.md for the conventions every function here follows.
"""

from . import data
from ._flow import SOLVERS, flow
from ._problem import Problem
from ._trajectory import Trajectory, load

__version__ = "0.1.0"

__all__ = ["data", "Problem", "flow", "SOLVERS", "Trajectory", "load", "__version__"]
