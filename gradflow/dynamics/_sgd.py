"""``gf.sgd``: discrete SGD / GD on the same :class:`Problem` as the flow, on ``t = η·step``.

Each step draws a batch ``S`` (THEORY 1, 3.4), takes the gradient of
``L_S(state) = (1/B) Σ_{n∈S} ℓ_n + (λ/2) D(state)``, turns it into the flow's velocity
(the same projection/scaling as the ODE) and applies it with an Optax SGD transformation
(``learning_rate`` injected as an array, so sweeping η does not recompile). LM variants then
put ``V_k`` back on the unit sphere; WN does **not** renormalize ``v`` (THEORY 3.3).
"""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._hessian import stable_learning_rate
from .._observables import GROUPS, observe
from .._problem import Problem
from .._progress import for_run
from .._trajectory import Trajectory, from_run
from .._validate import bad_value, check_choice
from ..diffrax_ext import SAMPLING
from . import _blocks, _checkpoint, _defaults
from ._batch import Plan
from ._core import check_key, save_times
from ._cost import timed
from ._failure import BLOW_UP, Diverged, blown_up, resolve_on_failure


def batch_indices(key, step, n: int, batch_size: int, sampling: str):
    """Indices of step ``step``'s batch (sorted, so that ``B = N`` is exactly GD).

    Without replacement: epoch ``e = step // (N // B)`` uses the permutation drawn from
    ``fold_in(key, e)`` and the ``(step mod N//B)``-th block of it (a remainder of
    ``N mod B`` samples is left out of each epoch). With replacement: ``B`` i.i.d. uniform
    indices from ``fold_in(key, step)``.
    """
    if sampling == "with-replacement":
        idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, n)
        return jnp.sort(idx)
    per_epoch = n // batch_size
    epoch, block = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jnp.sort(jax.lax.dynamic_slice(perm, (block * batch_size,), (batch_size,)))


def _optimizer(momentum: float):
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=momentum or None)


def sgd_step(problem, state, opt_state, idx):
    """One step on the batch ``idx``; returns the new state and the batch loss before it."""
    x, y = problem.x_train[idx], problem.y_train[idx]
    loss, grad = jax.value_and_grad(problem.loss)(state, x, y)
    # Optax descends along its input; feed it minus the flow's velocity.
    direction = jax.tree.map(jnp.negative, problem.velocity_from_grad(state, grad))
    updates, opt_state = _optimizer_from_state(opt_state).update(direction, opt_state, state)
    state = problem.project(optax.apply_updates(state, updates))
    return state, opt_state, loss


def _optimizer_from_state(opt_state):
    # Only the structure matters (inject_hyperparams reads the values from opt_state, where
    # momentum is a traced array that `momentum or None` could not test).
    return _optimizer(0.5 if "momentum" in opt_state.hyperparams else 0.0)


def _init_carry(problem, state, lr, momentum):
    """The loop's carry at step 0: state, optimizer state (η inside), first bad step, last
    finite batch loss, the epoch's permutation."""
    opt = _optimizer(momentum)
    opt_state = opt.init(state)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.result_type(float))
    n = problem.x_train.shape[0]
    return (
        state,
        opt_state,
        jnp.asarray(-1),
        jnp.asarray(jnp.nan, jnp.result_type(float)),
        jnp.arange(n),
    )


def _advance(problem, carry, key, starts, stops, batch_size, sampling, groups):
    """Steps ``starts[i] .. stops[i] - 1`` for each ``i`` in turn, observing after each block;
    returns the carry and the observables (leading axis: the blocks)."""
    n = problem.x_train.shape[0]
    per_epoch = n // batch_size

    def indices(j, perm):
        if sampling == "with-replacement":
            return batch_indices(key, j, n, batch_size, sampling), perm
        if batch_size == n:  # GD: every epoch is one batch of all samples, in order
            return jnp.arange(n), perm
        # the epoch's permutation, drawn once per epoch (as batch_indices draws it)
        perm = jax.lax.cond(
            j % per_epoch == 0,
            lambda: jax.random.permutation(jax.random.fold_in(key, j // per_epoch), n),
            lambda: perm,
        )
        block = j % per_epoch
        return jnp.sort(jax.lax.dynamic_slice(perm, (block * batch_size,), (batch_size,))), perm

    def one(j, carry):
        state, opt_state, bad_step, last_loss, perm = carry
        idx, perm = indices(j, perm)
        new_state, new_opt, loss = sgd_step(problem, state, opt_state, idx)
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(new_state)])
        )
        ok = finite & (bad_step < 0)
        keep = lambda a, b: jnp.where(ok, a, b)  # noqa: E731
        state = jax.tree.map(keep, new_state, state)
        opt_state = jax.tree.map(keep, new_opt, opt_state)
        bad_step = jnp.where((bad_step < 0) & ~finite, j, bad_step)
        last_loss = jnp.where(ok, loss, last_loss)
        return state, opt_state, bad_step, last_loss, perm

    def chunk(carry, bounds):
        start, stop = bounds
        carry = jax.lax.fori_loop(start, stop, one, carry)
        return carry, observe(problem, carry[0], groups)

    return jax.lax.scan(chunk, carry, (starts, stops))


