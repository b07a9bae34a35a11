"""``gf.sgd``: discrete SGD / GD on the same :class:`Problem` as the flow, on ``t = η·step``.

Each step draws a batch ``S`` (THEORY 1, 3.4), takes the gradient of
``L_S(state) = (1/B) Σ_{n∈S} ℓ_n + (λ/2) D(state)``, turns it into the flow's velocity
(the same projection/scaling as the ODE) and applies it with an Optax SGD transformation
(``learning_rate`` injected as an array, so sweeping η does not recompile). LM variants then
put ``V_k`` back on the unit sphere; WN does **not** renormalize ``v`` (THEORY 3.3).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._hessian import stable_learning_rate
from .._observables import observe
from .._problem import Problem
from .._trajectory import Trajectory, from_run
from .._validate import bad_value, check_choice
from ..diffrax_ext import SAMPLING
from . import _blocks, _defaults
from ._core import save_times
from ._driver import AbstractDynamics, Run, method
from ._failure import BLOW_UP, STEP_BLOW_UP, blown_up, throw_from_aliases
from ._simulate import simulate


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
    opt = _plain(bool(momentum), bool(nesterov))
    return SGD(opt, batch_size, np.float64(lr), sampling, hyper, "sgd", bool(nesterov))


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
    #: ``gf.sgd``'s labels for the configuration: ``"sgd"`` (its ``optax.sgd``) or
    #: ``"custom"``, and whether that ``optax.sgd`` is Nesterov's.
    label: str = eqx.field(static=True, default="custom")
    nesterov: bool = eqx.field(static=True, default=False)
    ensemble_stops = False
    holds_after_failure = True  # a step after a non-finite one keeps the state; no budget
    where = "sgd"

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
        if allowed is None:  # the whole interval (a sweep): bounds independent of the carry
            lo, hi = starts[0], stops[0]
        else:
            lo = jnp.maximum(carry[-1], starts[0])
            hi = jnp.minimum(stops[0], lo + jnp.asarray(allowed, lo.dtype))
        core, obs = _advance(problem, self, carry[:-1], key, lo, hi, groups)
        return (*core, hi), obs, hi - lo, core[2] < 0, hi >= stops[0]

    @property
    def momentum(self) -> float:
        """The momentum of ``gf.sgd``'s ``optax.sgd`` (0 for a custom optimizer)."""
        return float((self.hyperparams or {}).get("momentum", 0.0))

    def blew_up(self, traj) -> bool:
        """The loss or ρ beyond ``BLOW_UP`` times their start, or the loss beyond
        ``STEP_BLOW_UP`` = 100 times ``max(its start, 1)`` (:mod:`._failure`)."""
        return blown_up(traj) or blown_up(traj, STEP_BLOW_UP, ("loss",))

    def kind(self, problem) -> str:
        """``"gd"`` (every sample, in order, at every step) or ``"sgd"``."""
        full = self.batch_size == problem.n_train and self.sampling == "without-replacement"
        return "gd" if full else "sgd"

    def prepare(self, problem, saves, *, key, seeds, max_steps, state0) -> Run:
        """Checks (batch size, sampling, key; SGD starts at ``t = 0``), the save steps, and
        the :class:`Run`: steps ``save_steps[i] .. save_steps[i+1] - 1`` per interval."""
        n, b, lr = problem.n_train, self.batch_size, float(self.lr)
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= n:
            raise bad_value("sgd", "batch_size", b, f"use an integer in [1, N={n}]")
        check_choice("sgd", "sampling", self.sampling, SAMPLING)
        if key is None:
            raise bad_value("sgd", "key", key, "SGD needs a PRNG key: pass key=jax.random.key(0)")
        if saves.t0 != 0:
            raise bad_value("sgd", "t0", saves.t0, "SGD starts at t = 0: use t0=0")
        steps = _steps(saves.t1, lr)
        save_steps = _save_steps(saves, lr, steps)
        keys = key if seeds is None else jax.random.split(key, seeds)
        dyn = self if type(b) is int else dataclasses.replace(self, batch_size=int(b))
        described = problem.describe()  # once: a sweep prepares many small runs
        settings = {
            "lr": lr,
            "batch_size": int(b),
            "steps": steps,
            "sampling": self.sampling,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "optimizer": self.label,
            "seeds": seeds,
        }
        run = f"sgd of lr={lr}, batch_size={b}, steps={steps}, seeds={seeds}"
        return Run(
            dyn,
            (save_steps[:-1], save_steps[1:]),
            save_steps * lr,
            0.0,
            0.0,
            keys,
            seeds is not None,
            _blocks.MAX_STEPS,  # SGD has no step budget
            ("sgd", described, settings, save_steps),
            {"run": run, "problem": described, **settings},
            {"settings": settings, "save_steps": save_steps, "problem": described},
            method(self, "kind")(problem),
            batch_key=tuple(int(k) for k in save_steps),
        )

    def finish(self, problem, run, out: dict) -> Trajectory:
        """SGD's :class:`Trajectory`: status ``"diverged"`` from the first non-finite step
        (a single run keeps the save points up to it)."""
        settings, seeds = run.host["settings"], run.host["settings"]["seeds"]
        save_steps = run.host["save_steps"][: out["index"] + 1]
        carry, obs = out["carry"], {k: np.asarray(v) for k, v in out["obs"].items()}
        bad_steps = np.atleast_1d(carry[2])
        run.host["last_loss"] = float(np.atleast_1d(carry[3])[0])  # for failure()
        diverged = bool(np.any(bad_steps >= 0))
        t, lr = save_steps * settings["lr"], settings["lr"]
        if diverged and seeds is None:
            keep = save_steps <= bad_steps[0]
            t, obs = t[keep], {k: v[keep] for k, v in obs.items()}
        first_bad = np.min(bad_steps[bad_steps >= 0]) if diverged else settings["steps"]
        stats = {
            "steps": settings["steps"],
            "status": "diverged" if diverged else "success",
            "diverged_at_step": [int(b) for b in bad_steps] if seeds else int(bad_steps[0]),
            "t_reached": float(first_bad * lr),
        }
        config = {"dynamics": run.name, "problem": run.host["problem"], **settings}
        config.update(observables=list(run.groups))
        return from_run(
            problem,
            run.name,
            t,
            obs,
            carry[0],
            groups=run.groups,
            stats=stats,
            config=config,
            seeds=seeds,
        )

    def failure(self, problem, run, traj) -> str:
        lr, kind, stats = run.host["settings"]["lr"], run.name, traj.stats
        eta_max, lam = stable_learning_rate(problem)
        stable = (
            f"The stable learning rate is about 2/λ_max = {eta_max:.4g} (λ_max = {lam:.4g} at "
            "the start"
        )
        if stats["status"] == "blew_up":
            final = float(np.ravel(traj["loss"])[-1])
            return (
                f"{kind}: the loss or ρ blew up (the loss beyond {STEP_BLOW_UP:.0f} times its "
                f"start, or ρ beyond {BLOW_UP:.0e}; finite: final loss {final:.3g}). {stable}); "
                f"lr={lr} was used"
            )
        step = int(round(stats["t_reached"] / lr))
        last = run.host["last_loss"]
        return (
            f"{kind}: the loss stopped being finite at step {step} (t={step * lr:.6g}); the last "
            f"finite batch loss was {last:.6g}. {stable}, Hessian-vector power iteration); "
            f"lr={lr} was used"
        )


