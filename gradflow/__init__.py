"""gradflow: gradient flows, SDEs and SGD of normalized homogeneous networks.

The conventions every function here follows are in the documentation's theory page
(``docs/theory.md``); citations "THEORY n.m" in docstrings refer to its sections.

Public API (``import gradflow as gf``):

* problem: :class:`Problem`, the parametrizations :class:`Plain`, :class:`LMAll`,
  :class:`LMLast`, :class:`WeightNorm` (shorthands ``"none"``, ``"lm-all"``, ``"lm-last"``,
  ``"wn"``);
* dynamics: :func:`flow` (ODE; SDE with ``noise=SGDNoise(...)``), :func:`sgd`;
* results: :class:`Trajectory`, :func:`load`, :func:`register_observable`;
* analysis: :func:`compare`, :func:`sde_vs_sgd`, :func:`ensemble_summary`,
  :func:`top_hessian_eigenvalue`, :func:`stable_learning_rate`, :func:`equilibrium` (exact
  fixed points), :func:`hessian_spectrum`;
* sub-packages: ``data``, ``models``, ``metrics``, ``predict``, ``bounds``, ``dynamics``,
  ``diffrax_ext``, ``analysis``, ``scenario``.
"""

# first: one line, not a traceback, for a signal while the console script imports the rest
from . import _startup  # noqa: F401, I001
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import analysis, bounds, data, diffrax_ext, dynamics, metrics, models, predict, scenario
from ._hessian import stable_learning_rate, top_hessian_eigenvalue
from ._loss import chunk_budget, default_chunk_size, sample_losses, square_error
from ._observables import observable_groups, observe, register_observable
from ._parametrization import (
    AbstractParametrization,
    LMAll,
    LMLast,
    Plain,
    WeightNorm,
)
from ._problem import Problem
from ._trajectory import Trajectory, load, versions
from .analysis import compare, ensemble_summary, equilibrium, hessian_spectrum, sde_vs_sgd
from .diffrax_ext import FloorController, ProjectedSolver, SGDNoise
from .dynamics import (
    ODE,
    RESULTS,
    SDE,
    SGD,
    SOLVERS,
    AbstractDynamics,
    Checkpoint,
    Diverged,
    Interrupted,
    MaxStepsReached,
    RunFailed,
    flow,
    sgd,
    simulate,
)
from .scenario import sweep

try:
    __version__ = _version("gradflow")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AbstractDynamics",
    "ODE",
    "RESULTS",
    "SDE",
    "SGD",
    "simulate",
    "AbstractParametrization",
    "Checkpoint",
    "Diverged",
    "MaxStepsReached",
    "RunFailed",
    "Interrupted",
    "FloorController",
    "LMAll",
    "LMLast",
    "Plain",
    "Problem",
    "ProjectedSolver",
    "SGDNoise",
    "SOLVERS",
    "Trajectory",
    "WeightNorm",
    "analysis",
    "bounds",
    "compare",
    "data",
    "diffrax_ext",
    "dynamics",
    "ensemble_summary",
    "equilibrium",
    "flow",
    "hessian_spectrum",
    "load",
    "metrics",
    "models",
    "observable_groups",
    "observe",
    "predict",
    "register_observable",
    "scenario",
    "sde_vs_sgd",
    "sample_losses",
    "chunk_budget",
    "default_chunk_size",
    "sgd",
    "square_error",
    "sweep",
    "stable_learning_rate",
    "top_hessian_eigenvalue",
    "versions",
    "__version__",
]
