"""The integration core shared by the ODE and the SDE (and any later Diffrax-based solver).

* :func:`save_times`: the save grid of every dynamics (SGD saves at the nearest step);
* :func:`check_run_arguments`: the checks every dynamics makes of its time span and limits;
* :func:`solve`: ONE ``diffrax.diffeqsolve`` call with the observables at the save times
  (``SaveAt(fn=observe)``), the final state and the controller state; called inside each
  dynamics' compiled function;
* :func:`run_stats`: ONE place that turns what :func:`solve` returned into ``stats``;
* :func:`start`, :func:`segment`: the ``init`` and ``advance`` of the Diffrax dynamics
  (:class:`gradflow.ODE`, :class:`gradflow.SDE`), run by :func:`gradflow.dynamics._driver.run`.
"""

from __future__ import annotations

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._observables import observe, resolve
from .._observables import saveat as observation_saveat
from .._validate import Shown, bad_value
from ..diffrax_ext import FloorState, SpectralRecord, sliding_record, sliding_stats
from ._driver import AbstractDynamics

#: The most save points any run may have, whatever the limits (``--no-limits`` included):
#: beyond this the save grid and its records do not fit in memory.
MAX_SAVE_POINTS = 10**9


def check_key(where: str, key) -> None:
    """Refuse anything but one PRNG key (``jax.random.PRNGKey(s)`` or ``jax.random.key(s)``)."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ()
    raw = dtype == np.uint32 and shape == (2,)
    if not (isinstance(key, (jax.Array, np.ndarray)) and (typed or raw)):
        shown = Shown(f"<array of shape {shape} and dtype {dtype}>") if dtype is not None else key
        raise bad_value(
            where, "key", shown, "use a PRNG key, e.g. jax.random.PRNGKey(0) or jax.random.key(0)"
        )


def check_sde_horizon(where: str, noise, t0, t1) -> None:
    """Refuse an SDE of SGD whose learning rate exceeds the horizon: one SGD step is
    ``t = lr``, and the SDE's default step ``lr/4`` would span the whole run."""
    lr = getattr(noise, "lr", None)
    if not isinstance(lr, (int, float, np.integer, np.floating)):
        return  # SGDNoise checks its own lr
    try:
        span = float(t1) - float(t0)
    except (TypeError, ValueError):
        return  # check_run_arguments names a bad t0 or t1
    if math.isfinite(span) and span > 0 and lr > span:
        raise bad_value(
            where,
            "noise.lr",
            lr,
            f"it exceeds the horizon t1 - t0 = {span:g} (one SGD step is t = lr, the SDE's "
            f"default step lr/4): use lr <= {span:g}, or a longer t1",
        )


def save_times(t0: float, t1: float, save_every=None, ts=None, where: str = "flow") -> np.ndarray:
    """The save grid: ``ts`` if given, else ``t0, t0 + save_every, ..., t1``, else 101 points."""
    if ts is not None:
        ts = np.asarray(ts, dtype=float)
        if ts.ndim != 1 or ts.size == 0 or np.any(np.diff(ts) <= 0):
            raise bad_value(where, "ts", ts, "use a non-empty increasing 1-D array")
        if ts[0] < t0 or ts[-1] > t1:
            raise bad_value(where, "ts", ts, f"times must lie in [t0, t1] = [{t0}, {t1}]")
        return ts
    if save_every is not None:
        if (
            isinstance(save_every, bool)
            or not isinstance(save_every, (int, float, np.integer, np.floating))
            or not 0 < save_every < np.inf
        ):
            raise bad_value(where, "save_every", save_every, "use a finite number > 0")
        points = (t1 - t0) / save_every + 1
        if points > MAX_SAVE_POINTS:  # no memory holds them (even the times alone)
            raise bad_value(
                where,
                "save_every",
                save_every,
                f"(t1 - t0) / save_every = {points:.3g} save points cannot be held in "
                f"memory; use at most {MAX_SAVE_POINTS:.0e}",
            )
        n = int(np.floor((t1 - t0) / save_every + 1e-9))
        grid = t0 + save_every * np.arange(n + 1)
        if not np.isclose(grid[-1], t1):
            return np.append(grid, t1)
        grid[-1] = t1  # the end exactly: t0 + n·save_every can round past t1 (0.1·3 > 0.3)
        return grid
    return np.linspace(t0, t1, 101)


