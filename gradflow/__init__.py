"""gradflow: gradient flows, SDEs and SGD of normalized homogeneous networks.

The conventions every function here follows are in the documentation's theory page
(``docs/theory.md``); citations "THEORY n.m" in docstrings refer to its sections.

Public API (``import gradflow as gf``; the exact list is ``gf.__all__``, documented in
``docs/api.md``):

* problem: :class:`Problem`, the parametrizations :class:`Plain`, :class:`LMAll`,
  :class:`LMLast`, :class:`WeightNorm` (shorthands ``"none"``, ``"lm-all"``, ``"lm-last"``,
  ``"wn"``), the per-sample loss :func:`square_error` and :func:`sample_losses`;
* dynamics: the objects :class:`ODE`, :class:`SDE`, :class:`SGD`; the conveniences
  :func:`flow` (ODE; SDE with ``noise=SGDNoise(...)``) and :func:`sgd`; their failures
  :class:`RunFailed`, :class:`Diverged`, :class:`MaxStepsReached`, :class:`Interrupted`;
* observations: :class:`Observable` (a name and ``fn(problem, state) -> dict``), the built-in
  groups :data:`OBSERVABLES` (``"nc"``, ``"rank"``, ``"margins"``, ``"weights"``), :func:`observe`;
* results: :class:`Trajectory`, :func:`load`, :func:`versions`;
* analysis: :func:`compare`, :func:`sde_vs_sgd`, :func:`ensemble_summary`,
  :func:`top_hessian_eigenvalue`, :func:`stable_learning_rate`, :func:`equilibrium` (exact
  fixed points), :func:`hessian_spectrum`; scenarios: :func:`sweep`;
* sub-packages: ``data``, ``models``, ``metrics``, ``predict``, ``bounds``, ``dynamics``,
  ``diffrax_ext``, ``analysis``, ``scenario`` (and ``gradflow.testing``, imported on its own:
  it needs Hypothesis).
"""

# first: one line, not a traceback, for a signal while the console script imports the rest
from . import _startup  # noqa: F401, I001
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import analysis as analysis
from . import bounds as bounds
from . import data as data
from . import diffrax_ext as diffrax_ext
from . import dynamics as dynamics
from . import metrics as metrics
from . import models as models
from . import predict as predict
from . import scenario as scenario
from ._hessian import stable_learning_rate as stable_learning_rate
from ._hessian import top_hessian_eigenvalue as top_hessian_eigenvalue
from ._loss import chunk_budget as chunk_budget
from ._loss import default_chunk_size as default_chunk_size
from ._loss import sample_losses as sample_losses
from ._loss import square_error as square_error
from ._observables import OBSERVABLES as OBSERVABLES
from ._observables import Observable as Observable
from ._observables import observe as observe
from ._observables import register_observable as register_observable
from ._parametrization import AbstractParametrization as AbstractParametrization
from ._parametrization import LMAll as LMAll
from ._parametrization import LMLast as LMLast
from ._parametrization import Plain as Plain
from ._parametrization import WeightNorm as WeightNorm
from ._problem import Problem as Problem
from ._trajectory import Trajectory as Trajectory
from ._trajectory import load as load
from ._trajectory import versions as versions
from .analysis import compare as compare
from .analysis import ensemble_summary as ensemble_summary
from .analysis import equilibrium as equilibrium
from .analysis import hessian_spectrum as hessian_spectrum
from .analysis import sde_vs_sgd as sde_vs_sgd
from .diffrax_ext import FloorController as FloorController
from .diffrax_ext import ProjectedSolver as ProjectedSolver
from .diffrax_ext import SGDNoise as SGDNoise
from .dynamics import ODE as ODE
from .dynamics import SDE as SDE
from .dynamics import SGD as SGD
from .dynamics import SOLVERS as SOLVERS
from .dynamics import AbstractDynamics as AbstractDynamics
from .dynamics import Checkpoint as Checkpoint
from .dynamics import Diverged as Diverged
from .dynamics import Interrupted as Interrupted
from .dynamics import MaxStepsReached as MaxStepsReached
from .dynamics import RunFailed as RunFailed
from .dynamics import RESULTS as RESULTS
from .dynamics import flow as flow
from .dynamics import sgd as sgd
from .dynamics import simulate as simulate
from .scenario import sweep as sweep

try:
    __version__ = _version("gradflow")
except _PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AbstractDynamics",
    "AbstractParametrization",
    "analysis",
    "bounds",
    "Checkpoint",
    "chunk_budget",
    "compare",
    "data",
    "default_chunk_size",
    "diffrax_ext",
    "Diverged",
    "dynamics",
    "ensemble_summary",
    "equilibrium",
    "FloorController",
    "flow",
    "hessian_spectrum",
    "Interrupted",
    "LMAll",
    "LMLast",
    "load",
    "MaxStepsReached",
    "metrics",
    "models",
    "Observable",
    "OBSERVABLES",
    "observe",
    "ODE",
    "Plain",
    "predict",
    "Problem",
    "ProjectedSolver",
    "register_observable",
    "RESULTS",
    "RunFailed",
    "sample_losses",
    "scenario",
    "SDE",
    "sde_vs_sgd",
    "SGD",
    "sgd",
    "SGDNoise",
    "simulate",
    "SOLVERS",
    "square_error",
    "stable_learning_rate",
    "sweep",
    "top_hessian_eigenvalue",
    "Trajectory",
    "versions",
    "WeightNorm",
    "__version__",
]