def _steps(t1, lr: float) -> int:
    """``round(t1 / lr)`` steps, with a warning when ``t1`` is not a multiple of ``lr``."""
    steps = int(round(t1 / lr))
    if steps < 1:
        raise bad_value("sgd", "t1", t1, f"it gives no step at lr={lr:g}; use t1 >= lr")
    if abs(steps * lr - t1) > 1e-9 * t1:
        warnings.warn(
            f"sgd: t1={t1:g} is not a multiple of lr={lr:g}; running the nearest whole "
            f"number of steps, {steps}, to t = {steps * lr:.6g} (t = lr·step)",
            stacklevel=7,
        )
    return steps


def _advance(problem, dyn, carry, key, start, stop, groups):
    """Steps ``start .. stop - 1``, then the observables; returns the carry and the
    observables (with a leading axis of length 1: one save)."""
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

    carry = jax.lax.fori_loop(start, stop, one, carry)
    return carry, jax.tree.map(lambda a: a[None], observe(problem, carry[0], groups))


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
    key,
    throw: bool | None = None,
    on_failure: str | None = None,
    on_divergence: str | None = None,
    **kwargs,
) -> Trajectory:
    """Run SGD (GD when ``batch_size = N``) on ``problem``; observables on ``t = lr·step``:
    ``gf.simulate(problem, SGD(optimizer or optax.sgd(lr, momentum, nesterov), batch_size,
    lr, sampling), t1=t1, key=key, ...)``.

    ``t1`` or ``steps`` (``steps = round(t1/lr)``) sets the length; ``momentum`` and
    ``nesterov`` configure the default ``optax.sgd`` (with ``optimizer=`` put them in the
    optimizer); ``on_failure`` / ``on_divergence`` are deprecated aliases of ``throw``. The
    other arguments are :func:`gradflow.simulate`'s (``save_every``, ``ts``, ``seeds``,
    ``observables``, checkpoints, ``progress``); see :class:`SGD` (docs/dynamics.md).
    """
    if not isinstance(problem, Problem):
        raise bad_value("sgd", "problem", type(problem).__name__, "pass a gf.Problem")
    aliases = dict(on_failure=on_failure, on_divergence=on_divergence)
    throw = throw_from_aliases("sgd", throw, **aliases)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < np.inf:
        raise bad_value("sgd", "lr", lr, "use a finite number > 0")
    _check_momentum(momentum, nesterov, optimizer)
    if (t1 is None) == (steps is None):
        raise bad_value("sgd", "t1", t1, "give exactly one of t1 and steps")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise bad_value("sgd", "steps", steps, "use an integer >= 1")
        t1 = steps * lr
    if optimizer is None:
        dyn = plain_sgd(lr, batch_size, sampling, momentum, nesterov)
    else:
        dyn = SGD(optimizer, batch_size, np.float64(lr), sampling)
    return simulate(problem, dyn, t1=t1, key=key, throw=throw, **kwargs)


