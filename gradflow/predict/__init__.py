"""Closed-form and reduced-ODE predictions of THEORY 4 (and 3.3).

Array-level functions: they take the normalized outputs ``f_n``, targets and hyperparameters as
arrays (so a sweep can ``vmap`` them). :func:`balanced_equilibria` and
:func:`balanced_rhs_symbolic` use sympy/scipy and return Python objects.
"""

from ._balanced import Equilibrium, balanced_equilibria, balanced_rhs_symbolic
from ._collapse import etf_gram, nc_kappa
from ._laws import balance_law, wn_norm_growth
from ._problem import format_report, normalized_outputs, report, rho_eq
from ._rank import rank_bound
from ._rho import kappa, quasi_interpolation, rho_relaxation

__all__ = [
    "rho_eq",
    "kappa",
    "rho_relaxation",
    "quasi_interpolation",
    "Equilibrium",
    "balanced_rhs_symbolic",
    "balanced_equilibria",
    "balance_law",
    "wn_norm_growth",
    "rank_bound",
    "nc_kappa",
    "etf_gram",
    "normalized_outputs",
    "report",
    "format_report",
]