def _run_core(problem, state, lr, key, save_steps, batch_size, sampling, momentum, groups):
    """All steps, observing at ``save_steps`` (a dynamic array: η changes no shapes)."""
    init = _init_carry(problem, state, lr, momentum)
    obs0 = observe(problem, state, groups)
    starts = jnp.concatenate([save_steps[:1], save_steps[:-1]])
    carry, obs = _advance(
        problem, init, key, starts[1:], save_steps[1:], batch_size, sampling, groups
    )
    obs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), obs0, obs)
    return carry[0], obs, carry[2], carry[3]


@timed
def sgd(
    problem: Problem,
    *,
    lr: float,
    batch_size: int,
    t1: float | None = None,
    steps: int | None = None,
    momentum: float = _defaults.SGD["momentum"],
    sampling: str = _defaults.SGD["sampling"],
    save_every: float | None = None,
    ts=None,
    key,
    seeds: int | None = None,
    observables: tuple[str, ...] = (),
    on_divergence: str = "raise",
    on_failure: str | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
    resume_from=None,
    progress: bool | str = False,
    _plan: bool = False,
) -> Trajectory:
    """Run SGD (GD when ``batch_size = N``) on ``problem``; observables on ``t = lr·step``.

    Args:
        lr: the learning rate ``η > 0``; step ``j`` is flow time ``t = η j``.
        batch_size: ``B`` in ``[1, N]``.
        t1 / steps: the length, as flow time (``steps = round(t1/η)``) or steps.
        momentum: heavy-ball coefficient (0: plain SGD, which is what the time map assumes).
        sampling: ``"without-replacement"`` (epochs of disjoint batches) or
            ``"with-replacement"``.
        save_every, ts: the save grid in flow time (as ``gf.flow``); each time is rounded to
            the nearest step.
        key: a PRNG key; ``seeds=k`` runs ``k`` independent seeds (``vmap``, one compilation)
            and adds a leading ``seed`` dimension.
        on_failure: ``"raise"`` (default: a :class:`gradflow.Diverged` carrying the partial
            trajectory) or ``"return"`` (the partial trajectory, with
            ``stats["status"]`` ``"diverged"`` — the loss stopped being finite — or
            ``"blew_up"`` — finite, but the loss or ρ grew beyond ``BLOW_UP`` times its start:
            :mod:`gradflow.dynamics._failure`). ``on_divergence`` is its older name.
        checkpoint, checkpoint_every, checkpoint_minutes, resume_from: checkpoints and
            resume (:mod:`gradflow.dynamics._checkpoint`): the run goes in compiled calls of
            about half a second (bounded in steps); ``checkpoint=PATH`` keeps its state there every
            ``checkpoint_every`` intervals or ``checkpoint_minutes`` minutes (default 50 or 5)
            and at SIGINT/SIGTERM (then :class:`gradflow.Interrupted` carries the partial
            trajectory), and removes the file when the run ends; ``resume_from=PATH`` (or a
            :class:`gradflow.Checkpoint`) continues that run, bit for bit.
        progress: report the progress on stderr after every block of save intervals (the
            time ``t = η·step`` reached, steps, rate, ETA): a bar on a terminal, else a plain
            line every 10 s (:mod:`gradflow._progress`); a string names the run in it.
    """
    if not isinstance(problem, Problem):
        raise bad_value("sgd", "problem", type(problem).__name__, "pass a gf.Problem")
    n = problem.n_train
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < np.inf:
        raise bad_value("sgd", "lr", lr, "use a finite number > 0")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or not (1 <= batch_size <= n)
    ):
        raise bad_value("sgd", "batch_size", batch_size, f"use an integer in [1, N={n}]")
    check_choice("sgd", "sampling", sampling, SAMPLING)
    check_choice("sgd", "on_divergence", on_divergence, ("raise", "return"))
    on_divergence = resolve_on_failure("sgd", on_failure, "on_divergence", on_divergence, "raise")
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float, np.integer, np.floating))
        or not 0.0 <= momentum < 1.0
    ):
        raise bad_value("sgd", "momentum", momentum, "use a number in [0, 1)")
    check_key("sgd", key)
    for g in observables:
        check_choice("sgd", "observables", g, tuple(GROUPS))
    if (t1 is None) == (steps is None):
        raise bad_value("sgd", "t1", t1, "give exactly one of t1 and steps")
    if steps is None:
        if isinstance(t1, bool) or not isinstance(t1, (int, float)) or not 0 < t1 < np.inf:
            raise bad_value("sgd", "t1", t1, "use a finite number > 0")
        steps = int(round(t1 / lr))
        if abs(steps * lr - t1) > 1e-9 * t1:
            warnings.warn(
                f"sgd: t1={t1:g} is not a multiple of lr={lr:g}; running the nearest whole "
                f"number of steps, {steps}, to t = {steps * lr:.6g} (t = lr·step)",
                stacklevel=2,
            )
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise bad_value("sgd", "steps", steps, "use an integer >= 1")
    if seeds is not None and (
        isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1
    ):
        raise bad_value("sgd", "seeds", seeds, "use a positive integer or None")
    grid = save_times(0.0, steps * lr, save_every, ts, where="sgd")
    save_steps = np.unique(np.clip(np.round(grid / lr).astype(np.int64), 0, steps))
    _warn_off_grid(grid, save_steps, lr, "ts" if ts is not None else "save_every", ts, save_every)
    if save_steps[0] != 0:
        save_steps = np.insert(save_steps, 0, 0)
    args = (
        jnp.asarray(lr),
        None,
        jnp.asarray(save_steps),
        int(batch_size),
        sampling,
        float(momentum),
        tuple(observables),
    )
    state0 = problem.initial_state()
    if seeds is None:
        plan = Plan(_run_core, (problem, state0, args[0], key, *args[2:]), None)
    else:
        keys = jax.random.split(key, seeds)
        plan = Plan(_vmapped_core, (problem, state0, args[0], keys, *args[2:]), None)
    kw = dict(
        lr=lr,
        batch_size=batch_size,
        steps=steps,
        sampling=sampling,
        momentum=momentum,
        seeds=seeds,
        observables=observables,
        save_steps=save_steps,
        on_divergence=on_divergence,
    )
    plan.finish = lambda out: _finish(out, problem, kw)
    plan.batch_key = tuple(int(k) for k in save_steps)
    pol = _checkpoint.policy("sgd", checkpoint, checkpoint_every, checkpoint_minutes)
    if _plan:
        return plan
    return _direct(problem, plan.args[3], state0, kw, pol, resume_from, progress)


