"""``gf.sgd``: discrete SGD / GD on the same :class:`Problem` as the flow, on ``t = η·step``.

Each step draws a batch ``S`` (THEORY 1, 3.4), takes the gradient of
``L_S(state) = (1/B) Σ_{n∈S} ℓ_n + (λ/2) D(state)``, turns it into the flow's velocity
(the same projection/scaling as the ODE) and applies it with an Optax SGD transformation
(``learning_rate`` injected as an array, so sweeping η does not recompile). LM variants then
put ``V_k`` back on the unit sphere; WN does **not** renormalize ``v`` (THEORY 3.3).
"""

from __future__ import annotations

import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._hessian import stable_learning_rate
from .._observables import GROUPS, observe
from .._problem import Problem
from .._trajectory import Trajectory, from_run
from .._validate import bad_value, check_choice
from ..diffrax_ext import SAMPLING
from . import _blocks, _checkpoint, _defaults, _driver
from ._batch import Plan
from ._core import check_key, save_times
from ._cost import timed
from ._driver import AbstractDynamics
from ._failure import BLOW_UP, Diverged, blown_up, from_throw, resolve_on_failure


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


@functools.cache
def _plain(momentum: bool, nesterov: bool) -> optax.GradientTransformation:
    """``optax.sgd`` with its learning rate (and momentum) held in its state
    (``inject_hyperparams``), so that sweeping them compiles once: :class:`SGD`'s
    ``hyperparams`` set them. One object per structure, so every run shares its compilation."""
    sgd = optax.inject_hyperparams(optax.sgd)
    return sgd(learning_rate=0.0, momentum=0.5 if momentum else None, nesterov=nesterov)


def plain_sgd(lr, batch_size: int, sampling: str, momentum=0.0, nesterov=False) -> SGD:
    """The :class:`SGD` of ``gf.sgd(lr=, momentum=, nesterov=)``: ``optax.sgd(lr, momentum,
    nesterov)`` with η and β as arrays in its state (a sweep over them compiles once)."""
    hyper = {"learning_rate": np.float64(lr)}
    if momentum:
        hyper["momentum"] = np.float64(momentum)
    return SGD(_plain(bool(momentum), bool(nesterov)), batch_size, np.float64(lr), sampling, hyper)


def sgd_step(problem, optimizer, state, opt_state, idx):
    """One step on the batch ``idx``; returns the new state and the batch loss before it."""
    x, y = problem.x_train[idx], problem.y_train[idx]
    loss, grad = jax.value_and_grad(problem.loss)(state, x, y)
    # Optax descends along its input; feed it minus the flow's velocity.
    direction = jax.tree.map(jnp.negative, problem.velocity_from_grad(state, grad))
    updates, opt_state = optimizer.update(direction, opt_state, state)
    state = problem.project(optax.apply_updates(state, updates))
    return state, opt_state, loss


