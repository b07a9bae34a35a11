"""A Diffrax solver wrapper: retraction onto the constraint set, and step-floor accounting.

``ProjectedSolver(solver, normalization, dtmin)`` runs ``solver`` and, after each step,

* retracts the new state onto the constraint set of ``normalization`` (the LM flows keep ``||V_k|| = 1`` to rounding
  instead of to the solver tolerance; the dense output is patched so that values saved at
  step ends are the projected ones);
* counts the accepted steps whose size is the step floor ``dtmin`` (steps that Diffrax's
  ``PIDController(force_dtmin=True)`` accepted without meeting the tolerance, typically on a
  Filippov sliding surface of the ReLU flow), so that a run never crawls silently.
"""

from __future__ import annotations

import diffrax
import jax.numpy as jnp

from . import _normalization as nz


class ProjectedSolver(diffrax.AbstractWrappedSolver):
    solver: diffrax.AbstractSolver
    normalization: str
    dtmin: float | None = None

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return (self.solver.init(terms, t0, t1, y0, args), jnp.zeros((), jnp.int32))

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner_state, n_floor = solver_state
        y1, y_error, dense_info, inner_state, result = self.solver.step(
            terms, t0, t1, y0, args, inner_state, made_jump
        )
        y1 = nz.project(self.normalization, y1)
        if "y1" in dense_info:
            dense_info = dict(dense_info, y1=y1)
        if self.dtmin is not None:
            at_floor = jnp.abs((t1 - t0) - self.dtmin) <= 1e-9 * self.dtmin
            n_floor = n_floor + at_floor.astype(n_floor.dtype)
        return y1, y_error, dense_info, (inner_state, n_floor), result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)