def _warn_off_grid(grid, save_steps, lr, name, ts, save_every) -> None:
    """Warn when the save times asked for are not on ``t = lr·step``: given ``ts`` off the
    grid, or times that round to the same step (fewer save points than asked)."""
    if ts is None and save_every is None:
        return  # the default grid (101 times) is not the user's: rounding it is no surprise
    off = np.abs(grid / lr - np.round(grid / lr)) > 1e-6
    merged = len(save_steps) < len(grid)
    if not (merged or (name == "ts" and np.any(off))):
        return
    value = [float(x) for x in np.ravel(ts)] if name == "ts" else save_every
    saved = save_steps * lr
    shown = ", ".join(f"{x:g}" for x in saved[:6]) + (", ..." if len(saved) > 6 else "")
    warnings.warn(
        f"sgd: {name}={value!r} is not on the step grid t = lr·step (lr={lr:g}); saving at "
        f"the nearest steps, t = [{shown}] ({len(saved)} times for the {len(grid)} asked)",
        stacklevel=3,
    )


def _direct(problem, keys, state0, kw, pol, resume_from, progress=False) -> Trajectory:
    """The direct call: save intervals in blocks of compiled calls (:mod:`._blocks`), with
    interruption, checkpoints and resume (:mod:`._checkpoint`)."""
    lr, seeds, save_steps = kw["lr"], kw["seeds"], kw["save_steps"]
    static = (int(kw["batch_size"]), kw["sampling"], tuple(kw["observables"]))
    settings = {k: kw[k] for k in ("lr", "batch_size", "steps", "sampling", "momentum", "seeds")}
    settings["observables"] = list(kw["observables"])
    fp = _checkpoint.fingerprint(
        "sgd", problem.describe(), settings, save_steps, keys, *_checkpoint.flatten(state0)
    )
    describe = {
        "run": f"sgd of lr={lr}, batch_size={kw['batch_size']}, steps={kw['steps']}, seeds={seeds}",
        "problem": problem.describe(),
        **settings,
    }
    ckpt = _checkpoint.resolve("sgd", resume_from, fp, describe)
    # the loop's carry and the next step to make (a block may end inside a save interval)
    carry = (*_init_carry(problem, state0, lr, kw["momentum"]), jnp.asarray(0))
    # strong dtypes, as the segment returns them (a weak-typed carry would compile twice)
    carry = jax.tree.map(lambda a: jnp.array(a, dtype=jnp.asarray(a).dtype), carry)
    if seeds is not None:
        carry = jax.tree.map(lambda a: jnp.broadcast_to(a, (seeds, *jnp.shape(a))), carry)
    seeded = seeds is not None
    bounds = np.asarray(save_steps)
    args = (problem, keys, *static, seeded)
    axis = 1 if seeded else 0

    pace = _blocks.Pace()

    def block(carry, starts, stops, m):
        with pace.timed() as cap:
            carry, obs, done, steps, _ = _blocks.run_block(
                _sgd_step,
                carry,
                args,
                (starts, stops),
                jnp.asarray(m),
                jnp.asarray(_blocks.MAX_STEPS),  # SGD has no step budget
                axis,
                cap,
            )
            pace.steps = int(steps)
        return carry, obs, done

    if ckpt is None:  # the observables at step 0
        obs0 = jax.device_get(_observe_at(problem, carry[0], static[2], seeded))
        first = obs0
    else:
        obs0, first = {}, {k: np.take(v, [0], axis=axis) for k, v in ckpt.obs.items()}
    cap = _blocks.capacity(_blocks.record_bytes(first))

    gd = kw["batch_size"] == problem.n_train and kw["sampling"] == "without-replacement"
    meter = for_run(progress, "gd" if gd else "sgd", 0.0, float(bounds[-1] * lr))

    def advance(carry, i, m, info):
        starts, stops = _blocks.pad(bounds[:-1], i, cap), _blocks.pad(bounds[1:], i, cap)
        carry, obs, done = block(carry, starts, stops, m)
        obs, bad, done = jax.device_get((obs, carry[2], done))
        info = {"diverged": bool(np.any(np.asarray(bad) >= 0))}
        step = int(bounds[min(i + int(done), len(bounds) - 1)])
        meter.update(step * lr, step)
        return carry, _blocks.take(obs, int(done), axis), info, int(done)

    carry, obs, index, info, signum = _checkpoint.drive(
        n=len(bounds) - 1,
        advance=advance,
        carry=carry,
        obs0=obs0,
        time_axis=1 if seeded else 0,
        info={"diverged": False},
        fp=fp,
        describe=describe,
        ckpt=ckpt,
        where="sgd",
        resume_path=resume_from,
        pol=pol,
        stop=lambda info: info["diverged"] and not seeded,  # a seed ensemble runs on
        block=cap,
    )
    meter.close()
    out = jax.device_get((carry[0], obs, carry[2], carry[3]))
    done = dict(kw, save_steps=save_steps[: index + 1])
    if signum is None:
        return _finish(out, problem, done)
    traj = _finish(out, problem, dict(done, on_divergence="return"))
    raise _checkpoint.interrupted(traj.kind, traj, signum, pol, save_steps[index] * lr)