class SGD(AbstractDynamics):
    """Discrete SGD (GD when ``batch_size = N``) as a dynamics: step ``j`` draws a batch
    (:func:`batch_indices`, ``sampling``), feeds minus the flow's velocity of the batch loss to
    ``optimizer`` (any ``optax.GradientTransformation``: ``optax.sgd(lr, momentum=0.9)``,
    a ``chain`` with ``add_decayed_weights``, Adam, ...) and applies its update, then
    projects (LM); step ``j`` is flow time ``t = lr·j``. ``hyperparams``: values (arrays)
    set in an ``optax.inject_hyperparams`` state at ``init``, so that sweeping them compiles
    once. An ensemble of seeds runs on when one diverges (that seed freezes)."""

    optimizer: optax.GradientTransformation
    batch_size: int = eqx.field(static=True)
    #: The flow time of one step (``t = lr·step``); the time axis only.
    lr: object
    sampling: str = eqx.field(static=True, default=_defaults.SGD["sampling"])
    hyperparams: dict | None = None
    ensemble_stops = False

    def initial(self, problem, state):
        """The loop's carry at step 0: state, optimizer state, first bad step, last finite
        batch loss, the epoch's permutation."""
        opt_state = self.optimizer.init(state)
        for k, v in (self.hyperparams or {}).items():
            opt_state.hyperparams[k] = jnp.asarray(v, opt_state.hyperparams[k].dtype)
        n = problem.x_train.shape[0]
        nan = jnp.asarray(jnp.nan, jnp.result_type(float))
        return state, opt_state, jnp.asarray(-1), nan, jnp.arange(n)

    def init(self, problem, state0, key, t0, t_next, groups):
        carry = (*self.initial(problem, state0), jnp.asarray(0))
        # strong dtypes, as advance returns them (a weak-typed carry would compile twice)
        carry = jax.tree.map(lambda a: jnp.asarray(a, dtype=jnp.result_type(a)), carry)
        obs = observe(problem, state0, groups)
        return carry, jax.tree.map(lambda a: a[None], obs)

    def advance(self, problem, carry, key, x, allowed, groups):
        """At most ``allowed`` of the steps ``starts[0] .. stops[0] - 1`` (``x``), from the
        next step ``carry[-1]``, and the observables after them (the interval's record once
        its last step is made); ``ok``: no step was non-finite."""
        starts, stops = x
        lo = jnp.maximum(carry[-1], starts[0])
        hi = jnp.minimum(stops[0], lo + jnp.asarray(allowed, lo.dtype))
        core, obs = _advance(problem, self, carry[:-1], key, lo[None], hi[None], groups)
        return (*core, hi), obs, hi - lo, core[2] < 0, hi >= stops[0]


def _advance(problem, dyn, carry, key, starts, stops, groups):
    """Steps ``starts[i] .. stops[i] - 1`` for each ``i`` in turn, observing after each block;
    returns the carry and the observables (leading axis: the blocks)."""
    n = problem.x_train.shape[0]
    batch_size, sampling = dyn.batch_size, dyn.sampling
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
        new_state, new_opt, loss = sgd_step(problem, dyn.optimizer, state, opt_state, idx)
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


def _run_core(dyn, problem, state, key, save_steps, groups):
    """All steps, observing at ``save_steps`` (a dynamic array: η changes no shapes)."""
    obs0 = observe(problem, state, groups)
    starts = jnp.concatenate([save_steps[:1], save_steps[:-1]])
    carry, obs = _advance(
        problem, dyn, dyn.initial(problem, state), key, starts[1:], save_steps[1:], groups
    )
    obs = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), obs0, obs)
    return carry[0], obs, carry[2], carry[3]


def _vmapped_core(dyn, problem, state0, keys, save_steps, groups):
    return jax.vmap(lambda k: _run_core(dyn, problem, state0, k, save_steps, groups))(keys)


