"""``gf.simulate``: the one driver of every dynamics.

``simulate(problem, dynamics, t1=...)`` owns what the three dynamics share: the checks of the
shared arguments, the save grid (:func:`._core.save_times`), the run's fingerprint and
checkpoint policy (:mod:`._checkpoint`), the seeds, the segmented loop
(:func:`._driver.first_record` and :func:`._driver.run`: blocks, signals, progress), the
interruption, the failure contract (:mod:`._failure`: ``throw=``) and the
:class:`gradflow.Trajectory`. What differs between dynamics is asked of the dynamics object:
``prepare`` (its own checks, its finalized form, its save intervals, keys and fingerprint),
``finish`` (its stats and configuration) and ``failure`` (why it failed).

A sweep batches the same path: ``_plan=True`` returns a :class:`._batch.Plan` whose core is
:func:`._driver.whole` (``init``, then every interval's ``advance`` in one compiled call),
which :func:`._batch.run_plans` ``vmap``s over the runs that differ only in arrays.
"""

from __future__ import annotations

import numpy as np

from .._problem import Problem
from .._progress import solve_meter, solve_progress
from .._trajectory import Trajectory
from .._validate import bad_value
from . import _checkpoint, _driver
from ._batch import Plan
from ._core import check_key, check_run_arguments, save_times
from ._cost import timed
from ._driver import AbstractDynamics, Saves, method
from ._failure import raise_or_return


@timed
def simulate(
    problem: Problem,
    dynamics: AbstractDynamics,
    *,
    t1: float,
    t0: float = 0.0,
    save_every: float | None = None,
    ts=None,
    observables: tuple[str, ...] = (),
    state0=None,
    key=None,
    seeds: int | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
    resume_from=None,
    progress: bool | str = False,
    max_steps: int | None = None,
    throw: bool = True,
    _plan: bool = False,
) -> Trajectory:
    """Run ``dynamics`` (:class:`gradflow.ODE`, :class:`gradflow.SDE`, :class:`gradflow.SGD`)
    on ``problem`` from ``t0`` to ``t1`` (flow time; SGD step ``j`` is ``t = lr·j``).

    Args:
        save_every, ts: the save grid (``ts`` if given, else ``t0, t0 + save_every, ..., t1``,
            else 101 points; SGD saves at the nearest step). The observables (the standard
            ones and the ``observables`` groups: names in :data:`gradflow.OBSERVABLES` or
            :class:`gradflow.Observable` objects) are computed there.
        state0: the starting state (default: the model's weights in the problem's form).
        key, seeds: a PRNG key (the SDE, SGD); ``seeds=k`` runs ``k`` independent seeds in
            one ``vmap`` and adds a leading ``seed`` dimension.
        checkpoint, checkpoint_every, checkpoint_minutes, resume_from: the run goes in
            compiled calls of about half a second, so SIGINT/SIGTERM stop it promptly
            (:class:`gradflow.Interrupted` carries the partial trajectory);
            ``checkpoint=PATH`` keeps its full state there every ``checkpoint_every`` save
            intervals or ``checkpoint_minutes`` minutes (default 50 or 5) and at an
            interruption, removed at the end; ``resume_from`` (a path or a
            :class:`gradflow.Checkpoint`) continues that run, bit for bit.
        progress: report the progress on stderr (a string names the run).
        max_steps: the step budget (default: the dynamics', ``ODE_DEFAULTS`` /
            ``SDE_DEFAULTS``; SGD has none).
        throw: ``True`` raises :class:`gradflow.RunFailed` (carrying the partial trajectory)
            when the run does not succeed; ``False`` returns the trajectory, whose
            ``result`` (:class:`gradflow.RESULTS`) says how it ended.

    Returns:
        A :class:`Trajectory`: every observable against ``t``, with ``stats`` (status, steps,
        costs) and the configuration.
    """
    where = getattr(dynamics, "where", "simulate")
    _check(where, problem, dynamics, t0, t1, max_steps, observables, key, seeds, throw)
    saves = Saves(t0, t1, save_every, ts, save_times(t0, t1, save_every, ts, where))
    y0 = problem.initial_state() if state0 is None else state0
    run = method(dynamics, "prepare")(
        problem, saves, key=key, seeds=seeds, max_steps=max_steps, state0=y0
    )
    run.groups = tuple(observables)
    pol = _checkpoint.policy(where, checkpoint, checkpoint_every, checkpoint_minutes)
    if _plan:
        return _plan_of(problem, run, y0, throw)
    if run.whole is not None:
        return _whole(problem, run, y0, throw, pol, resume_from, progress)
    return _segmented(problem, run, y0, throw, pol, resume_from, progress)