@eqx.filter_jit
def _observe_at(problem, state, groups, seeded):
    """The observables of ``state`` (per seed when ``seeded``), time axis of length 1."""
    obs = (
        jax.vmap(lambda s: observe(problem, s, groups))
        if seeded
        else (lambda s: observe(problem, s, groups))
    )(state)
    return jax.tree.map(lambda a: jnp.expand_dims(a, 1 if seeded else 0), obs)


def _sgd_step(carry, args, x, allowed):
    """At most ``allowed`` of the steps ``starts[0] .. stops[0] - 1``, from the next step
    ``carry[-1]`` (per seed when ``seeded``), and the observables after them (a step of
    :func:`._blocks.run_block`; they are the interval's record once its last step is made); a
    single run stops at its first non-finite step, an ensemble runs on."""
    problem, key, batch_size, sampling, groups, seeded = args
    starts, stops = x

    def one(c, k):
        lo = jnp.maximum(c[-1], starts[0])
        hi = jnp.minimum(stops[0], lo + jnp.asarray(allowed, lo.dtype))
        core, obs = _advance(problem, c[:-1], k, lo[None], hi[None], batch_size, sampling, groups)
        return (*core, hi), obs, hi - lo, hi >= stops[0]

    carry, obs, steps, reached = jax.vmap(one)(carry, key) if seeded else one(carry, key)
    ok = jnp.asarray(True) if seeded else carry[2] < 0
    return carry, obs, jnp.max(steps), ok, jnp.all(reached)