@timed
def sgd(
    problem: Problem,
    *,
    lr: float,
    batch_size: int,
    t1: float | None = None,
    steps: int | None = None,
    momentum: float = _defaults.SGD["momentum"],
    nesterov: bool = _defaults.SGD["nesterov"],
    optimizer: optax.GradientTransformation | None = None,
    sampling: str = _defaults.SGD["sampling"],
    save_every: float | None = None,
    ts=None,
    key,
    seeds: int | None = None,
    observables: tuple[str, ...] = (),
    on_divergence: str = "raise",
    on_failure: str | None = None,
    throw: bool | None = None,
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
        nesterov: Nesterov's momentum instead of heavy ball (``optax.sgd(nesterov=True)``).
        optimizer: any ``optax.GradientTransformation`` in place of ``optax.sgd(lr,
            momentum)``, e.g. ``optax.chain(optax.add_decayed_weights(w),
            optax.sgd(lr, momentum=0.9, nesterov=True))`` or ``optax.adam(lr)``: it receives
            minus the flow's velocity of the batch loss (the gradient for ``"none"``, THEORY
            3.3 otherwise) and its update is applied, then projected; ``lr`` still sets the
            time axis ``t = lr·step``. The optimizer is part of the compiled step: build it
            once and reuse it (``optax.inject_hyperparams`` keeps swept values out of the
            compilation).
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
            :mod:`gradflow.dynamics._failure`). ``on_divergence`` is its older name;
            ``throw=True`` / ``False`` the same switch under Diffrax's name.
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
    on_failure = from_throw("sgd", throw, on_failure)
    on_divergence = resolve_on_failure("sgd", on_failure, "on_divergence", on_divergence, "raise")
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float, np.integer, np.floating))
        or not 0.0 <= momentum < 1.0
    ):
        raise bad_value("sgd", "momentum", momentum, "use a number in [0, 1)")
    if not isinstance(nesterov, bool) or (nesterov and not momentum):
        raise bad_value("sgd", "nesterov", nesterov, "use true or false (true needs momentum > 0)")
    if optimizer is not None:
        if momentum:
            raise bad_value(
                "sgd", "momentum", momentum, "with optimizer= put the momentum in the optimizer"
            )
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise bad_value("sgd", "optimizer", optimizer, "use an optax.GradientTransformation")
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
    if optimizer is None:
        dyn = plain_sgd(lr, int(batch_size), sampling, momentum, nesterov)
    else:
        dyn = SGD(optimizer, int(batch_size), np.float64(lr), sampling)
    state0 = problem.initial_state()
    groups = tuple(observables)
    keys = key if seeds is None else jax.random.split(key, seeds)
    core = _run_core if seeds is None else _vmapped_core
    plan = Plan(core, (dyn, problem, state0, keys, jnp.asarray(save_steps), groups), None)
    kw = dict(
        lr=lr,
        batch_size=batch_size,
        steps=steps,
        sampling=sampling,
        momentum=momentum,
        nesterov=nesterov,
        optimizer="sgd" if optimizer is None else "custom",
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
    return _direct(problem, dyn, keys, state0, kw, pol, resume_from, progress)


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


def _direct(problem, dyn, keys, state0, kw, pol, resume_from, progress=False) -> Trajectory:
    """The direct call: :func:`._driver.run` (blocks, interruption, checkpoints, resume)."""
    lr, seeds, save_steps = kw["lr"], kw["seeds"], kw["save_steps"]
    names = ("lr", "batch_size", "steps", "sampling", "momentum", "nesterov", "optimizer", "seeds")
    settings = {k: kw[k] for k in names}
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
    seeded, groups = seeds is not None, tuple(kw["observables"])
    carry, obs0 = _driver.first_record(dyn, problem, state0, keys, 0.0, 0.0, groups, seeded)
    gd = kw["batch_size"] == problem.n_train and kw["sampling"] == "without-replacement"
    carry, obs, index, _, signum = _driver.run(
        dyn,
        problem,
        where="sgd",
        keys=keys,
        xs=(save_steps[:-1], save_steps[1:]),
        carry=carry,
        obs0=obs0,
        seeded=seeded,
        groups=groups,
        max_steps=_blocks.MAX_STEPS,  # SGD has no step budget
        fp=fp,
        describe=describe,
        ckpt=ckpt,
        pol=pol,
        resume_path=resume_from,
        progress=progress,
        times=save_steps * lr,
        name="gd" if gd else "sgd",
    )
    out = (carry[0], obs, carry[2], carry[3])
    done = dict(kw, save_steps=save_steps[: index + 1])
    if signum is None:
        return _finish(out, problem, done)
    traj = _finish(out, problem, dict(done, on_divergence="return"))
    raise _checkpoint.interrupted(traj.kind, traj, signum, pol, save_steps[index] * lr)


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
        "nesterov": kw["nesterov"],
        "optimizer": kw["optimizer"],
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