def traced(value):
    """A numerical setting as a NumPy float64 scalar, which ``eqx.filter_jit`` traces (a Python
    float would be static): one compilation serves every ``rtol``, ``atol``, ``dtmin`` and
    ``dt0`` of a sweep. ``None`` stays ``None``."""
    return None if value is None else np.float64(value)


def _positive(where: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise bad_value(where, name, value, "use a number > 0")


def _finite(where: str, name: str, value, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise bad_value(where, name, value, allowed)
    if not math.isfinite(float(value)):
        raise bad_value(where, name, value, allowed)


def check_dt0(where: str, dt0) -> None:
    """``dt0``: None or a finite number > 0."""
    if dt0 is not None:
        _finite(where, "dt0", dt0, "use None or a finite number > 0")
        _positive(where, "dt0", dt0)


def check_run_arguments(where, *, t0, t1, max_steps, observables, dt0=None) -> None:
    """The checks shared by every dynamics: the span (finite), ``max_steps`` (None or an
    integer >= 1), ``dt0`` (None or a finite number > 0) and the observable groups
    (names in :data:`gradflow.OBSERVABLES` or :class:`gradflow.Observable` objects)."""
    _finite(where, "t0", t0, "use a finite number")
    _finite(where, "t1", t1, "use a finite number > 0")
    _positive(where, "t1", t1)
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1
    ):
        raise bad_value(where, "max_steps", max_steps, "use an integer >= 1")
    check_dt0(where, dt0)
    if not t1 > t0:
        raise bad_value(where, "t1", t1, f"use t1 > t0 = {t0}")
    resolve(observables, where)  # names of the built-in groups or Observable objects


def solve(term, solver, t0, t1, dt0, y0, problem, grid, controller, max_steps, groups, meter):
    """One ``diffeqsolve`` with :func:`gradflow._observables.observe` at ``grid`` (traceable).

    Returns a dict: ``t`` (save times, ``inf`` past the end), ``obs``, ``final`` (the state at
    the last step), ``stats`` (Diffrax's), ``success``, ``max_steps_reached`` (booleans),
    ``t_end``, ``num_floor_steps`` / ``num_floor_rejections`` (zero without a floor), and
    ``spectral``: the solver's :class:`gradflow.diffrax_ext.SpectralRecord` (RKC2, or a
    :class:`gradflow.diffrax_ext.SpectralMonitor`), else ``None``; ``sliding``: the
    :class:`gradflow.diffrax_ext.SlidingRecord` of a :class:`gradflow.diffrax_ext.SlidingSolver`
    (its ``sliding_*`` counts go into the run's stats), else ``None``.
    """
    saveat = observation_saveat(grid, groups)
    saveat = diffrax.SaveAt(subs=saveat.subs, controller_state=True, solver_state=True)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0,
        t1,
        dt0,
        y0,
        args=problem,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        progress_meter=meter,
    )
    (saved_t, t_end), (obs, final) = sol.ts, sol.ys
    floors = [
        s
        for s in jax.tree.leaves(sol.controller_state, is_leaf=lambda s: isinstance(s, FloorState))
        if isinstance(s, FloorState)
    ]
    records = _records(sol.solver_state, SpectralRecord)
    zero = jnp.zeros((), jnp.int32)
    return {
        "t": saved_t,
        "obs": obs,
        "final": jax.tree.map(lambda a: a[-1], final),
        "stats": sol.stats,
        "success": diffrax.is_successful(sol.result),
        "max_steps_reached": sol.result == diffrax.RESULTS.max_steps_reached,
        "t_end": t_end[-1],
        "num_floor_steps": floors[0].num_forced if floors else zero,
        "num_floor_rejections": floors[0].num_refused if floors else zero,
        "spectral": records[0] if records else None,
        "sliding": sliding_record(sol.solver_state),
    }


def _records(solver_state, cls) -> list:
    """The records of type ``cls`` inside a (wrapped) solver state."""
    is_record = lambda s: isinstance(s, cls)  # noqa: E731
    return [s for s in jax.tree.leaves(solver_state, is_leaf=is_record) if is_record(s)]


