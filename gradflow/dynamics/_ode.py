"""``gf.flow``: the gradient-flow ODE of a :class:`Problem`, integrated with Diffrax.

The SDE of SGD shares this entry point (``noise=gf.SGDNoise(...)``, :mod:`._sde`) and the
integration core (:mod:`._core`).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._problem import Problem
from .._progress import solve_meter, solve_progress
from .._trajectory import Trajectory, from_run
from .._validate import bad_value, check_choice
from ..diffrax_ext import (
    RKC2,
    FloorController,
    ProjectedSolver,
    SpectralMonitor,
    spectral_stats,
    stability_boundary,
)
from . import _checkpoint, _defaults, _driver
from ._batch import Plan
from ._core import (
    assembled,
    check_key,
    check_run_arguments,
    check_sde_horizon,
    run_stats,
    save_times,
    segment,
    segmentable,
    solve,
    start,
    traced,
)
from ._cost import timed
from ._driver import AbstractDynamics
from ._failure import blown_up, from_throw, raise_or_return, resolve_on_failure

SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "rkc2": RKC2,
}


def evaluations_per_step(solver) -> tuple[int, int] | None:
    """New right-hand-side (gradient) evaluations of ``solver`` per step, and once at the start
    (FSAL): ``evals = num_steps * per_step + at_start`` (rejected steps included, the initial
    step-size selection not), read from the solver itself: Euler ``(1, 0)``, an explicit
    Butcher tableau ``(stages - fsal, fsal)`` (Heun's second stage is at ``y0 + h k1``, not at
    ``y1``, so it is not FSAL; Bosh3, Tsit5, Dopri5 and Dopri8 are: the first stage of a step is
    the last of the previous one). ``None`` for implicit solvers (their Newton iterations are
    not counted) and for RKC2, whose work varies per step and is counted in its solver state
    (see :func:`evaluations`). Wrappers (:class:`ProjectedSolver`, :class:`SpectralMonitor`)
    are looked through."""
    while isinstance(solver, (ProjectedSolver, SpectralMonitor)):
        solver = solver.solver
    if type(solver) is diffrax.Euler:
        return 1, 0
    tableau = getattr(solver, "tableau", None)
    if isinstance(tableau, diffrax.ButcherTableau) and not tableau.implicit:
        first = int(tableau.fsal)
        return tableau.num_stages - first, first
    return None


#: :func:`evaluations_per_step` of the classical solvers of :data:`SOLVERS`, by name (what
#: ``benchmarks/work_precision.py`` and the ``work_precision`` figure count).
EVALS_PER_STEP = {
    name: evaluations_per_step(cls()) for name, cls in SOLVERS.items() if cls is not RKC2
}


def resolve_solver(solver) -> diffrax.AbstractSolver:
    """A Diffrax solver from a name in :data:`SOLVERS`, an instance, or ``None`` (default)."""
    if solver is None:
        solver = _defaults.ODE["solver"]
    if isinstance(solver, str):
        check_choice("flow", "solver", solver, tuple(SOLVERS))
        return SOLVERS[solver]()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise bad_value("flow", "solver", solver, "use a solver name or a diffrax solver")
    return solver


class _Default:
    """The value of an argument left to the table of defaults (:mod:`._defaults`)."""

    def __repr__(self):
        return "DEFAULT"


DEFAULT = _Default()


def default_controller(rtol=DEFAULT, atol=DEFAULT, dtmin=DEFAULT):
    """The default step-size controller of ``gf.flow``: :class:`FloorController` around a
    ``PIDController(rtol, atol)`` (no floor when ``dtmin`` is ``None``); ``DEFAULT`` takes the
    value of ``gradflow.dynamics.ODE_DEFAULTS``. Tolerances enter traced, so a sweep over them
    compiles once."""
    d = _defaults.ODE
    rtol, atol, dtmin = (
        d[k] if v is DEFAULT else v for k, v in (("rtol", rtol), ("atol", atol), ("dtmin", dtmin))
    )
    pid = diffrax.PIDController(rtol=traced(rtol), atol=traced(atol))
    return pid if dtmin is None else FloorController(pid, traced(dtmin))


@timed
def flow(
    problem: Problem,
    *,
    t1: float,
    t0: float = 0.0,
    save_every: float | None = None,
    ts=None,
    solver=None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol=DEFAULT,
    atol=DEFAULT,
    dtmin=DEFAULT,
    dt0: float | None = None,
    max_steps: int = _defaults.ODE["max_steps"],
    on_max_steps: str = "raise",
    on_failure: str | None = None,
    throw: bool | None = None,
    observables: tuple[str, ...] = (),
    state0=None,
    progress: bool | str = False,
    stiffness: bool = False,
    noise=None,
    key=None,
    seeds: int | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
    resume_from=None,
    _plan: bool = False,
) -> Trajectory:
    """Integrate the gradient flow ``d state/dt = −∇L`` of ``problem`` (THEORY 3.1–3.3).

    Args:
        problem: the :class:`Problem` (network, data, λ, parametrization).
        t1, t0: the time interval, in flow time (SGD step ``j`` is ``t = η j``).
        save_every, ts: the save grid (see :func:`save_times`); observables are computed at
            these times by :func:`gradflow._observables.observe` (Diffrax ``SaveAt(fn=…)``).
        solver: a name in :data:`SOLVERS` or any Diffrax solver (default ``"heun"``).
            ``"euler"`` (gradient descent) and other non-adaptive solvers need a fixed ``dt0``.
            ``"rkc2"`` is the stabilized Runge–Kutta–Chebyshev method for stiff flows
            (:class:`gradflow.diffrax_ext.RKC2`, THEORY 3.5); its stats add ``stages_mean``,
            ``stages_max`` and the stiffness record (see ``stiffness``).
        stepsize_controller: any Diffrax step-size controller, e.g.
            ``diffrax.ConstantStepSize()`` (with ``dt0``) for fixed-step Heun. Default, for
            adaptive solvers: :func:`default_controller` (``rtol``, ``atol``, ``dtmin``). Every
            adaptive controller is wrapped in ``diffrax.ClipStepSizeController`` so that it
            steps exactly to each save time.
        rtol, atol, dtmin: the default controller's settings (``gradflow.dynamics.ODE_DEFAULTS``:
            Heun, 1e-4, 1e-6, 1e-4); they cannot be combined with ``stepsize_controller``.
            ``dtmin`` is the step floor: the ReLU flow's right-hand side jumps on switching
            surfaces and may slide along them (Filippov), where an adaptive controller would
            shrink its step without end. A step at the floor that fails the tolerance is
            accepted if it decreases the loss (counted in ``stats["num_floor_steps"]``), else
            refused and the floor halves (``stats["num_floor_rejections"]``); see
            :class:`gradflow.diffrax_ext.FloorController`. ``None`` disables the floor.
        max_steps: hitting it raises a ``RuntimeError`` naming the time reached, unless
            ``on_max_steps="truncate"`` (then the partial trajectory is returned).
        on_failure: the switch every dynamics shares (:mod:`gradflow.dynamics._failure`):
            ``"raise"`` a :class:`gradflow.RunFailed` carrying the partial trajectory
            (``MaxStepsReached`` for status ``"max_steps"``, ``Diverged`` for ``"diverged"``
            and ``"blew_up"``) or ``"return"`` it; ``on_max_steps`` is its older name
            (``"truncate"`` = ``"return"``). ``throw=True`` / ``False`` is the same switch
            (Diffrax's name).
        observables: optional groups (:func:`gradflow.observable_groups`, e.g. ``"nc"``,
            ``"rank"``, ``"margins"``, ``"weights"``) added to the standard ones.
        state0: a starting state (default: the model's weights in the problem's form).
        progress: report the progress on stderr after every block of save intervals (the
            time reached, steps, rate, ETA): a bar on a terminal, else a plain line every 10
            s (:mod:`gradflow._progress`); a string names the run in it.
        stiffness: estimate the spectral radius ``ρ`` of the velocity's Jacobian at every step
            (:class:`gradflow.diffrax_ext.SpectralMonitor`: three extra gradient evaluations per
            step, reported as ``stats["num_spectral_evaluations"]``, not in
            ``num_gradient_evaluations``) and report ``rho_max``, ``hrho_max``, the fraction of
            accepted steps that were stability-bound (``h ρ ≥ ½ β``, ``β`` the solver's
            stability boundary) and ``stiffness``, the same per log2 time bin. RKC2 records
            this always, with its own estimate.
        noise, key, seeds: with ``noise=gf.SGDNoise(lr, batch_size, sampling)``, integrate the
            SDE of SGD (THEORY 3.4, Itô) instead: see :func:`gradflow.dynamics.sde` for its
            solver (``"euler"``: fixed-step Euler–Maruyama, ``dt0`` default ``lr/4``; no
            tolerances: ``rtol``, ``atol``, ``dtmin`` are refused). ``key`` is required;
            ``seeds=k`` runs ``k`` Brownian paths in one ``vmap`` (leading ``seed``
            dimension). The result has ``kind="sde"``.
        checkpoint, checkpoint_every, checkpoint_minutes, resume_from: a direct call runs
            in compiled calls of about half a second (bounded in steps), so SIGINT/SIGTERM stop
            it within about half a second (:class:`gradflow.Interrupted` carries the partial
            trajectory, ``status`` ``"interrupted"``). ``checkpoint=PATH`` keeps the full
            state (state, solver and controller state, save index, observables so far) there every
            ``checkpoint_every`` save intervals or ``checkpoint_minutes`` minutes (default 50
            or 5) and at an interruption, written atomically and removed at the end;
            ``resume_from=PATH`` (or a :class:`gradflow.Checkpoint`) continues that run (see
            :mod:`gradflow.dynamics._checkpoint`).

    Returns:
        A :class:`Trajectory` with ``loss``, ``data_loss``, ``train_acc``, ``test_acc``,
        ``rho``, ``rho_k``, ``balance_gap``, ``margin_min/mean/std``, and per parametrization
        ``unit_norm_error`` (LM), ``v_norm`` (WN), ``rho_eq`` (lm-last), against ``t``. Its
        ``stats`` count steps and ``num_gradient_evaluations`` (see :func:`evaluations`).
    """
    if not isinstance(problem, Problem):
        raise bad_value("flow", "problem", type(problem).__name__, "pass a gf.Problem")
    tolerances = {"rtol": rtol, "atol": atol, "dtmin": dtmin}
    on_failure = from_throw("flow", throw, on_failure)
    if on_failure is not None:  # the one switch of every dynamics (dynamics/_failure.py)
        switch = resolve_on_failure("flow", on_failure, "on_max_steps", on_max_steps, "raise")
        on_max_steps = "raise" if switch == "raise" else "truncate"
    # ---- the SDE of SGD (gradflow/dynamics/_sde.py) ----------------------------------------
    if noise is not None:
        from ._sde import sde

        if stiffness:
            raise bad_value("flow", "stiffness", stiffness, "the SDE has no stiffness record")
        if stepsize_controller is not None:
            raise bad_value(
                "flow",
                "stepsize_controller",
                stepsize_controller,
                "with noise the SDE takes fixed Euler–Maruyama steps: set dt0 instead",
            )
        if key is not None:
            check_key("flow", key)
        check_sde_horizon("flow", noise, t0, t1)
        given = {k: v for k, v in tolerances.items() if v is not DEFAULT}
        return sde(
            problem,
            noise,
            key=key,
            seeds=seeds,
            t1=t1,
            t0=t0,
            save_every=save_every,
            ts=ts,
            solver=solver,
            dt0=dt0,
            max_steps=max_steps,
            on_max_steps=on_max_steps,
            observables=observables,
            state0=state0,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            checkpoint_minutes=checkpoint_minutes,
            resume_from=resume_from,
            _plan=_plan,
            **given,
        )
    if key is not None or seeds is not None:
        raise bad_value(
            "flow",
            "seeds" if key is None else "key",
            seeds if key is None else key,
            "key and seeds apply to the SDE only: pass noise=gf.SGDNoise(...)",
        )
    # ---------------------------------------------------------------------------------------
    check_run_arguments(
        "flow",
        t0=t0,
        t1=t1,
        max_steps=max_steps,
        on_max_steps=on_max_steps,
        observables=observables,
        dt0=dt0,
    )
    for name in ("rtol", "atol"):
        if tolerances[name] is not DEFAULT:
            value = tolerances[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise bad_value("flow", name, value, "use a number > 0")
    if dtmin is not DEFAULT and dtmin is not None and not dtmin > 0:
        raise bad_value("flow", "dtmin", dtmin, "use a number > 0 or None")
    grid = save_times(t0, t1, save_every, ts)
    inner = resolve_solver(solver)
    if stepsize_controller is not None:
        if not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
            raise bad_value(
                "flow",
                "stepsize_controller",
                stepsize_controller,
                "use a diffrax step-size controller",
            )
        given = [k for k, v in tolerances.items() if v is not DEFAULT]
        if given:
            raise bad_value(
                "flow",
                given[0],
                tolerances[given[0]],
                "it configures the default controller; with stepsize_controller set the "
                "tolerances on the controller itself",
            )
        controller = stepsize_controller
    elif isinstance(inner, diffrax.AbstractAdaptiveSolver):
        controller = default_controller(rtol, atol, dtmin)
    else:
        controller = diffrax.ConstantStepSize()
    adaptive = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
    if adaptive and not isinstance(controller, diffrax.ClipStepSizeController):
        controller = diffrax.ClipStepSizeController(controller, step_ts=jnp.asarray(grid))
    if not adaptive and dt0 is None:
        raise bad_value(
            "flow",
            "dt0",
            dt0,
            f"solver {type(inner).__name__} with {type(controller).__name__} needs a fixed dt0 > 0",
        )
    monitored = inner
    if stiffness and not isinstance(inner, RKC2):
        monitored = SpectralMonitor(inner, stability_boundary(inner))
    solver_obj = ProjectedSolver(monitored, problem.parametrization)
    y0 = problem.initial_state() if state0 is None else state0
    meter = solve_meter(progress)
    args = (
        problem,
        y0,
        jnp.asarray(t0, float),
        jnp.asarray(t1, float),
        jnp.asarray(grid),
        solver_obj,
        controller,
        traced(dt0),
        int(max_steps),
        tuple(observables),
        meter,
    )

    def finish(raw) -> Trajectory:
        return _finish(raw, problem, inner, controller, adaptive, locals_)

    locals_ = dict(
        t0=t0,
        t1=t1,
        dt0=dt0,
        max_steps=max_steps,
        on_max_steps=on_max_steps,
        observables=observables,
    )
    plan = Plan(_integrate_core, args, finish)
    pol = _checkpoint.policy("flow", checkpoint, checkpoint_every, checkpoint_minutes)
    if _plan:
        return plan
    if not segmentable(controller):
        if pol.path is not None or resume_from is not None:
            raise bad_value(
                "flow",
                "stepsize_controller",
                type(controller).__name__,
                "checkpoints and resume need an adaptive controller or ConstantStepSize",
            )
        with solve_progress(progress, "flow", t0, t1):
            return plan.run()
    fp = _checkpoint.fingerprint(
        "flow",
        problem.describe(),
        {**locals_, "solver": repr(solver_obj), "controller": repr(controller)},
        grid,
        *_checkpoint.flatten(y0),
    )
    describe = {
        "run": f"flow of t1={t1}, {len(grid)} save times, solver {type(inner).__name__}",
        "problem": problem.describe(),
        **locals_,
    }
    ckpt = _checkpoint.resolve("flow", resume_from, fp, describe)
    groups = tuple(observables)
    ode = ODE(solver_obj, controller, traced(dt0), int(max_steps))
    carry, obs0 = _driver.first_record(
        ode, problem, y0, None, np.float64(t0), grid[1], groups, False
    )
    carry, obs, index, info, signum = _driver.run(
        ode,
        problem,
        where="flow",
        keys=None,
        xs=(grid[:-1], grid[1:]),
        carry=carry,
        obs0=obs0,
        seeded=False,
        groups=groups,
        max_steps=int(max_steps),
        fp=fp,
        describe=describe,
        ckpt=ckpt,
        pol=pol,
        resume_path=resume_from,
        progress=progress,
        times=grid,
    )
    raw = assembled(carry, obs, info, signum, seeded=False)
    if signum is None:
        return finish(raw)
    traj = _finish(
        raw, problem, inner, controller, adaptive, dict(locals_, on_max_steps="truncate")
    )
    raise _checkpoint.interrupted("flow", traj, signum, pol, grid[index])


def _finish(raw, problem, inner, controller, adaptive, kw) -> Trajectory:
    """The :class:`Trajectory` (or the error) of one flow from the host copy of its output."""
    t0, t1, dt0, max_steps = kw["t0"], kw["t1"], kw["dt0"], kw["max_steps"]
    on_max_steps, observables = kw["on_max_steps"], kw["observables"]
    settings = _settings(controller) if adaptive else {"rtol": None, "atol": None, "dtmin": None}
    stats = run_stats(raw)
    stats.update(
        max_steps=int(max_steps), solver=type(inner).__name__, controller=type(controller).__name__
    )
    stats.update(settings, dt0=dt0)
    stats.update(evaluations(inner, stats, raw.get("spectral")))
    config = {
        "dynamics": "flow",
        "problem": problem.describe(),
        "t0": t0,
        "t1": t1,
        "observables": list(observables),
    }
    config.update({k: stats[k] for k in ("solver", "rtol", "atol", "dtmin", "dt0")})
    keep = np.isfinite(raw["t"])
    traj = from_run(
        problem,
        "flow",
        raw["t"][keep],
        {k: np.asarray(v)[keep] for k, v in raw["obs"].items()},
        raw["final"],
        groups=observables,
        stats=stats,
        config=config,
    )
    if stats["status"] == "success" and blown_up(traj):
        traj.stats["status"] = "blew_up"
    status = traj.stats["status"]
    if status == "max_steps":
        why = f"raise max_steps (now {max_steps}), raise dtmin"
    elif status in ("diverged", "blew_up"):
        why = (
            "the loss stopped being finite or grew without bound (an explicit step beyond its "
            "stability limit ~2/λ_max, or a non-finite state)"
        )
    else:
        why = "see stats"
    message = (
        f"flow: stopped at t={stats['t_reached']:.6g} of t1={t1} after {stats['num_steps']} "
        f"steps ({status}); {why}, or pass on_max_steps='truncate' (on_failure='return') to "
        "keep the partial trajectory"
    )
    return raise_or_return(traj, "raise" if on_max_steps == "raise" else "return", message)


def evaluations(solver, stats: dict, record=None) -> dict:
    """``num_gradient_evaluations`` of a run, and the stiffness entries of its record.

    Classical solvers: ``num_steps * per_step + at_start`` (:func:`evaluations_per_step`:
    rejected steps included, the initial step-size selection not); ``None`` for implicit
    solvers (their Newton iterations are not counted).
    RKC2 counts its work in its solver state: every stage, ``F(y1)`` and power iteration of
    the accepted steps and of the start, exactly. Diffrax discards the solver state of a
    rejected step, so each rejected step is charged the mean work of an accepted one
    (``num_gradient_evaluations_rejected``; a rejected step is longer than the accepted retry
    that follows it, so this is an estimate, not a bound).
    """
    if isinstance(solver, RKC2):
        r = record
        accepted = int(r.num_evaluations)
        per, first = solver.spectral_cost  # the first step makes the longer power iteration
        mean = (accepted - 1 - (first - per)) / max(int(r.num_steps), 1)
        rejected = int(round(stats["num_rejected_steps"] * mean))
        out = {
            "num_gradient_evaluations": accepted + rejected,
            "num_gradient_evaluations_rejected": rejected,
        }
        out.update(spectral_stats(r, stages=True))
        return out
    cost = evaluations_per_step(solver)
    if cost is None:
        return {"num_gradient_evaluations": None}
    per, first = cost
    out = {"num_gradient_evaluations": stats["num_steps"] * per + first}
    if record is not None:
        out.update(spectral_stats(record, stages=False))
    return out


def _settings(controller) -> dict:
    """``rtol``, ``atol``, ``dtmin`` of a (clipped, floored) PID controller, as floats."""
    clipped = isinstance(controller, diffrax.ClipStepSizeController)
    inner = controller.controller if clipped else controller
    floor = inner.dtmin if isinstance(inner, FloorController) else None
    pid = inner.controller if isinstance(inner, FloorController) else inner
    value = lambda v: None if v is None else float(v)  # noqa: E731
    return {
        "rtol": value(getattr(pid, "rtol", None)),
        "atol": value(getattr(pid, "atol", None)),
        "dtmin": value(floor),
    }


def _term():
    return diffrax.ODETerm(lambda t, y, args: args.velocity(y))


def _integrate_core(problem, y0, t0, t1, grid, solver, controller, dt0, max_steps, groups, meter):
    term = _term()
    return solve(term, solver, t0, t1, dt0, y0, problem, grid, controller, max_steps, groups, meter)


class ODE(AbstractDynamics):
    """The gradient flow ``d state/dt = v(state)`` (THEORY 3.1–3.3) as a dynamics: Diffrax's
    ``solver`` (the run's, e.g. :class:`ProjectedSolver` around Heun) stepped by
    ``stepsize_controller``; ``dt0`` the first (or fixed) step, ``max_steps`` Diffrax's bound
    on the steps of one piece. ``init`` / ``advance`` are :func:`._core.start` /
    :func:`._core.segment` on the term ``v(state)``; :func:`flow` builds it."""

    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    dt0: object = None
    max_steps: int = eqx.field(static=True, default=_defaults.ODE["max_steps"])

    def init(self, problem, state0, key, t0, t_next, groups):
        ctrl = self.stepsize_controller
        return start(_term(), self.solver, ctrl, t0, t_next, self.dt0, state0, problem, groups)

    def advance(self, problem, carry, key, x, allowed, groups):
        a, b = x
        ctrl, steps = self.stepsize_controller, self.max_steps
        return segment(
            _term(), self.solver, ctrl, a[0], b[0], b, carry, problem, steps, groups, allowed
        )

    @property
    def evaluations_per_step(self) -> tuple[int, int] | None:
        """:func:`evaluations_per_step` of the solver."""
        return evaluations_per_step(self.solver)
