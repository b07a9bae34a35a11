"""Property testing of gradflow's mathematics: Hypothesis strategies and invariant checkers.

``import gradflow.testing as gft`` (it needs Hypothesis, a dependency of the ``test`` and
``docs`` extras; ``import gradflow`` does not import this package).

* Strategies (:mod:`._strategies`) draw values at a few fixed shapes, so JAX compiles a
  bounded number of times: :func:`networks` and :func:`inputs` (the architectures of
  :data:`ARCHITECTURES`: MLP, DeepLinear, LocalCNN), :func:`datasets`, :func:`problems` (all four
  parametrizations, ``λ``, targets; built from a printable :class:`ProblemSpec`, drawn by
  :func:`problem_specs`), :func:`states` and :func:`problem_states`, and the values
  :func:`seeds`, :func:`init_scales`, :func:`weight_decays`, :func:`parametrizations`.
* Checkers (:mod:`._checks`) return the measured deviation from an identity of the theory —
  never assert — so a test chooses its tolerance: :func:`homogeneity_error` (THEORY 2.1),
  :func:`euler_identity_error` (2.2), :func:`gradient_scaling_error` (2.3),
  :func:`balance_rate_error` and :func:`balance_law_error` (3.1, 4.5), :func:`unit_norm_error`
  and :func:`tangency_error` (2.4, 3.2), :func:`wn_norm_growth_error` (3.3),
  :func:`loss_increase` (monotonicity of the loss along a flow), :func:`rho_eq_error` (4.1).
* Reference values (:mod:`._lyapunov`): :func:`linreg_stationary_covariance`, the exact
  stationary covariance of SGD with replacement, of its SDE and of Euler–Maruyama on linear
  regression (THEORY 3.4), against which the SDE's solvers and ``gf.sgd`` are tested.

The tutorial "Property testing" of the documentation tests a conjecture with them.
"""

from ._checks import balance_law_error as balance_law_error
from ._checks import balance_rate_error as balance_rate_error
from ._checks import euler_identity_error as euler_identity_error
from ._checks import gradient_scaling_error as gradient_scaling_error
from ._checks import homogeneity_error as homogeneity_error
from ._checks import loss_increase as loss_increase
from ._checks import rho_eq_error as rho_eq_error
from ._checks import tangency_error as tangency_error
from ._checks import unit_norm_error as unit_norm_error
from ._checks import wn_norm_growth_error as wn_norm_growth_error
from ._lyapunov import linreg_stationary_covariance as linreg_stationary_covariance
from ._strategies import ARCHITECTURES as ARCHITECTURES
from ._strategies import PARAMETRIZATIONS as PARAMETRIZATIONS
from ._strategies import TARGETS as TARGETS
from ._strategies import Architecture as Architecture
from ._strategies import ProblemSpec as ProblemSpec
from ._strategies import ProblemStateSpec as ProblemStateSpec
from ._strategies import architecture as architecture
from ._strategies import build_network as build_network
from ._strategies import build_problem as build_problem
from ._strategies import build_problem_state as build_problem_state
from ._strategies import datasets as datasets
from ._strategies import init_scales as init_scales
from ._strategies import input_shape as input_shape
from ._strategies import inputs as inputs
from ._strategies import make_dataset as make_dataset
from ._strategies import networks as networks
from ._strategies import parametrizations as parametrizations
from ._strategies import problem_specs as problem_specs
from ._strategies import problem_states as problem_states
from ._strategies import problems as problems
from ._strategies import random_state as random_state
from ._strategies import seeds as seeds
from ._strategies import states as states
from ._strategies import weight_decays as weight_decays

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "PARAMETRIZATIONS",
    "ProblemSpec",
    "ProblemStateSpec",
    "TARGETS",
    "architecture",
    "balance_law_error",
    "balance_rate_error",
    "build_network",
    "build_problem",
    "build_problem_state",
    "datasets",
    "euler_identity_error",
    "gradient_scaling_error",
    "homogeneity_error",
    "init_scales",
    "input_shape",
    "inputs",
    "linreg_stationary_covariance",
    "loss_increase",
    "make_dataset",
    "networks",
    "parametrizations",
    "problem_specs",
    "problem_states",
    "problems",
    "random_state",
    "rho_eq_error",
    "seeds",
    "states",
    "tangency_error",
    "unit_norm_error",
    "weight_decays",
    "wn_norm_growth_error",
]
