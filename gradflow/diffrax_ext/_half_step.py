"""Euler–Maruyama with a step-doubling error estimate whose saved value is the accepted one.

Not a public SDE solver of gradflow: with a PID controller on SGD's (non-commutative) noise its
stationary covariance on linear regression was ~10 % too large (benchmarks/sde_stationary.py,
benchmarks/README.md "SDE solvers"), so ``"euler-adaptive"`` was removed from the choices.
"""

from __future__ import annotations

import diffrax


class HalfStepEuler(diffrax.HalfSolver, diffrax.AbstractItoSolver):
    """``HalfSolver`` whose dense output is the accepted two-half-step value.

    Diffrax's ``HalfSolver`` returns the dense information of the single full step, so a
    value saved at a step's end would be the rejected full step; here it is ``y1``.
    """

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, _, solver_state, result = super().step(
            terms, t0, t1, y0, args, solver_state, made_jump
        )
        return y1, y_error, dict(y0=y0, y1=y1), solver_state, result
