"""``gf.flow``: the gradient-flow ODE of a :class:`Problem`, integrated with Diffrax."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import bad_value, check_choice
from ._observables import GROUPS
from ._observables import saveat as observation_saveat
from ._problem import Problem
from ._solver import FloorController, ProjectedSolver
from ._trajectory import Trajectory, from_run

#: Defaults chosen by ``benchmarks/work_precision.py`` (see benchmarks/README.md).
DEFAULT_SOLVER = "heun"
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-6
DEFAULT_DTMIN = 1e-4
DEFAULT_MAX_STEPS = 2_000_000

#: New right-hand-side (gradient) evaluations per step, and once at the start (FSAL), of the
#: solvers whose work ``benchmarks/work_precision.py`` and the ``work_precision`` figure count
#: (``evals = stats["num_steps"] * per_step + at_start``; rejected steps included, the initial
#: step-size selection not). Heun's second stage is at ``y0 + h k1``, not at ``y1``, so it is not
#: FSAL; Bosh3 (4 stages) and Tsit5 (7 stages) are: the first stage of a step is the last of
#: the previous one (or of the same start after a rejection).
EVALS_PER_STEP = {"euler": (1, 0), "heun": (2, 0), "bosh3": (3, 1), "tsit5": (6, 1)}

SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
}


def resolve_solver(solver) -> diffrax.AbstractSolver:
    """A Diffrax solver from a name in :data:`SOLVERS`, an instance, or ``None`` (default)."""
    if solver is None:
        solver = DEFAULT_SOLVER
    if isinstance(solver, str):
        check_choice("flow", "solver", solver, tuple(SOLVERS))
        return SOLVERS[solver]()
    if not isinstance(solver, diffrax.AbstractSolver):
        raise bad_value("flow", "solver", solver, "use a solver name or a diffrax solver")
    return solver


def save_times(t0: float, t1: float, save_every=None, ts=None) -> np.ndarray:
    """The save grid: ``ts`` if given, else ``t0, t0 + save_every, ..., t1``, else 101 points."""
    if ts is not None:
        ts = np.asarray(ts, dtype=float)
        if ts.ndim != 1 or ts.size == 0 or np.any(np.diff(ts) <= 0):
            raise bad_value("flow", "ts", ts, "use a non-empty increasing 1-D array")
        if ts[0] < t0 or ts[-1] > t1:
            raise bad_value("flow", "ts", ts, f"times must lie in [t0, t1] = [{t0}, {t1}]")
        return ts
    if save_every is not None:
        if not save_every > 0:
            raise bad_value("flow", "save_every", save_every, "use a number > 0")
        n = int(np.floor((t1 - t0) / save_every + 1e-9))
        grid = t0 + save_every * np.arange(n + 1)
        return grid if np.isclose(grid[-1], t1) else np.append(grid, t1)
    return np.linspace(t0, t1, 101)


def flow(
    problem: Problem,
    *,
    t1: float,
    t0: float = 0.0,
    save_every: float | None = None,
    ts=None,
    solver=None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    dtmin: float | None = DEFAULT_DTMIN,
    dt0: float | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    on_max_steps: str = "raise",
    observables: tuple[str, ...] = (),
    state0=None,
    progress: bool = False,
    noise=None,
    key=None,
    seeds: int | None = None,
) -> Trajectory:
    """Integrate the gradient flow ``d state/dt = −∇L`` of ``problem`` (THEORY 3.1–3.3).

    Args:
        problem: the :class:`Problem` (network, data, λ, normalization).
        t1, t0: the time interval, in flow time (SGD step ``j`` is ``t = η j``).
        save_every, ts: the save grid (see :func:`save_times`); observables are computed at
            these times by :func:`gradflow._observables.observe` (Diffrax ``SaveAt(fn=…)``).
        solver: a name in :data:`SOLVERS` or any Diffrax solver. Adaptive solvers use a
            ``PIDController(rtol, atol)`` that also steps exactly to each save time;
            ``"euler"`` (gradient descent) needs a fixed ``dt0``.
        dtmin: the step floor. The ReLU flow's right-hand side jumps on switching surfaces and
            may slide along them (Filippov), where an adaptive controller would shrink its
            step without end. A step at the floor that fails the tolerance is accepted if it
            decreases the loss (counted in ``stats["num_floor_steps"]``), else refused and
            the floor halves (``stats["num_floor_rejections"]``); see
            :class:`gradflow._solver.FloorController`. ``None`` disables the floor.
        max_steps: hitting it raises a ``RuntimeError`` naming the time reached, unless
            ``on_max_steps="truncate"`` (then the partial trajectory is returned).
        observables: optional groups (e.g. ``"nc"``, ``"rank"``) added to the standard ones.
        state0: a starting state (default: the model's weights in the problem's form).
        noise, key, seeds: with ``noise=gf.SGDNoise(lr, batch_size, sampling)``, integrate the
            SDE of SGD (THEORY 3.4, Itô) instead: see :func:`gradflow._sde.sde` for its solvers
            (``"euler"``: fixed-step Euler–Maruyama, ``dt0`` default ``lr/4``;
            ``"euler-adaptive"``, which wants loose tolerances such as ``rtol=1e-2,
            atol=1e-4``). ``key`` is required; ``seeds=k`` runs ``k`` Brownian paths in one
            ``vmap`` (leading ``seed`` dimension). The result has ``kind="sde"``.

    Returns:
        A :class:`Trajectory` with ``loss``, ``data_loss``, ``train_acc``, ``test_acc``,
        ``rho``, ``rho_k``, ``balance_gap``, ``margin_min/mean/std``, and per normalization
        ``unit_norm_error`` (LM), ``v_norm`` (WN), ``rho_eq`` (lm-last), against ``t``.
    """
    if not isinstance(problem, Problem):
        raise bad_value("flow", "problem", type(problem).__name__, "pass a gf.Problem")
    # ---- the SDE of SGD (gradflow/_sde.py) -------------------------------------------------
    if noise is not None:
        from ._sde import sde

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
            rtol=rtol,
            atol=atol,
            dtmin=dtmin,
            max_steps=max_steps,
            on_max_steps=on_max_steps,
            observables=observables,
            state0=state0,
            progress=progress,
        )
    if key is not None or seeds is not None:
        raise bad_value(
            "flow",
            "seeds" if key is None else "key",
            seeds if key is None else key,
            "key and seeds apply to the SDE only: pass noise=gf.SGDNoise(...)",
        )
    # ---------------------------------------------------------------------------------------
    for name, value in (("t1", t1), ("rtol", rtol), ("atol", atol), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise bad_value("flow", name, value, "use a number > 0")
    if not t1 > t0:
        raise bad_value("flow", "t1", t1, f"use t1 > t0 = {t0}")
    if dtmin is not None and not dtmin > 0:
        raise bad_value("flow", "dtmin", dtmin, "use a number > 0 or None")
    check_choice("flow", "on_max_steps", on_max_steps, ("raise", "truncate"))
    for g in observables:
        check_choice("flow", "observables", g, tuple(GROUPS))
    grid = save_times(t0, t1, save_every, ts)
    inner = resolve_solver(solver)
    adaptive = isinstance(inner, diffrax.AbstractAdaptiveSolver)
    if adaptive:
        controller = diffrax.ClipStepSizeController(
            _controller(_traced(rtol), _traced(atol), _traced(dtmin)),
            step_ts=jnp.asarray(grid),
        )
    else:
        if dt0 is None:
            raise bad_value(
                "flow", "dt0", dt0, f"solver {type(inner).__name__} needs a fixed dt0 > 0"
            )
        controller = diffrax.ConstantStepSize()
        dtmin = None
    solver_obj = ProjectedSolver(inner, problem.normalization)
    y0 = problem.initial_state() if state0 is None else state0
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    out = _integrate(
        problem,
        y0,
        jnp.asarray(t0, float),
        jnp.asarray(t1, float),
        jnp.asarray(grid),
        solver_obj,
        controller,
        _traced(dt0),
        int(max_steps),
        tuple(observables),
        meter,
    )
    saved_t, obs, final_state, stats, result, t_end, n_floor, n_guard = jax.device_get(out)
    ok = bool(result == 0)
    keep = np.isfinite(saved_t)
    t_reached = float(t_end)
    stats = {
        "num_steps": int(stats["num_steps"]),
        "num_accepted_steps": int(stats["num_accepted_steps"]),
        "num_rejected_steps": int(stats["num_rejected_steps"]),
        "num_floor_steps": int(n_floor),
        "num_floor_rejections": int(n_guard),
        "max_steps": int(max_steps),
        "status": "success" if ok else _result_name(result),
        "t_reached": t_reached,
        "solver": type(inner).__name__,
        "rtol": rtol,
        "atol": atol,
        "dtmin": dtmin,
        "dt0": dt0,
    }
    if not ok and on_max_steps == "raise":
        raise RuntimeError(
            f"flow: stopped at t={t_reached:.6g} of t1={t1} after {stats['num_steps']} steps "
            f"({stats['status']}); raise max_steps (now {max_steps}), raise dtmin, or pass "
            "on_max_steps='truncate' to keep the partial trajectory"
        )
    config = {
        "dynamics": "flow",
        "problem": problem.describe(),
        "t0": t0,
        "t1": t1,
        "observables": list(observables),
    }
    config.update({k: stats[k] for k in ("solver", "rtol", "atol", "dtmin", "dt0")})
    return from_run(
        problem,
        "flow",
        saved_t[keep],
        {k: np.asarray(v)[keep] for k, v in obs.items()},
        final_state,
        groups=observables,
        stats=stats,
        config=config,
    )


def _traced(value):
    """A numerical setting as a NumPy float64 scalar, which ``eqx.filter_jit`` traces (a Python
    float would be static): one compilation serves every ``rtol``, ``atol``, ``dtmin`` and
    ``dt0`` of a sweep. ``None`` stays ``None``."""
    return None if value is None else np.float64(value)


def _controller(rtol, atol, dtmin):
    pid = diffrax.PIDController(rtol=rtol, atol=atol)
    return pid if dtmin is None else FloorController(pid, dtmin)


def _result_name(result) -> str:
    return (
        "max_steps_reached"
        if result == diffrax.RESULTS.max_steps_reached._value
        else (f"diffrax result code {int(result)}")
    )


@eqx.filter_jit
def _integrate(problem, y0, t0, t1, grid, solver, controller, dt0, max_steps, groups, meter):
    term = diffrax.ODETerm(lambda t, y, args: args.velocity(y))
    saveat = observation_saveat(grid, groups)
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
    saved_t, t_end = sol.ts
    obs, final = sol.ys
    final = jax.tree.map(lambda a: a[-1], final)
    cstate = sol.controller_state
    cstate = getattr(cstate, "inner_state", cstate)
    if isinstance(cstate, tuple) and len(cstate) == 4:
        n_forced, n_refused = cstate[2], cstate[3]
    else:
        n_forced = n_refused = jnp.zeros((), jnp.int32)
    return (saved_t, obs, final, sol.stats, sol.result._value, t_end[-1], n_forced, n_refused)
