"""Closed-form and reduced-ODE predictions of THEORY 4 (and 3.3).

Array-level functions: they take the normalized outputs ``f_n``, targets and hyperparameters as
arrays (so a sweep can ``vmap`` them). :func:`balanced_equilibria` and
:func:`balanced_rhs_symbolic` use sympy/scipy and return Python objects.
"""

from ._balanced import Equilibrium as Equilibrium
from ._balanced import balanced_equilibria as balanced_equilibria
from ._balanced import balanced_rhs_symbolic as balanced_rhs_symbolic
from ._collapse import etf_gram as etf_gram
from ._collapse import nc_kappa as nc_kappa
from ._laws import balance_law as balance_law
from ._laws import wn_norm_growth as wn_norm_growth
from ._problem import format_report as format_report
from ._problem import normalized_outputs as normalized_outputs
from ._problem import report as report
from ._problem import rho_eq as rho_eq
from ._rank import rank_bound as rank_bound
from ._rho import kappa as kappa
from ._rho import quasi_interpolation as quasi_interpolation
from ._rho import rho_relaxation as rho_relaxation

__all__ = [
    "Equilibrium",
    "balance_law",
    "balanced_equilibria",
    "balanced_rhs_symbolic",
    "etf_gram",
    "format_report",
    "kappa",
    "nc_kappa",
    "normalized_outputs",
    "quasi_interpolation",
    "rank_bound",
    "report",
    "rho_eq",
    "rho_relaxation",
    "wn_norm_growth",
]