def run_stats(raw: dict, *, seeded: bool = False) -> dict:
    """``stats`` of a run from :func:`solve`'s (host) output; per-seed lists when ``seeded``.

    ``status`` is ``"success"``, ``"max_steps"``, ``"diverged"`` (a non-finite
    observable) or ``"failed"`` (another Diffrax failure).
    """
    s = raw["stats"]
    per = (lambda a: [int(x) for x in np.ravel(a)]) if seeded else (lambda a: int(a))
    ok = np.all(raw["success"])
    saved = np.isfinite(np.asarray(raw["t"]))  # Diffrax fills unreached save times with inf
    finite = np.isfinite(np.asarray(raw["obs"]["loss"])[saved]).all()
    if not finite:
        status = "diverged"
    elif ok:
        status = "success"
    elif np.any(raw["max_steps_reached"]):
        status = "max_steps"
    else:
        status = "failed"  # another Diffrax failure (RESULTS.failed)
    out = {
        "num_steps": per(s["num_steps"]),
        "num_accepted_steps": per(s["num_accepted_steps"]),
        "num_rejected_steps": per(s["num_rejected_steps"]),
        "num_floor_steps": per(raw["num_floor_steps"]),
        "num_floor_rejections": per(raw["num_floor_rejections"]),
        "status": status,
        "t_reached": (
            [float(x) for x in np.ravel(raw["t_end"])] if seeded else float(raw["t_end"])
        ),
    }
    if raw.get("sliding") is not None and not seeded:  # a SlidingSolver's events
        out.update(sliding_stats(raw["sliding"]))
    return out


# ---- segmented runs: interruption, checkpoints, resume (see _checkpoint.py) ---------------


class _Piece(diffrax.AbstractStepSizeController):
    """The controller of one *piece* of a segmented run (:func:`segment`): it wraps the run's
    controller, counts the piece's steps and pauses the solve after ``allowed`` of them (the
    result ``event_occurred``, which stops Diffrax's loop after the step), and keeps in its
    state ``(inner state, next t1, keep, count)``: the end of the step it proposes next and
    whether the last step was accepted, from which the next piece restarts exactly where the
    loop stood (``init`` returns ``tnext``: Diffrax calls it only for the first step's end
    when the controller state is passed). So a run's result does not depend on where its
    pieces end: a pause costs a restart, not a change of a single step."""

    controller: diffrax.AbstractStepSizeController
    allowed: object
    tnext: object

    def wrap(self, direction):
        return type(self)(self.controller.wrap(direction), self.allowed, self.tnext)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        return self.tnext, None

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner, _, _, count = state
        keep, next_t0, next_t1, jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        count = count + 1
        pause = (count >= self.allowed) & (result == diffrax.RESULTS.successful)
        result = diffrax.RESULTS.where(pause, diffrax.RESULTS.event_occurred, result)
        return keep, next_t0, next_t1, jump, (inner, next_t1, keep, count), result


class _AdaptivePiece(_Piece, diffrax.AbstractAdaptiveStepSizeController):
    """:class:`_Piece` of an adaptive controller (Diffrax checks adaptivity by type)."""

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm


def segmentable(controller) -> bool:
    """Whether a run with ``controller`` can go in segments (adaptive or constant steps)."""
    return isinstance(
        controller, (diffrax.AbstractAdaptiveStepSizeController, diffrax.ConstantStepSize)
    )


def start(term, solver, controller, t0, t_first, dt0, y0, problem, groups):
    """The carry of a segmented run at ``t0`` and the observables there (traceable)."""
    # as diffeqsolve does: the state at least in the time's precision (a float32 problem's
    # state is float64 with x64 on, docs/scale.md), so that every segment keeps its dtypes
    y0 = jax.tree.map(lambda a: jnp.asarray(a, jnp.result_type(a, jnp.asarray(t0))), y0)
    adaptive = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
    tnext, inner = controller.init(
        term, t0, t_first, y0, dt0, problem, solver.func, solver.error_order(term)
    )
    tnext = jnp.minimum(tnext, t_first)
    obs = jax.tree.map(lambda a: a[None], observe(problem, y0, groups))
    zero = jnp.zeros((1,), jnp.int32)
    record = {
        "__t": jnp.asarray(t0)[None],
        "__num_steps": zero,
        "__num_accepted_steps": zero,
        "__num_rejected_steps": zero,
        "__success": jnp.ones((1,), bool),
        "__max_steps": jnp.zeros((1,), bool),
        "__t_end": jnp.asarray(t0)[None],
    }
    record = {**obs, **record}
    carry = {
        "y": y0,
        "solver_state": solver.init(term, t0, tnext, y0, problem),
        "controller_state": (inner, tnext, jnp.asarray(True), jnp.zeros((), jnp.int32)),
        "made_jump": jnp.asarray(False),
        "dt": jnp.asarray(tnext - t0 if adaptive else dt0, jnp.result_type(t0)),
        # where the run stands: its time, and whether it stands inside a save interval
        "t": jnp.asarray(t0, jnp.result_type(t0)),
        "open": jnp.asarray(False),
        # the record of the current interval (its steps add up over its pieces)
        "rec": record,
    }
    # strong dtypes, as a segment returns them (a weak-typed carry would compile twice)
    carry = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.result_type(a)), carry)
    return carry, record