def _check_momentum(momentum, nesterov, optimizer) -> None:
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float, np.integer, np.floating))
        or not 0.0 <= momentum < 1.0
    ):
        raise bad_value("sgd", "momentum", momentum, "use a number in [0, 1)")
    if not isinstance(nesterov, bool) or (nesterov and not momentum):
        raise bad_value("sgd", "nesterov", nesterov, "use true or false (true needs momentum > 0)")
    if optimizer is not None and momentum:
        raise bad_value(
            "sgd", "momentum", momentum, "with optimizer= put the momentum in the optimizer"
        )
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise bad_value("sgd", "optimizer", optimizer, "use an optax.GradientTransformation")


def _save_steps(saves, lr: float, steps: int) -> np.ndarray:
    """The steps nearest the save times (step 0 first), with a warning when they are not on
    the step grid (:func:`_warn_off_grid`)."""
    if saves.t0 == 0 and saves.t1 == steps * lr:  # simulate's grid is this one
        grid = saves.grid
    else:
        grid = save_times(0.0, steps * lr, saves.save_every, saves.ts, where="sgd")
    save_steps = np.unique(np.clip(np.round(grid / lr).astype(np.int64), 0, steps))
    name = "ts" if saves.ts is not None else "save_every"
    _warn_off_grid(grid, save_steps, lr, name, saves.ts, saves.save_every)
    if save_steps[0] != 0:
        save_steps = np.insert(save_steps, 0, 0)
    return save_steps


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
        stacklevel=8,
    )
