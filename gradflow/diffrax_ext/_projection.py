"""Projection onto the constraint set after every step, as a Diffrax solver wrapper.

:class:`ProjectedSolver` retracts the state onto the parametrization's constraint set after
each step (the LM flows keep ``||V_k|| = 1`` to rounding rather than to the solver tolerance;
the dense output is patched so that values saved at step ends are the projected ones).
:class:`ItoProjectedSolver` is the same wrapper marked Itô, for the SDE of SGD.
"""

from __future__ import annotations

import diffrax

from .._parametrization import AbstractParametrization
from ._delegating import AbstractDelegatingSolver


class ProjectedSolver(AbstractDelegatingSolver, diffrax.AbstractWrappedSolver):
    """``solver``, followed by ``parametrization.project`` on every step's result."""

    solver: diffrax.AbstractSolver
    parametrization: AbstractParametrization

    @property
    def root_finder(self):
        """The wrapped implicit solver's root finder (Diffrax sets its tolerances)."""
        return self.solver.root_finder

    @property
    def root_find_max_steps(self):
        return self.solver.root_find_max_steps

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, dense_info, solver_state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, made_jump
        )
        y1 = self.parametrization.project(y1)
        if "y1" in dense_info:
            dense_info = dict(dense_info, y1=y1)
        return y1, y_error, dense_info, solver_state, result


class ItoProjectedSolver(ProjectedSolver, diffrax.AbstractItoSolver):
    """:class:`ProjectedSolver` around an Itô solver, marked Itô for Diffrax."""
