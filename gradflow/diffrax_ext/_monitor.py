"""Any Diffrax solver, with the stiffness of the flow estimated and recorded at every step.

The diagnostic of ``gf.flow(..., stiffness=True)``: which part of a run was stability-bound
(``h ρ`` near the solver's stability boundary ``β``) and which accuracy-bound (THEORY 3.5). The
estimate and the record are those of :mod:`._spectral`.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp

from ._delegating import AbstractDelegatingSolver
from ._spectral import SpectralRecord, power_iteration, start_vector


class SpectralMonitor(AbstractDelegatingSolver, diffrax.AbstractWrappedSolver):
    """``solver``, with the spectral radius estimated at the start of every step and recorded
    in a :class:`SpectralRecord` (``1 + 2·iterations`` extra gradient evaluations per step with
    the two-sided difference, counted in the record, not in the solver's own work). Diagnostic
    only: it changes no step.
    """

    solver: diffrax.AbstractSolver
    beta: float | None = None
    iterations: int = eqx.field(static=True, default=1)
    init_iterations: int = eqx.field(static=True, default=20)
    two_sided: bool = eqx.field(static=True, default=True)
    threshold: float = 0.5

    def init(self, terms, t0, t1, y0, args):
        vf = lambda y: terms.vf(t0, y, args)  # noqa: E731
        v0 = start_vector(y0)
        rho, v = power_iteration(vf, y0, vf(y0), v0, self.init_iterations, self.two_sided)
        beta = jnp.nan if self.beta is None else self.beta
        n = self.init_iterations * (1 + self.two_sided) + 1
        dtype = rho.dtype
        record = SpectralRecord.empty(t0, beta, self.threshold, dtype, n, n)
        record = eqx.tree_at(lambda r: r.rho, record, rho)
        return self.solver.init(terms, t0, t1, y0, args), (v, record)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, (v, record) = solver_state
        vf = lambda y: terms.vf(t0, y, args)  # noqa: E731
        rho, v = power_iteration(vf, y0, vf(y0), v, self.iterations, self.two_sided)
        y1, y_error, dense_info, inner, result = self.solver.step(
            terms, t0, t1, y0, args, inner, made_jump
        )
        n = self.iterations * (1 + self.two_sided) + 1
        record = record.add_step(t0, t1 - t0, rho, n, n)
        return y1, y_error, dense_info, (inner, (v, record)), result
