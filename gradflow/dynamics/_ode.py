"""The gradient-flow ODE of a :class:`Problem` as a dynamics (:class:`ODE`), and ``gf.flow``.

:class:`ODE` holds a Diffrax solver and step-size controller; :func:`gradflow.simulate` runs
it (:mod:`._simulate`). ``gf.flow`` is the convenience that builds it from names and
tolerances; with ``noise=gf.SGDNoise(...)`` it runs the SDE of SGD instead (:mod:`._sde`).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._problem import Problem
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
from . import _defaults
from ._core import (
    DiffraxDynamics,
    check_dt0,
    padded_step_ts,
    run_stats,
    segmentable,
    solve,
    traced,
)
from ._driver import Run
from ._failure import throw_from_aliases
from ._sde import sde
from ._simulate import simulate

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


def flow(
    problem: Problem,
    *,
    t1: float,
    solver=None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol=DEFAULT,
    atol=DEFAULT,
    dtmin=DEFAULT,
    dt0: float | None = None,
    stiffness: bool = False,
    noise=None,
    key=None,
    seeds: int | None = None,
    throw: bool | None = None,
    on_failure: str | None = None,
    on_max_steps: str | None = None,
    **kwargs,
) -> Trajectory:
    """Integrate the gradient flow ``d state/dt = −∇L`` of ``problem`` (THEORY 3.1–3.3):
    ``gf.simulate(problem, ODE(solver, stepsize_controller, dt0, stiffness), t1=t1, ...)``.

    ``solver``: a name in :data:`SOLVERS` or a Diffrax solver (default ``"heun"``);
    ``stepsize_controller``: any Diffrax controller, else :func:`default_controller` with
    ``rtol``, ``atol``, ``dtmin`` (``ODE_DEFAULTS``; not with ``stepsize_controller``);
    ``noise=gf.SGDNoise(...)`` with ``key`` (and ``seeds``) integrates the SDE of SGD instead
    (:func:`gradflow.dynamics.sde`). ``on_failure`` / ``on_max_steps`` are deprecated
    aliases of ``throw``. The other arguments (``t0``, ``save_every``, ``ts``,
    ``observables``, ``state0``, ``max_steps``, checkpoints, ``progress``) are
    :func:`gradflow.simulate`'s; :class:`ODE` documents the solver's (docs/dynamics.md).
    """
    if not isinstance(problem, Problem):
        raise bad_value("flow", "problem", type(problem).__name__, "pass a gf.Problem")
    throw = throw_from_aliases("flow", throw, on_failure=on_failure, on_max_steps=on_max_steps)
    tolerances = {"rtol": rtol, "atol": atol, "dtmin": dtmin}
    given = {k: v for k, v in tolerances.items() if v is not DEFAULT}
    if noise is not None:
        _refuse_for_sde(stiffness, stepsize_controller)
        opts = dict(key=key, seeds=seeds, solver=solver, dt0=dt0, throw=throw, **given)
        return sde(problem, noise, t1=t1, **opts, **kwargs)
    inner = resolve_solver(solver)
    adaptive = isinstance(inner, diffrax.AbstractAdaptiveSolver)
    controller = _controller(stepsize_controller, given, adaptive, rtol, atol, dtmin)
    ode = ODE(inner, controller, dt0, stiffness)
    return simulate(problem, ode, t1=t1, key=key, seeds=seeds, throw=throw, **kwargs)


def _refuse_for_sde(stiffness, stepsize_controller) -> None:
    if stiffness:
        raise bad_value("flow", "stiffness", stiffness, "the SDE has no stiffness record")
    if stepsize_controller is not None:
        raise bad_value(
            "flow",
            "stepsize_controller",
            stepsize_controller,
            "with noise the SDE takes fixed Euler–Maruyama steps: set dt0 instead",
        )


def _controller(stepsize_controller, given: dict, adaptive: bool, rtol, atol, dtmin):
    """``stepsize_controller``, or the default one from the tolerances (checked); None: the
    solver decides (:meth:`ODE.prepare`)."""
    for name in ("rtol", "atol"):
        value = given.get(name, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise bad_value("flow", name, value, "use a number > 0")
    if dtmin is not DEFAULT and dtmin is not None and not dtmin > 0:
        raise bad_value("flow", "dtmin", dtmin, "use a number > 0 or None")
    if stepsize_controller is None:
        return default_controller(rtol, atol, dtmin) if given and adaptive else None
    if not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise bad_value(
            "flow", "stepsize_controller", stepsize_controller, "use a diffrax step-size controller"
        )
    if given:
        name = next(iter(given))
        raise bad_value(
            "flow",
            name,
            given[name],
            "it configures the default controller; with stepsize_controller set the "
            "tolerances on the controller itself",
        )
    return stepsize_controller


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


_TERM = diffrax.ODETerm(lambda t, y, args: args.velocity(y))


def _integrate_core(problem, y0, t0, t1, grid, solver, controller, dt0, max_steps, groups, meter):
    """The whole flow as one ``diffeqsolve`` (only for a controller that cannot go in
    segments, :func:`._core.segmentable`)."""
    return solve(
        _TERM, solver, t0, t1, dt0, y0, problem, grid, controller, max_steps, groups, meter
    )


class ODE(DiffraxDynamics):
    """The gradient flow ``d state/dt = v(state)`` (THEORY 3.1–3.3) as a dynamics.

    Args:
        solver: a Diffrax solver, e.g. ``diffrax.Heun()`` (None: ``ODE_DEFAULTS["solver"]``).
            ``"rkc2"`` (:class:`gradflow.diffrax_ext.RKC2`) is the stabilized Chebyshev
            method for stiff flows. The run wraps it in :class:`ProjectedSolver` (LM: back
            onto the unit spheres after each step).
        stepsize_controller: any Diffrax controller (None: :func:`default_controller` for an
            adaptive solver, ``ConstantStepSize`` otherwise, which needs ``dt0``). An adaptive
            controller is wrapped in ``diffrax.ClipStepSizeController`` so that it steps
            exactly to each save time.
        dt0: the first (or fixed) step.
        stiffness: estimate the spectral radius of the velocity's Jacobian at every step
            (:class:`gradflow.diffrax_ext.SpectralMonitor`, three gradients per step, not in
            ``num_gradient_evaluations``); the stats add ``rho_max``, ``hrho_max``,
            ``stiffness``. RKC2 records this always.

    ``max_steps`` (set by :meth:`prepare` from the run's) bounds the steps of one piece.
    """

    solver: diffrax.AbstractSolver | None = None
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    dt0: object = None
    stiffness: bool = eqx.field(static=True, default=False)
    max_steps: int = eqx.field(static=True, default=_defaults.ODE["max_steps"])
    where = "flow"

    def term(self, problem, key):
        return _TERM

    def prepare(self, problem, saves, *, key, seeds, max_steps, state0) -> Run:
        """The finalized ODE (default or clipped controller, projected solver, ``dt0``
        checked) and its :class:`Run`; ``key`` and ``seeds`` are refused."""
        if key is not None or seeds is not None:
            name, value = ("seeds", seeds) if key is None else ("key", key)
            hint = "key and seeds apply to the SDE only: pass noise=gf.SGDNoise(...)"
            raise bad_value("flow", name, value, hint)
        grid, dt0 = saves.grid, self.dt0
        check_dt0("flow", dt0)
        max_steps = _defaults.ODE["max_steps"] if max_steps is None else int(max_steps)
        inner = resolve_solver(self.solver)
        while isinstance(inner, ProjectedSolver):
            inner = inner.solver
        controller = self._controller(inner, grid)
        own_steps = isinstance(controller, diffrax.StepTo)  # its ts are the steps: no dt0
        if own_steps and dt0 is not None:
            raise bad_value("flow", "dt0", dt0, "StepTo sets the steps: pass dt0=None")
        if own_steps and not (controller.ts[0] == saves.t0 and controller.ts[-1] == saves.t1):
            ends = f"[{float(controller.ts[0])}, {float(controller.ts[-1])}]"
            raise bad_value(
                "flow",
                "stepsize_controller",
                f"StepTo over {ends}",
                f"its ts must start at t0={saves.t0} and end at t1={saves.t1}",
            )
        fixed = not isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
        if fixed and not own_steps and dt0 is None:
            shown = f"{type(inner).__name__} with {type(controller).__name__}"
            raise bad_value("flow", "dt0", dt0, f"solver {shown} needs a fixed dt0 > 0")
        monitored = inner
        if self.stiffness and not isinstance(inner, RKC2):
            monitored = SpectralMonitor(inner, stability_boundary(inner))
        solver = ProjectedSolver(monitored, problem.parametrization)
        ode = ODE(solver, controller, traced(dt0), self.stiffness, max_steps)
        t0, t1 = saves.t0, saves.t1
        host = dict(inner=inner, t0=t0, t1=t1, dt0=dt0, max_steps=max_steps)
        host["unsegmented"] = (
            "stepsize_controller",
            type(controller).__name__,
            "checkpoints and resume need an adaptive controller or ConstantStepSize",
        )
        settings = dict(t0=t0, t1=t1, dt0=dt0, max_steps=max_steps)
        whole = None
        if not segmentable(controller):
            ts = (jnp.asarray(t0, float), jnp.asarray(t1, float), jnp.asarray(grid))
            whole = (_integrate_core, (*ts, solver, controller, traced(dt0), max_steps))
        return Run(
            ode,
            (grid[:-1], grid[1:], grid[1:]),
            grid,
            np.float64(t0),
            grid[1],
            None,
            False,
            max_steps,
            (
                "flow",
                problem.describe(),
                {**settings, "solver": repr(solver), "controller": repr(controller)},
                grid,
            ),
            {
                "run": f"flow of t1={t1}, {len(grid)} save times, solver {type(inner).__name__}",
                "problem": problem.describe(),
                **settings,
            },
            host,
            "flow",
            whole,
        )

    def _controller(self, inner, grid):
        controller = self.stepsize_controller
        if controller is None:
            adaptive = isinstance(inner, diffrax.AbstractAdaptiveSolver)
            controller = default_controller() if adaptive else diffrax.ConstantStepSize()
        adaptive = isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
        if adaptive and not isinstance(controller, diffrax.ClipStepSizeController):
            controller = diffrax.ClipStepSizeController(controller, step_ts=padded_step_ts(grid))
        return controller

    def finish(self, problem, run, out: dict) -> Trajectory:
        """The flow's :class:`Trajectory`: ``stats`` from Diffrax's counts, the solver's
        gradient evaluations, the controller's settings."""
        raw, h, ctrl = self.raw(out, seeded=False), run.host, self.stepsize_controller
        adaptive = isinstance(ctrl, diffrax.AbstractAdaptiveStepSizeController)
        stats = run_stats(raw)
        inner = h["inner"]
        stats.update(max_steps=h["max_steps"], solver=type(inner).__name__)
        stats.update(controller=type(ctrl).__name__, dt0=h["dt0"])
        stats.update(_settings(ctrl) if adaptive else dict.fromkeys(("rtol", "atol", "dtmin")))
        stats.update(evaluations(inner, stats, raw.get("spectral")))
        config = {"dynamics": "flow", "problem": problem.describe(), "t0": h["t0"]}
        config.update(t1=h["t1"], observables=list(run.groups))
        config.update({k: stats[k] for k in ("solver", "rtol", "atol", "dtmin", "dt0")})
        keep = np.isfinite(raw["t"])
        obs = {k: np.asarray(v)[keep] for k, v in raw["obs"].items()}
        return from_run(
            problem,
            "flow",
            raw["t"][keep],
            obs,
            raw["final"],
            groups=run.groups,
            stats=stats,
            config=config,
        )

    def failure(self, problem, run, traj) -> str:
        stats, status = traj.stats, traj.stats["status"]
        if status == "max_steps":
            why = f"raise max_steps (now {run.host['max_steps']}), raise dtmin"
        elif status in ("diverged", "blew_up"):
            why = (
                "the loss stopped being finite or grew without bound (an explicit step beyond "
                "its stability limit ~2/λ_max, or a non-finite state)"
            )
        else:
            why = "see stats"
        return (
            f"flow: stopped at t={stats['t_reached']:.6g} of t1={run.host['t1']} after "
            f"{stats['num_steps']} steps ({status}); {why}, or pass throw=False to keep the "
            "partial trajectory"
        )

    @property
    def evaluations_per_step(self) -> tuple[int, int] | None:
        """:func:`evaluations_per_step` of the solver."""
        return evaluations_per_step(self.solver)