def _segmented(problem, run, y0, throw, pol, resume_from, progress) -> Trajectory:
    """The run in segments (:func:`._driver.run`): fingerprint, checkpoint or resume, the
    first record, the loop, then ``finish``; an interruption raises with the partial run."""
    where = run.dynamics.where
    keys = () if run.keys is None else (run.keys,)
    shown = list(run.groups)
    fp = _checkpoint.fingerprint(*run.fingerprint, shown, *keys, *_checkpoint.flatten(y0))
    run.describe = {**run.describe, "observables": shown}
    ckpt = _checkpoint.resolve(where, resume_from, fp, run.describe)
    d, groups = run.dynamics, run.groups
    carry, obs0 = _driver.first_record(
        d, problem, y0, run.keys, run.t0, run.t_next, groups, run.seeded
    )
    carry, obs, index, info, signum = _driver.run(
        d,
        problem,
        where=where,
        keys=run.keys,
        xs=run.xs,
        carry=carry,
        obs0=obs0,
        seeded=run.seeded,
        groups=groups,
        max_steps=run.max_steps,
        fp=fp,
        describe=run.describe,
        ckpt=ckpt,
        pol=pol,
        resume_path=resume_from,
        progress=progress,
        times=run.times,
        name=run.name,
    )
    out = {"carry": carry, "obs": obs, "info": info, "signum": signum, "index": index}
    traj = method(d, "finish")(problem, run, out)
    if signum is not None:
        raise _checkpoint.interrupted(run.name, traj, signum, pol, run.times[index])
    return _settled(problem, run, traj, throw)


def _check(where, problem, dynamics, t0, t1, max_steps, observables, key, seeds, throw) -> None:
    if not isinstance(problem, Problem):
        raise bad_value(where, "problem", type(problem).__name__, "pass a gf.Problem")
    if not isinstance(dynamics, AbstractDynamics):
        shown = type(dynamics).__name__
        raise bad_value(where, "dynamics", shown, "pass a gf.ODE, gf.SDE or gf.SGD")
    if not isinstance(throw, bool):
        raise bad_value(where, "throw", throw, "use True (raise RunFailed) or False (return it)")
    check_run_arguments(where, t0=t0, t1=t1, max_steps=max_steps, observables=observables)
    if key is not None:
        check_key(where, key)
    if seeds is not None and (
        isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1
    ):
        raise bad_value(where, "seeds", seeds, "use a positive integer or None")


def _settled(problem, run, traj: Trajectory, throw: bool) -> Trajectory:
    """``traj`` with ``"blew_up"`` for a finite run that grew without bound, returned, or
    raised in its :class:`gradflow.RunFailed` (``throw``)."""
    if traj.stats["status"] == "success" and method(run.dynamics, "blew_up")(traj):
        traj.stats["status"] = "blew_up"
    if traj.stats["status"] == "success" or not throw:
        return traj
    return raise_or_return(traj, throw, run.dynamics.failure(problem, run, traj))


def _whole(problem, run, y0, throw, pol, resume_from, progress) -> Trajectory:
    """A run that cannot go in segments (a flow whose controller is neither adaptive nor
    constant; an SDE with save times closer than its step): its one compiled solve."""
    if pol.path is not None or resume_from is not None:
        raise bad_value(run.dynamics.where, *run.host["unsegmented"])
    plan = _plan_of(problem, run, y0, throw, solve_meter(progress))
    with solve_progress(progress, run.dynamics.where, run.times[0], run.times[-1]):
        return plan.run()


def _plan_of(problem, run, y0, throw, meter=None) -> Plan:
    """The :class:`Plan` of ``run``: :func:`._driver.whole`, or the run's whole solve."""
    d, groups = run.dynamics, run.groups

    def finish(out):
        if run.whole is None:
            out = _driver.settle(out, run.seeded, run.max_steps)
        else:
            out = {"raw": out, "index": len(run.times) - 1}
        return _settled(problem, run, method(d, "finish")(problem, run, out), throw)

    meter = solve_meter(False) if meter is None else meter
    if run.whole is not None:
        core, args = run.whole
        return Plan(core, (problem, y0, *args, groups, meter), finish, run.batch_key)
    args = (d, problem, y0, run.keys, run.xs, run.t0, run.t_next, groups, run.seeded)
    return Plan(_driver.whole, (*args, run.max_steps, meter), finish, run.batch_key)
