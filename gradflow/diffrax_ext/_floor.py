"""A step floor for adaptive control on non-smooth gradient flows.

:class:`FloorController` wraps a ``PIDController`` with a step floor that bounds the crawl of
adaptive control on Filippov sliding surfaces, without letting a forced step break the flow's
descent. Its state is a :class:`FloorState`, whose counters the flow reports in its stats.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int, Real


class FloorState(eqx.Module):
    """The controller state of :class:`FloorController`."""

    inner: object
    floor: Real[Array, ""]
    num_forced: Int[Array, ""]
    num_refused: Int[Array, ""]


class FloorController(diffrax.AbstractAdaptiveStepSizeController):
    """A PID controller with a descent-guarded step floor.

    The ReLU flow's right-hand side jumps on switching surfaces and may slide along them;
    there the error estimate stops shrinking with the step and a plain adaptive controller
    crawls without end. Here a step of size ``<= floor`` that fails the tolerance is
    *forced* (accepted anyway) provided the total loss ``args.loss(y)`` stays finite and
    does not rise by more than ``max_rise`` (1%) relative in that step. The flow itself never
    increases the loss, but explicit steps on a sliding surface chatter across it and can
    raise the loss slightly; a rise of 1% in one step is instead the signature of a step
    beyond the local stability limit ``2/λ_max`` (e.g. early in a stiff run). Then the step
    is rejected and the floor halves; each accepted step raises it by 2% back towards
    ``dtmin``.

    Controller state: a :class:`FloorState` (the PID's state, the current floor, the numbers
    of forced and refused floor steps).
    """

    controller: diffrax.PIDController
    dtmin: float
    max_rise: float = 1e-2

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return FloorController(self.controller.wrap(direction), self.dtmin, self.max_rise)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        t1, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        floor = jnp.asarray(self.dtmin, jnp.result_type(float))
        t1 = t0 + jnp.maximum(t1 - t0, floor)
        zero = jnp.zeros((), jnp.int32)
        return t1, FloorState(state, floor, zero, zero)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        pid_state, floor = state.inner, state.floor
        n_forced, n_rejected = state.num_forced, state.num_refused
        keep, pid_t0, pid_t1, jump, pid_state, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, pid_state
        )
        want_force = ~keep & (t1 - t0 <= floor * (1 + 1e-9))

        def descends():
            l0, l1 = args.loss(y0), args.loss(y1_candidate)
            return jnp.isfinite(l1) & (l1 <= l0 + self.max_rise * jnp.abs(l0))

        ok = jax.lax.cond(want_force, descends, lambda: jnp.asarray(False))
        force = want_force & ok
        refuse = want_force & ~ok
        keep = keep | force
        floor = jnp.where(refuse, 0.5 * floor, floor)
        floor = jnp.where(keep, jnp.minimum(1.02 * floor, self.dtmin), floor)
        next_t0 = jnp.where(keep, t1, t0)
        dt = jnp.maximum(pid_t1 - pid_t0, floor)
        dt = jnp.where(refuse, floor, dt)
        return (
            keep,
            next_t0,
            next_t0 + dt,
            jump,
            FloorState(pid_state, floor, n_forced + force, n_rejected + refuse),
            result,
        )