def _clip_floor(t1):
    """``t1`` less 100 ULP: where Diffrax's loop rounds a step's end to ``t1``."""
    floor = t1
    for _ in range(100):
        floor = jnp.nextafter(floor, jnp.asarray(-jnp.inf, jnp.result_type(floor)))
    return floor


def segment(term, solver, controller, a, b, s, carry, problem, max_steps, groups, allowed):
    """At most ``allowed`` steps of the save interval ``[a, b]`` from where ``carry`` stands
    (at ``a``, or inside the interval after a pause), observing at ``s`` (shape ``(1,)``, in
    ``[a, b]``); returns the new carry, the interval's record (valid once it is reached:
    steps summed over its pieces) and whether ``b`` is reached. A carry already at ``b`` (an
    ensemble member that finished the interval in an earlier piece) is returned unchanged."""
    adaptive = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
    t0 = carry["t"]
    inner, next_t1, keep, _ = carry["controller_state"]
    # a new interval starts as it always did (its first step ends at t0 + dt); a paused one
    # continues with the step the loop had proposed, rounded to b as the loop rounds it
    floor = _clip_floor(b)
    clipped = jnp.where(keep, b, t0 + 0.5 * (b - t0))
    resumed = jnp.where(next_t1 > floor, clipped, next_t1)
    tnext = jnp.where(carry["open"], resumed, t0 + carry["dt"])
    piece = _AdaptivePiece if adaptive else _Piece
    ctrl = piece(controller, allowed, tnext)
    subs = observation_saveat(s, groups).subs
    saveat = diffrax.SaveAt(subs=subs, controller_state=True, solver_state=True, made_jump=True)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0,
        b,
        None,
        carry["y"],
        args=problem,
        saveat=saveat,
        stepsize_controller=ctrl,
        max_steps=max_steps,
        throw=False,
        solver_state=carry["solver_state"],
        controller_state=(inner, next_t1, keep, jnp.zeros((), jnp.int32)),
        made_jump=carry["made_jump"],
    )
    (saved_t, t_end), (obs, final) = sol.ts, sol.ys
    cstate = sol.controller_state
    t_end = t_end[-1]
    reached = t_end >= b
    ok = diffrax.is_okay(sol.result)
    before = t0 >= b
    prev = carry["rec"]
    counts = {
        k: jnp.where(carry["open"], prev[f"__{k}"][0], 0) + sol.stats[k].astype(jnp.int32)
        for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")
    }
    record = {
        **obs,
        "__t": saved_t,
        **{f"__{k}": v[None] for k, v in counts.items()},
        "__success": (ok & (~carry["open"] | prev["__success"][0]))[None],
        "__max_steps": (sol.result == diffrax.RESULTS.max_steps_reached)[None],
        "__t_end": t_end[None],
    }
    record = jax.tree.map(lambda r, p: jnp.asarray(r, p.dtype), record, prev)
    new = {
        "y": jax.tree.map(lambda x: x[-1], final),
        "solver_state": sol.solver_state,
        "controller_state": cstate,
        "made_jump": jnp.asarray(sol.made_jump),
        "dt": jnp.where(reached, cstate[1] - b, carry["dt"]) if adaptive else carry["dt"],
        "t": jnp.asarray(t_end, carry["t"].dtype),
        "open": ~reached,
        "rec": record,
    }
    new = jax.tree.map(lambda n, o: jnp.where(before, o, jnp.asarray(n, o.dtype)), new, carry)
    steps = jnp.where(before, 0, sol.stats["num_steps"])
    return new, new["rec"], steps, ok | before, reached | before


