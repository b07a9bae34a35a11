"""RKC2: the second-order Runge–Kutta–Chebyshev method, a stabilized explicit Diffrax solver.

Verwer, Hundsdorfer & Sommeijer (1990); Sommeijer, Shampine & Verwer (1998). With ``s`` stages
and damping ``ε`` (2/13), ``w0 = 1 + ε/s²``, ``w1 = T_s'(w0)/T_s''(w0)``,
``b_j = T_j''(w0)/T_j'(w0)²`` (``b_0 = b_1 = b_2``), the step from ``y_n`` is

    Y_0 = y_n,     Y_1 = Y_0 + μ̃_1 h F(Y_0),       μ̃_1 = b_1 w1,
    Y_j = (1 − μ_j − ν_j) Y_0 + μ_j Y_{j−1} + ν_j Y_{j−2} + μ̃_j h F(Y_{j−1}) + γ̃_j h F(Y_0),
    μ_j = 2 b_j w0 / b_{j−1},  ν_j = −b_j / b_{j−2},  μ̃_j = 2 b_j w1 / b_{j−1},
    γ̃_j = −(1 − b_{j−1} T_{j−1}(w0)) μ̃_j,          y_{n+1} = Y_s,

with stage times ``c_j`` from the same recursion. Its stability polynomial is
``a_s + b_s T_s(w0 + w1 z)``, bounded by 1 on ``[−β(s), 0]``, ``β(s) = (1 + w0)/w1 ≈ 0.653 s²``.
The error estimate is RKC's ``(1/15)[12 (y_n − y_{n+1}) + 6 h (F(y_n) + F(y_{n+1}))]``
(``O(h³)``; ``F(y_{n+1})`` is the next step's ``F(Y_0)``). Each step estimates the spectral
radius ``ρ`` by the power method on differences of ``F`` (:mod:`._spectral`, warm-started), and
takes the fewest stages with ``β(s) ≥ safety · h ρ``, at most ``max_stages``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp

from ._spectral import SpectralRecord, power_iteration, start_vector

#: ``β(s) / (s² − 1)`` decreases from 0.6543 (s = 2) to 0.65338 (s → ∞) for ``ε = 2/13``.
_BETA_SLOPE = 0.65338


def chebyshev_weights(s, damping=2 / 13):
    """``(w0, w1, β(s))`` for ``s`` stages (arrays; ``s`` may be traced)."""
    s = jnp.asarray(s, jnp.result_type(float))
    d = damping / s**2
    w0 = 1 + d
    t1 = d * (2 + d)  # w0² − 1
    t2 = jnp.sqrt(t1)
    arg = s * jnp.log1p(d + t2)  # s · acosh(w0)
    w1 = jnp.sinh(arg) * t1 / (jnp.cosh(arg) * s * t2 - w0 * jnp.sinh(arg))
    return w0, w1, (1 + w0) / w1


def stages_for(h_rho, max_stages: int):
    """The fewest stages ``s ≥ 2`` with ``β(s) ≥ h_rho`` (``β(s) ≥ 0.65338 (s² − 1)``), capped."""
    need = jnp.ceil(jnp.sqrt(1 + jnp.maximum(h_rho, 0.0) / _BETA_SLOPE))
    need = jnp.where(jnp.isfinite(need), need, max_stages)
    return jnp.clip(need, 2, max_stages).astype(jnp.int32)


def _combine(*pairs):
    """``Σ c_i x_i`` over pytrees: ``_combine(c_1, x_1, c_2, x_2, ...)``."""
    coefficients, trees = pairs[::2], pairs[1::2]

    def leaf(*xs):
        return sum(c * x for c, x in zip(coefficients, xs)).astype(xs[0].dtype)

    return jax.tree.map(leaf, *trees)


def chebyshev_stages(vf, t0, h, y0, f0, s, w0, w1):
    """``Y_s`` of the RKC2 recursion (module docstring) for ``s ≥ 2`` stages (``s`` may be
    traced): ``s − 1`` evaluations of ``vf(t, y)``, ``f0 = vf(t0, y0)`` given."""
    dtype = w0.dtype
    b1 = 1 / (2 * w0) ** 2  # b_0 = b_1 = b_2 = T_2''/T_2'² = 1/(4 w0²)
    mus1 = w1 * b1
    y1 = _combine(1.0, y0, h * mus1, f0)
    # carry: j, Y_{j−1}, Y_{j−2}, T_{j−1}, T_{j−2}, T'_{j−1}, T'_{j−2}, T''_{j−1}, T''_{j−2},
    #        b_{j−1}, b_{j−2}, c_{j−1}, c_{j−2}  (T, T', T'' at w0; c the stage times)
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    carry = (jnp.asarray(2), y1, y0, w0, one, one, zero, zero, zero, b1, b1, mus1, zero)

    def body(c):
        j, ym1, ym2, z1, z2, dz1, dz2, d2z1, d2z2, bm1, bm2, th1, th2 = c
        z = 2 * w0 * z1 - z2
        dz = 2 * w0 * dz1 - dz2 + 2 * z1
        d2z = 2 * w0 * d2z1 - d2z2 + 4 * dz1
        b = d2z / dz**2
        a_m1 = 1 - z1 * bm1
        mu = 2 * w0 * b / bm1
        nu = -b / bm2
        mus = mu * w1 / w0
        fj = vf(t0 + th1 * h, ym1)
        yj = _combine(mus * h, fj, nu, ym2, mu, ym1, 1 - mu - nu, y0, -a_m1 * mus * h, f0)
        th = mu * th1 + nu * th2 + mus * (1 - a_m1)
        return (j + 1, yj, ym1, z, z1, dz, dz1, d2z, d2z1, b, bm1, th, th1)

    return jax.lax.while_loop(lambda c: c[0] <= s, body, carry)[1]


class RKC2State(eqx.Module):
    f0: object  # F(y0), first same as last
    v: object  # the power method's unit vector
    record: SpectralRecord


class RKC2(diffrax.AbstractAdaptiveSolver):
    """Second-order Runge–Kutta–Chebyshev (RKC) with stages chosen from a running estimate of
    the spectral radius; for ODEs ``dy/dt = F(y)`` whose Jacobian has a real, nonpositive
    spectrum (gradient flows: ``−∇²L``).

    Args:
        max_stages: the stage cap (``β ≈ 0.653 · max_stages²``). A step that would need more
            is taken with ``max_stages`` stages and counted in the record's ``num_capped``;
            the error estimate then rejects it if it is unstable.
        safety: ``s`` is chosen so that ``β(s) ≥ safety · h ρ`` (RKC uses 1.2).
        damping: ``ε`` (2/13, RKC's value).
        power_iterations: power iterations per estimate, warm-started.
        spectral_every: estimate ``ρ`` every this many accepted steps (RKC: 25), else reuse
            the last estimate; 1 (every step) follows a spectrum that moves quickly, as in the
            normalized flows (THEORY 3.5), at the price of ``2 · power_iterations`` evaluations
            per step.
        init_iterations: power iterations of the first step (from a fixed pseudo-random
            vector).
        two_sided: difference ``F`` on both sides of ``y`` and keep the smaller quotient (two
            ``F`` per power iteration instead of one): a one-sided difference across a ReLU
            switching surface measures the jump of ``F``, not its Jacobian
            (:func:`gradflow.diffrax_ext.power_iteration`).
        threshold: a step is recorded as stability-bound if ``h ρ ≥ threshold · β(2)``, the
            boundary of the method at its least work per step.

    Work per step: ``s`` evaluations of ``F`` (stages 1 … s−1 and ``F(y_{n+1})``) plus
    ``power_iterations`` (× 2 if ``two_sided``); all are counted in the state's
    :class:`SpectralRecord`.
    """

    max_stages: int = eqx.field(static=True, default=200)
    safety: float = 1.2
    damping: float = eqx.field(static=True, default=2 / 13)
    power_iterations: int = eqx.field(static=True, default=1)
    spectral_every: int = eqx.field(static=True, default=1)
    init_iterations: int = eqx.field(static=True, default=20)
    two_sided: bool = eqx.field(static=True, default=True)
    threshold: float = 0.5

    @property
    def spectral_cost(self) -> tuple[int, int]:
        """Evaluations of ``F`` by the power method: ``(per estimate, first step)``."""
        per = 2 if self.two_sided else 1
        return per * self.power_iterations, per * self.init_iterations

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation

    def order(self, terms):
        return 2

    def error_order(self, terms):
        return 3

    def stability_boundary(self, s: int) -> float:
        """``β(s) = (1 + w0)/w1`` (host float)."""
        d = self.damping / s**2
        w0, t1 = 1 + d, d * (2 + d)
        arg = s * math.log1p(d + math.sqrt(t1))
        w1 = math.sinh(arg) * t1 / (math.cosh(arg) * s * math.sqrt(t1) - w0 * math.sinh(arg))
        return (1 + w0) / w1

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def init(self, terms, t0, t1, y0, args):
        """``F(y0)`` and the start vector; the first step makes ``init_iterations``."""
        f0 = terms.vf(t0, y0, args)
        dtype = jnp.result_type(*jax.tree.leaves(y0))
        record = SpectralRecord.empty(t0, self.stability_boundary(2), self.threshold, dtype, 1)
        return RKC2State(f0, start_vector(y0), record)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        f0, v, record = solver_state.f0, solver_state.v, solver_state.record
        dtype = jnp.result_type(*jax.tree.leaves(y0))
        vf = lambda t, y: terms.vf(t, y, args)  # noqa: E731
        if made_jump is not False:  # Diffrax resolves it statically when there are no jumps
            f0 = jax.lax.cond(eqxi.unvmap_any(made_jump), lambda: vf(t0, y0), lambda: f0)
        first = record.num_steps == 0
        iterations = jnp.where(first, self.init_iterations, self.power_iterations)

        def estimate():
            return power_iteration(lambda y: vf(t0, y), y0, f0, v, iterations, self.two_sided)

        if self.spectral_every == 1:
            due = jnp.asarray(True)
            rho, v = estimate()
        else:
            due = first | (record.num_steps % self.spectral_every == 0)
            rho, v_new = jax.lax.cond(eqxi.unvmap_any(due), estimate, lambda: (record.rho, v))
            rho = jnp.where(due, rho, record.rho)
            v = jax.tree.map(lambda a, b: jnp.where(due, a, b), v_new, v)
        h = jnp.asarray(t1 - t0, dtype)
        want = stages_for(self.safety * h * rho, 2**30)
        s = jnp.minimum(want, self.max_stages)
        w0, w1, _ = (a.astype(dtype) for a in chebyshev_weights(s, self.damping))

        y1 = chebyshev_stages(vf, t0, h, y0, f0, s, w0, w1)
        f1 = vf(t1, y1)
        err = _combine(12 / 15, y0, -12 / 15, y1, 6 * h / 15, f0, 6 * h / 15, f1)
        spectral = jnp.where(due, iterations * (2 if self.two_sided else 1), 0)
        evals = s + spectral + jnp.where(made_jump, 1, 0)
        record = record.add_step(
            t0, h, rho, evals, spectral, stages=s, capped=want > self.max_stages
        )
        dense = dict(y0=y0, y1=y1, k0=_combine(h, f0), k1=_combine(h, f1))
        state = RKC2State(f1, v, record)
        return y1, err, dense, state, diffrax.RESULTS.successful
