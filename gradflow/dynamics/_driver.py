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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._progress import for_run
from . import _blocks, _checkpoint


class AbstractDynamics(eqx.Module):
    """A dynamics of a :class:`gradflow.Problem` on the flow's time axis (module docstring)."""

    #: An ensemble of seeds stops when one of them fails (Diffrax), or runs on (SGD: a
    #: diverged seed freezes and is reported).
    ensemble_stops = True

    @abc.abstractmethod
    def init(self, problem, state0, key, t0, t_next, groups):
        """``(carry, record)`` at ``t0``; ``t_next``: the first save time after ``t0``."""

    @abc.abstractmethod
    def advance(self, problem, carry, key, x, allowed, groups):
        """``(carry, record, steps, ok, reached)``: at most ``allowed`` steps of interval ``x``."""


def _seeded(fn, seeded: bool):
    return jax.vmap(fn) if seeded else fn


@eqx.filter_jit
def start(dynamics, problem, state0, keys, t0, t_next, groups, seeded):
    """``dynamics.init`` (per seed, ``vmap``, when ``seeded``), compiled."""

    def one(key):
        return dynamics.init(problem, state0, key, t0, t_next, groups)

    return _seeded(one, seeded)(keys)


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
                step, carry, args, part, jnp.asarray(m), budget, axis, steps_cap
            )
            buf, done, steps, ok = jax.device_get((buf, done, steps, ok))
            pace.steps = int(steps)  # the slowest seed's steps
        rec = _blocks.take(buf, int(done), axis)
        total = int(steps) + info["num_steps"]
        last = i + int(done) >= n
        info = {
            "num_steps": total,
            "failed": (not bool(ok)) or (total >= max_steps and not last),
            "budget": bool(ok) and total >= max_steps and not last,
        }
        meter.update(times[min(i + int(done), n)], total)
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


def first_record(dynamics, problem, state0, keys, t0, t_next, groups, seeded):
    """The carry at ``t0`` and the host observables there (one save point)."""
    carry, obs0 = start(dynamics, problem, state0, keys, t0, t_next, groups, seeded)
    return carry, {k: np.asarray(v) for k, v in jax.device_get(obs0).items()}