class DiffraxDynamics(AbstractDynamics):
    """``init`` / ``advance`` of a dynamics integrated by Diffrax (:class:`gradflow.ODE`,
    :class:`gradflow.SDE`): :func:`start` / :func:`segment` of its ``solver`` and
    ``stepsize_controller`` on ``self.term(problem, key)``; an interval ``x`` is
    ``(a, b, s)``: its bounds and its save time."""

    def init(self, problem, state0, key, t0, t_next, groups):
        term, ctrl = self.term(problem, key), self.stepsize_controller
        return start(term, self.solver, ctrl, t0, t_next, self.dt0, state0, problem, groups)

    def advance(self, problem, carry, key, x, allowed, groups):
        a, b, s = x
        term, ctrl, steps = self.term(problem, key), self.stepsize_controller, self.max_steps
        allowed = steps if allowed is None else allowed  # None: the interval, within max_steps
        return segment(
            term, self.solver, ctrl, a[0], b[0], s, carry, problem, steps, groups, allowed
        )

    def raw(self, out: dict, seeded: bool) -> dict:
        """:func:`solve`'s dict of a run from :func:`gradflow.dynamics._driver.run`'s output
        (or the whole solve's ``out["raw"]``)."""
        if "raw" in out:
            return out["raw"]
        return assembled(out["carry"], out["obs"], out["info"], out["signum"], seeded)


def assemble(carry, obs: dict, seeded: bool) -> dict:
    """The dict of :func:`solve` from a segmented run's final carry and records (host)."""
    axis = 1 if seeded else 0
    take = lambda k: np.asarray(obs[k])  # noqa: E731
    last = (lambda a: a[:, -1]) if seeded else (lambda a: a[-1])
    steps = {
        k: take(f"__{k}")[..., 1:].sum(axis=axis)
        for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")
    }
    floors = [
        s
        for s in jax.tree.leaves(carry["controller_state"], is_leaf=_is_floor)
        if isinstance(s, FloorState)
    ]
    records = _records(carry["solver_state"], SpectralRecord)
    sliding = sliding_record(carry["solver_state"])
    zero = np.zeros((), np.int32)
    success = take("__success")[..., 1:]
    max_reached = take("__max_steps")[..., 1:]
    return {
        "t": take("__t"),
        "obs": {k: np.asarray(v) for k, v in obs.items() if not k.startswith("__")},
        "final": carry["y"],
        "stats": steps,
        "success": np.all(success, axis=axis),
        "max_steps_reached": np.any(max_reached, axis=axis),
        "t_end": last(take("__t_end")),
        "num_floor_steps": np.asarray(floors[0].num_forced) if floors else zero,
        "num_floor_rejections": np.asarray(floors[0].num_refused) if floors else zero,
        "spectral": jax.device_get(records[0]) if records else None,
        "sliding": None if sliding is None else jax.device_get(sliding),
    }


def _is_floor(s):
    return isinstance(s, FloorState)


def assembled(carry, obs, info, signum, seeded: bool) -> dict:
    """The dict of :func:`solve` from what :func:`gradflow.dynamics._driver.run` returned for
    a Diffrax dynamics (host)."""
    if signum is None and info["budget"] and np.any(carry["open"]):
        # out of steps inside an interval: its record so far (steps, the time reached)
        axis = 1 if seeded else 0
        obs = {k: np.concatenate([v, np.asarray(carry["rec"][k])], axis) for k, v in obs.items()}
    raw = assemble(carry, obs, seeded)
    if info["budget"]:  # out of steps between two segments: as Diffrax's max_steps_reached
        raw["success"] = np.zeros_like(raw["success"])
        raw["max_steps_reached"] = np.ones_like(raw["max_steps_reached"])
    return raw


def padded_step_ts(grid) -> jnp.ndarray:
    """The save times as the clipping controller's ``step_ts``, padded with +inf to the next
    power of two (at least 16): the array's length is part of the compiled program, so without
    the padding every distinct number of save points compiled the flow again (~7 s each on a
    small MLP). Diffrax's controller never steps to an infinite time (``_clip_t`` takes the
    minimum, and its index search stops at the first time above ``t``)."""
    n = len(grid)
    size = max(16, 1 << (n - 1).bit_length())
    grid = np.asarray(grid)
    return jnp.asarray(np.concatenate([grid, np.full(size - n, np.inf, dtype=grid.dtype)]))