def _finish(out, problem, kw) -> Trajectory:
    """The :class:`Trajectory` of one SGD run (or :class:`Diverged`) from its host output."""
    lr, batch_size, steps, seeds = kw["lr"], kw["batch_size"], kw["steps"], kw["seeds"]
    sampling, momentum, observables = kw["sampling"], kw["momentum"], kw["observables"]
    save_steps, on_divergence = kw["save_steps"], kw["on_divergence"]
    n = problem.n_train
    final, obs, bad, last = out
    kind = "gd" if batch_size == n and sampling == "without-replacement" else "sgd"
    bad_steps = np.atleast_1d(bad)
    diverged = bool(np.any(bad_steps >= 0))
    t = save_steps * lr
    obs = {k: np.asarray(v) for k, v in obs.items()}
    if diverged and seeds is None:
        keep = save_steps <= bad_steps[0]
        t, obs = t[keep], {k: v[keep] for k, v in obs.items()}
    stats = {
        "steps": int(steps),
        "status": "diverged" if diverged else "success",
        "diverged_at_step": [int(b) for b in bad_steps] if seeds else int(bad_steps[0]),
        "t_reached": float(steps * lr if not diverged else np.min(bad_steps[bad_steps >= 0]) * lr),
    }
    config = {
        "dynamics": kind,
        "problem": problem.describe(),
        "lr": lr,
        "batch_size": int(batch_size),
        "sampling": sampling,
        "momentum": momentum,
        "steps": int(steps),
        "seeds": seeds,
        "observables": list(observables),
    }
    traj = from_run(
        problem, kind, t, obs, final, groups=observables, stats=stats, config=config, seeds=seeds
    )
    if not diverged and blown_up(traj):
        traj.stats["status"] = "blew_up"
        if on_divergence == "raise":
            eta_max, lam = stable_learning_rate(problem)
            raise Diverged(
                f"{kind}: the loss or ρ blew up (beyond {BLOW_UP:.0e} times its start, finite: "
                f"final loss {float(np.ravel(traj['loss'])[-1]):.3g}). The stable learning rate "
                f"is about 2/λ_max = {eta_max:.4g} (λ_max = {lam:.4g} at the start); lr={lr} "
                "was used",
                traj,
                "blew_up",
            )
    if diverged and on_divergence == "raise":
        step = int(np.min(bad_steps[bad_steps >= 0]))
        eta_max, lam = stable_learning_rate(problem)
        last_loss = float(np.atleast_1d(last)[0])
        raise Diverged(
            f"{kind}: the loss stopped being finite at step {step} (t={step * lr:.6g}); the last "
            f"finite batch loss was {last_loss:.6g}. The stable learning rate is about "
            f"2/λ_max = {eta_max:.4g} (λ_max = {lam:.4g} at the start, Hessian-vector power "
            f"iteration); lr={lr} was used",
            traj,
        )
    return traj


def _vmapped_core(problem, state0, lr, keys, save_steps, batch_size, sampling, momentum, groups):
    def run(k):
        return _run_core(problem, state0, lr, k, save_steps, batch_size, sampling, momentum, groups)

    return jax.vmap(run)(keys)
