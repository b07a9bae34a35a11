"""Dynamics as objects, and the ONE segmented loop that runs them.

A dynamics is an :class:`AbstractDynamics` (an Equinox module, so its arrays are traced and
its structure static): :class:`gradflow.ODE` (the gradient flow, Diffrax), :class:`gradflow.SDE`
(the SDE of SGD, Diffrax) and :class:`gradflow.SGD` (discrete steps of an Optax
transformation). Each has two pure, traceable methods:

* ``init(problem, state0, key, t0, t_next, groups) -> (carry, record)``: the carry at ``t0``
  and the observables there (time axis of length 1);
* ``advance(problem, carry, key, x, allowed, groups) -> (carry, record, steps, ok, reached)``:
  at most ``allowed`` steps of the save interval ``x`` (the slices ``[j : j+1]`` of the run's
  interval bounds) from where ``carry`` stands; ``record`` holds the observables at the
  interval's save time (valid once ``reached``).

:func:`run` drives every dynamics the same way: seeds by ``vmap`` of the same two methods,
blocks of about half a second bounded in steps (:mod:`._blocks`), checkpoints, signals and
resume (:mod:`._checkpoint`) and the progress report (:mod:`gradflow._progress`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._progress import for_run, is_batch_meter, tell_fraction
from . import _blocks, _checkpoint
from ._failure import blown_up


class AbstractDynamics(eqx.Module):
    """A dynamics of a :class:`gradflow.Problem` on the flow's time axis (module docstring).

    Besides ``init`` and ``advance`` (traced), a dynamics answers :func:`gradflow.simulate`
    on the host: ``prepare`` checks it against the problem and the save grid and returns the
    :class:`Run` to execute (the finalized dynamics, its intervals, keys, fingerprint);
    ``finish`` turns the run's output into a :class:`gradflow.Trajectory` (its status set);
    ``failure`` says why a failed run failed (the message of the exception raised)."""

    #: An ensemble of seeds stops when one of them fails (Diffrax), or runs on (SGD: a
    #: diverged seed freezes and is reported).
    ensemble_stops = True
    #: Whether ``advance`` itself holds the state of a run that failed (SGD: every step
    #: after a non-finite one is rejected) and the run has no step budget, so that
    #: :func:`whole` need not hold the carry of a stopped member (on a small network that
    #: masking is a measurable share of each save interval).
    holds_after_failure = False
    #: The name in error messages.
    where = "simulate"

    def blew_up(self, traj) -> bool:
        """Whether a finite run grew without bound (:func:`._failure.blown_up`)."""
        return blown_up(traj)

    @abc.abstractmethod
    def init(self, problem, state0, key, t0, t_next, groups):
        """``(carry, record)`` at ``t0``; ``t_next``: the first save time after ``t0``."""

    @abc.abstractmethod
    def advance(self, problem, carry, key, x, allowed, groups):
        """``(carry, record, steps, ok, reached)``: at most ``allowed`` steps of interval ``x``
        (``None``: to its end)."""

    @abc.abstractmethod
    def prepare(self, problem, saves, *, key, seeds, max_steps, state0) -> Run:
        """The :class:`Run` of this dynamics on ``problem`` at the save grid ``saves``."""

    @abc.abstractmethod
    def finish(self, problem, run, out: dict):
        """The :class:`gradflow.Trajectory` of a run from its host output ``out`` (``carry``,
        ``obs``, ``info``, ``signum``, ``index``: :func:`run`'s; or ``raw`` of a whole solve)."""

    @abc.abstractmethod
    def failure(self, problem, run, traj) -> str:
        """The message of a failed run (``traj.stats["status"]`` is not ``"success"``)."""


@dataclasses.dataclass
class Saves:
    """The save grid asked for: ``grid`` from ``t0``, ``t1``, ``save_every``, ``ts``."""

    t0: float
    t1: float
    save_every: object
    ts: object
    grid: np.ndarray


@dataclasses.dataclass
class Run:
    """A prepared run: ``dynamics`` (finalized: what ``init``/``advance`` run) over the save
    intervals whose bounds are ``xs`` (arrays, intervals along axis 0), saving at ``times``
    (the ``n + 1`` save times, flow time); ``t0`` and ``t_next`` (the first save time after
    it) start it; ``keys`` and ``seeded`` (a ``vmap`` over keys); ``max_steps`` the step
    budget; ``fingerprint`` and ``describe`` identify it for checkpoints; ``host`` holds what
    ``finish`` needs; ``whole``: the one compiled solve of a run that cannot go in segments
    (else None: ``(core, args)``, called as ``core(problem, state0, *args, groups, meter)``);
    ``batch_key``: values that must agree for two runs to share a batch; ``groups``: the
    observable groups (set by :func:`gradflow.simulate`)."""

    dynamics: AbstractDynamics
    xs: tuple
    times: np.ndarray
    t0: object
    t_next: object
    keys: object
    seeded: bool
    max_steps: int
    fingerprint: tuple
    describe: dict
    host: dict
    name: str
    whole: tuple | None = None
    batch_key: object = None
    groups: tuple = ()


def method(module: eqx.Module, name: str):
    """``module.name`` as a plain bound function: Equinox turns every method looked up on a
    module into a ``BoundMethod`` module (about 20 µs to build), which the host path of a
    sweep of many small runs (prepare, finish) would pay several times per run."""
    return functools.partial(getattr(type(module), name), module)


def _seeded(fn, seeded: bool):
    return jax.vmap(fn) if seeded else fn


def _start(dynamics, problem, state0, keys, t0, t_next, groups, seeded):
    """``dynamics.init`` (per seed, ``vmap``, when ``seeded``)."""

    def one(key):
        return dynamics.init(problem, state0, key, t0, t_next, groups)

    return _seeded(one, seeded)(keys)


start = eqx.filter_jit(_start)


def step(carry, args, x, allowed):
    """``dynamics.advance`` as a step of :func:`._blocks.run_block`, per seed when ``seeded``
    (the slowest seed's steps; a seed that reaches the interval's end waits there)."""
    dynamics, problem, keys, groups, seeded = args

    def one(c, key):
        return dynamics.advance(problem, c, key, x, allowed, groups)

    if not seeded:
        return one(carry, keys)
    new, rec, steps, ok, reached = jax.vmap(one)(carry, keys)
    ok = jnp.all(ok) if dynamics.ensemble_stops else jnp.asarray(True)
    return new, rec, jnp.max(steps), ok, jnp.all(reached)


def run(
    dynamics,
    problem,
    *,
    where: str,
    keys,
    xs,
    carry,
    obs0,
    seeded: bool,
    groups: tuple,
    max_steps: int,
    fp: str,
    describe: dict,
    ckpt,
    pol,
    resume_path,
    progress=False,
    times,
    name: str | None = None,
):
    """Run ``dynamics`` over the save intervals ``0 .. n-1`` whose bounds are ``xs`` (arrays,
    intervals along axis 0) from ``carry``, in blocks of about half a second bounded in steps
    (a block may end inside an interval); returns ``(carry, obs, index, info, signum)``: the
    final carry (host), the observables of the save points reached (``obs0`` first), the
    intervals done, ``info`` (``num_steps``, ``failed``, ``budget``: out of ``max_steps``
    before the end) and the interrupting signal (or None). A failed interval or a total of
    ``max_steps`` steps before the end stops the run. ``progress`` (True, or the run's name)
    reports the save time reached (``times``: the ``n + 1`` save times) and the steps after
    every block (:mod:`gradflow._progress`)."""
    n = len(times) - 1
    meter = for_run(progress, name or where, times[0], times[-1])
    axis = 1 if seeded else 0
    cap = _blocks.capacity(_blocks.record_bytes(obs0))  # obs0: the record of one save
    args = (dynamics, problem, keys, groups, seeded)
    pace = _blocks.Pace()

    def advance(carry, i, m, info):
        part = jax.tree.map(lambda x: _blocks.pad(x, i, cap), xs)
        budget = jnp.asarray(max_steps - info["num_steps"])
        with pace.timed() as steps_cap:
            carry, buf, done, steps, ok = _blocks.run_block(
                step, carry, args, part, jnp.asarray(m), budget, axis, steps_cap, obs0
            )
            buf, done, steps, ok = jax.device_get((buf, done, steps, ok))
            pace.steps = int(steps)  # the slowest seed's steps
        rec = _blocks.take(buf, int(done), axis)
        info = _info(info["num_steps"] + int(steps), bool(ok), i + int(done) >= n, max_steps)
        meter.update(times[min(i + int(done), n)], info["num_steps"])
        return carry, rec, info, int(done)

    try:
        carry, obs, index, info, signum = _checkpoint.drive(
            n=n,
            advance=advance,
            carry=carry,
            obs0=obs0,
            time_axis=axis,
            info={"num_steps": 0, "failed": False, "budget": False},
            fp=fp,
            describe=describe,
            ckpt=ckpt,
            where=where,
            resume_path=resume_path,
            pol=pol,
            stop=lambda info: info["failed"],
            block=cap,
        )
    finally:
        meter.close()
    return jax.device_get(carry), obs, index, info, signum


def _info(total: int, ok: bool, last: bool, max_steps: int) -> dict:
    """The host counters after a block: steps so far, whether the run failed (a failed
    interval, or out of ``max_steps`` before the end) and whether it ran out of steps."""
    return {
        "num_steps": total,
        "failed": (not ok) or (total >= max_steps and not last),
        "budget": ok and total >= max_steps and not last,
    }


def whole(dynamics, problem, state0, keys, xs, t0, t_next, groups, seeded, max_steps, meter=None):
    """The whole run as ONE traceable call (what a sweep ``vmap``s): ``init``, then every
    save interval's ``advance`` in a ``scan``, each allowed the steps left of ``max_steps``
    (``None``, the whole interval, for a dynamics without a step budget: SGD) — the direct
    call's steps without its pauses, so the same values, and the same stop at ``max_steps``
    (inside an interval: that interval is left open, not done, as in a block). A member that
    fails (or exhausts ``max_steps``) keeps its carry from then on (held here, or by its own
    ``advance`` where the dynamics says so: ``holds_after_failure``); the scan's loop and SGD's
    step bounds do not depend on traced values, so under ``vmap`` they stay unbatched loops.
    Returns ``(carry, obs0, records, done, steps, ok)`` (records: one per interval along the
    time axis, the first ``done`` valid); :func:`settle` reads it. ``meter``: a
    :func:`gradflow._progress.batch_meter` is told the fraction of the intervals done after
    each one (one host call per interval; its counter is not batched, so a ``vmap``ped sweep
    reports once), anything else reports nothing."""
    carry, obs0 = _start(dynamics, problem, state0, keys, t0, t_next, groups, seeded)
    args, axis = (dynamics, problem, keys, groups, seeded), 1 if seeded else 0
    zero = jnp.zeros((), jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    intervals = jax.tree.leaves(xs)[0].shape[0]

    budgeted = max_steps < _blocks.MAX_STEPS  # SGD has no step budget: whole intervals

    def body(state, x):
        carry, total, go, i = state
        x = jax.tree.map(lambda a: a[None], x)
        # at most the steps left of the run's budget, as the direct call's blocks allow
        allowed = jnp.maximum(max_steps - total, 1) if budgeted else None
        new, rec, steps, ok, reached = step(carry, args, x, allowed)
        if not dynamics.holds_after_failure:
            new = jax.tree.map(lambda n, o: jnp.where(go, n, o), new, carry)
        carry = new
        total = total + jnp.where(go, jnp.asarray(steps, total.dtype), 0)
        if is_batch_meter(meter):
            jax.debug.callback(tell_fraction, (i + 1) / intervals)
        # an interval is done when reached or failed (as in a block); one left open by the
        # budget is not: its record so far stays in the carry (``_core.assembled``)
        done = go & (reached | ~ok)
        return (carry, total, go & ok & (total < max_steps), i + 1), (rec, done, ok)

    state = (carry, zero, jnp.asarray(True), zero)
    (carry, total, _, _), (recs, computed, oks) = jax.lax.scan(body, state, xs)
    # (interval, [seed,] 1, ...) -> ([seed,] interval, ...)
    recs = jax.tree.map(lambda r: jnp.moveaxis(jnp.squeeze(r, axis + 1), 0, axis), recs)
    done = jnp.sum(computed.astype(zero.dtype))
    return carry, obs0, recs, done, total, jnp.all(oks | ~computed)


def settle(out, seeded: bool, max_steps: int) -> dict:
    """:func:`whole`'s host output as :func:`run`'s: ``carry``, ``obs`` (the first save and
    the ``done`` intervals), ``info``, ``signum`` (None), ``index``."""
    carry, obs0, buf, done, steps, ok = out
    n = jax.tree.leaves(buf)[0].shape[1 if seeded else 0]
    axis = 1 if seeded else 0
    rec = _blocks.take(buf, int(done), axis)
    obs = {k: np.concatenate([np.asarray(obs0[k]), rec[k]], axis) for k in rec}
    info = _info(int(steps), bool(ok), int(done) >= n, max_steps)
    return {"carry": carry, "obs": obs, "info": info, "signum": None, "index": int(done)}


def first_record(dynamics, problem, state0, keys, t0, t_next, groups, seeded):
    """The carry at ``t0`` and the host observables there (one save point)."""
    carry, obs0 = start(dynamics, problem, state0, keys, t0, t_next, groups, seeded)
    return carry, {k: np.asarray(v) for k, v in jax.device_get(obs0).items()}
