"""The SDE of SGD (THEORY 3.4), integrated with Diffrax: ``gf.flow(..., noise=SGDNoise(...))``.

    d state = v(state) dt + G(state) dβ,     G Gᵀ = η P Σ Pᵀ     (Itô)

with ``v`` the flow's velocity and ``G`` the matrix-free operator of :mod:`gradflow._noise`.

**Itô, not Stratonovich.** The stochastic modified equation of SGD (Li, Tai & E 2017) is an Itô
SDE: its Euler–Maruyama discretization with ``dt = η`` has SGD's one-step mean and covariance.
The diffusion depends on the state, so a Stratonovich solver (Heun, EulerHeun, Midpoint, SPaRK,
…) would converge to a different process, whose drift differs from the Itô one by
``½ Σ_n (∂G_n) G_n`` — an ``O(η)`` term, the same order as the effect being modelled. Only the
Itô schemes of :data:`SDE_SOLVERS` are allowed; a Stratonovich solver raises ``ValueError``.
No Itô–Stratonovich correction is attempted (it would need ``N`` Jacobian-vector products
per step).

* ``"euler"`` (the one public choice): fixed-step Euler–Maruyama, step ``dt0`` (default
  ``η/4``, rounded down so that it divides ``t1 − t0``), increments from
  :class:`StepBrownianPath`. Its weak error is ``O(dt)``; the SDE itself is ``O(η)`` from SGD.
  On linear regression its stationary covariance solves ``H C + C H − dt H C H = η E Σ``:
  ``dt·λ_max/2`` relative to the SDE's (0.3 % at the default step in the test).

**No adaptive solver.** ``"euler-adaptive"`` (Euler–Maruyama with a step-doubling error
estimate and a PID controller on a ``VirtualBrownianTree``) was removed from the public
choices: SGD's noise is not commutative, and Diffrax's conditions for an adaptive SDE solve
(an error estimate that is not Euler's; commutative noise or revisited rejected steps) are not
met. Measured (``benchmarks/sde_stationary.py``, benchmarks/README.md "SDE solvers"): at its
default tolerances its stationary covariance on linear regression was 10 % too large (z ≈ 38
on 2,048 paths), with or without ``ClipStepSizeController(store_rejected_steps=100)``: its
strong error estimate lets the step grow to ~10 η, where the weak error of the covariance is
``O(dt)``. It ran 6–11× the wall time of fixed-step Euler at the default step (within 1 %),
and fixed-step Euler reaches the adaptive's 10 % with 209 gradients per path against its 542.
The code path is kept private for that benchmark (it is reached only by adding
``"euler-adaptive"`` to :data:`SDE_SOLVERS`), with its tolerances in
:data:`_ADAPTIVE_TOLERANCES`.

**LM flows: projection after every step.** As the ODE, the LM directions are retracted onto
their unit spheres after each step (``ProjectedSolver``), and the noise is projected on the
tangent space like the drift. This is not a neutral choice for an SDE: with a tangent
increment ``δ``, ``||V + δ||² = 1 + ||δ||²``, so the retraction ``(V + δ)/||V + δ||`` adds
``−½ ||δ||² V`` per step, i.e. the drift ``−½ η tr(P_V Σ P_Vᵀ) V`` (per layer, ``P_V`` the
tangent map including lm-last's ``1/ρ²``) in the limit ``dt → 0`` — independent of ``dt``.
That is precisely the Itô correction that keeps an Itô diffusion on the sphere (without it
``d||V||² = tr(P Σ Pᵀ) η dt > 0``), and it is also what SGD followed by renormalization does
(``gf.sgd``: ``V ← (V − η P g_S)/||·||`` has the same ``−½ η² E||P(g_S − ḡ)||² V`` per step). So
the projected Euler–Maruyama scheme converges to the sphere-valued Itô SDE whose drift
carries the centripetal term that projected SGD has, and the two agree to ``O(η)``. (The
deterministic part of the retraction, ``−½ ||v||² dt V``, vanishes as ``dt → 0``; in SGD it
is part of the ``O(η)`` discretization gap to any first-order SDE.) WN is not projected:
``||v||`` grows by ``η tr(Σ_v) dt`` per unit time, the continuous counterpart of SGD's
``||v_{j+1}||² = ||v_j||² + η² ||∇_v L_S||²`` (THEORY 3.3).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._hessian import stable_learning_rate
from .._problem import Problem
from .._progress import solve_meter, solve_progress
from .._trajectory import Trajectory, from_run
from .._validate import bad_value
from ..diffrax_ext import HalfStepEuler, ItoProjectedSolver, SGDNoise, SGDTerm, StepBrownianPath
from . import _checkpoint, _defaults, _driver
from ._batch import Plan
from ._core import (
    assembled,
    check_run_arguments,
    run_stats,
    save_times,
    segment,
    solve,
    start,
    traced,
)
from ._cost import timed
from ._driver import AbstractDynamics
from ._failure import BLOW_UP, blown_up, raise_or_return

#: The public SDE solvers (``gf.flow(noise=…, solver=…)``, the scenario's ``sde.solver``).
SDE_SOLVERS = ("euler",)
#: The removed adaptive solver and the tolerances it used (benchmarks/sde_stationary.py only).
_ADAPTIVE = "euler-adaptive"
_ADAPTIVE_TOLERANCES = {"rtol": 1e-2, "atol": 1e-4, "dtmin": 1e-3}
_REMOVED = (
    "use 'euler' (fixed-step Euler–Maruyama; lower dt0, default lr/4, for accuracy): "
    "'euler-adaptive' was removed, its stationary covariance on linear regression was ~10% too "
    "large and it ran 6-11x slower (benchmarks/README.md, 'SDE solvers')"
)


def resolve_sde_solver(solver, parametrization):
    """``(solver, adaptive)`` for a name in :data:`SDE_SOLVERS` (or ``diffrax.Euler()``)."""
    if solver is None:
        solver = _defaults.SDE["solver"]
    if isinstance(solver, str):
        if solver == _ADAPTIVE and solver not in SDE_SOLVERS:
            raise bad_value("flow", "solver", solver, _REMOVED)
        if solver not in SDE_SOLVERS:
            hint = (
                f" ({solver!r} converges to the Stratonovich SDE, whose drift differs from the "
                "Itô SDE of SGD by ½ Σ_n (∂G_n) G_n = O(η))"
                if solver in ("heun", "midpoint", "ralston")
                else ""
            )
            raise bad_value(
                "flow",
                "solver",
                solver,
                "with noise use one of " + ", ".join(map(repr, SDE_SOLVERS)) + hint,
            )
        if solver == "euler":
            return ItoProjectedSolver(diffrax.Euler(), parametrization), False
        return HalfStepEuler(ItoProjectedSolver(diffrax.Euler(), parametrization)), True
    if isinstance(solver, diffrax.AbstractStratonovichSolver):
        raise bad_value(
            "flow",
            "solver",
            type(solver).__name__,
            "it converges to the Stratonovich SDE, whose drift differs from the Itô SDE of "
            "SGD by ½ Σ_n (∂G_n) G_n = O(η); use 'euler'",
        )
    if type(solver) is not diffrax.Euler:
        raise bad_value(
            "flow",
            "solver",
            type(solver).__name__,
            "with noise use 'euler' or diffrax.Euler() (drift and diffusion "
            "are one fused term, so solvers that need MultiTerm(ODETerm, ControlTerm), such as "
            "ItoMilstein, do not apply)",
        )
    return ItoProjectedSolver(solver, parametrization), False


@timed
def sde(
    problem: Problem,
    noise: SGDNoise,
    *,
    key,
    seeds: int | None = None,
    t1: float,
    t0: float = 0.0,
    save_every: float | None = None,
    ts=None,
    solver=None,
    dt0: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtmin: float | None = None,
    max_steps: int = _defaults.SDE["max_steps"],
    on_max_steps: str = "raise",
    observables: tuple[str, ...] = (),
    state0=None,
    progress: bool | str = False,
    checkpoint=None,
    checkpoint_every: int | None = None,
    checkpoint_minutes: float | None = None,
    resume_from=None,
    _plan: bool = False,
) -> Trajectory:
    """Integrate the SDE of SGD; called by ``gf.flow(..., noise=SGDNoise(...), key=key)``.

    Arguments are those of ``gf.flow`` (same save grid, observables through the same
    ``observe`` function as Diffrax ``SaveAt(fn=…)``), plus ``noise``, ``key`` and ``seeds``:
    ``seeds=k`` integrates ``k`` independent Brownian paths (keys ``split(key, k)``) in one
    compiled ``vmap`` and adds a leading ``seed`` dimension. ``lr``, ``batch_size`` and λ enter
    as arrays, so changing them does not recompile (changing ``dt0`` or ``N`` does). The steps
    are fixed: ``rtol``, ``atol``, ``dtmin`` are refused (they served the removed adaptive
    solver, see the module docstring).

    Returns a :class:`Trajectory` of ``kind="sde"``; ``stats`` holds per-seed step counts and
    ``status`` (``"success"``, ``"max_steps"`` or ``"diverged"``: a non-finite state,
    which raises unless ``on_max_steps="truncate"``).
    """
    if not isinstance(noise, SGDNoise):
        raise bad_value("flow", "noise", type(noise).__name__, "pass a gf.SGDNoise")
    if key is None:
        raise bad_value("flow", "key", key, "the SDE needs a PRNG key: pass key=jax.random.key(0)")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise bad_value("flow", "seeds", seeds, "use a positive integer or None")
    check_run_arguments(
        "flow",
        t0=t0,
        t1=t1,
        max_steps=max_steps,
        on_max_steps=on_max_steps,
        observables=observables,
        dt0=dt0,
    )
    n = problem.n_train
    scale = noise.scale(n)
    inner, adaptive = resolve_sde_solver(solver, problem.parametrization)
    grid = save_times(t0, t1, save_every, ts)
    span = t1 - t0
    if dt0 is None:
        dt0 = noise.lr / _defaults.SDE["steps_per_lr"]
    if not (isinstance(dt0, (int, float)) and not isinstance(dt0, bool) and dt0 > 0):
        raise bad_value("flow", "dt0", dt0, "use a number > 0")
    tolerances = {"rtol": rtol, "atol": atol, "dtmin": dtmin}
    for name, value in tolerances.items():
        if value is not None and not adaptive:
            raise bad_value(
                "flow",
                name,
                value,
                "the SDE takes fixed steps (solver 'euler'): set dt0 (default lr/4) instead",
            )
    if adaptive:
        rtol, atol, dtmin = (
            _ADAPTIVE_TOLERANCES[k] if v is None else v for k, v in tolerances.items()
        )
        controller = diffrax.ClipStepSizeController(
            diffrax.PIDController(
                rtol=traced(rtol), atol=traced(atol), dtmin=traced(dtmin), force_dtmin=True
            ),
            step_ts=jnp.asarray(grid),
        )
        tol = 0.5 * dtmin
    else:
        num = int(np.ceil(span / dt0 - 1e-9))
        if num > max_steps:
            raise bad_value("flow", "dt0", dt0, f"{num} steps exceed max_steps={max_steps}")
        dt0, tol = span / num, None  # equal steps: StepBrownianPath keys by step index
        controller = diffrax.ConstantStepSize()
    keys = jax.random.split(key, 1 if seeds is None else seeds)
    y0 = problem.initial_state() if state0 is None else state0
    meter = solve_meter(progress)
    pol = _checkpoint.policy("flow", checkpoint, checkpoint_every, checkpoint_minutes)
    common = (jnp.asarray(scale, float), keys, inner, controller, jnp.asarray(dt0, float), tol)
    t0a, t1a = jnp.asarray(t0, float), jnp.asarray(t1, float)
    integrate_args = (
        problem,
        y0,
        t0a,
        t1a,
        jnp.asarray(grid),
        *common[:2],
        inner,
        controller,
        common[4],
        tol,
        int(max_steps),
        tuple(observables),
        meter,
    )

    def finish(raw, signum=None, index=0) -> Trajectory:
        """The :class:`Trajectory` (or the error) of the run from its host output."""
        if seeds is None:
            raw = _first_seed(raw)
        switch = "return" if signum is not None or on_max_steps != "raise" else "raise"
        obs = {k: np.asarray(v) for k, v in raw["obs"].items()}
        final = raw["final"]
        run = run_stats(raw, seeded=seeds is not None)
        loss = obs["loss"].reshape(-1, obs["loss"].shape[-1])
        finite = np.all(
            np.isfinite(loss) | ~np.isfinite(np.asarray(raw["t"]).reshape(loss.shape)), 1
        )
        status = run["status"]
        t_grid = np.asarray(raw["t"])[0] if seeds else np.asarray(raw["t"])
        keep = np.isfinite(t_grid)
        stats = {
            **{k: run[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")},
            "num_diverged_seeds": int(np.sum(~finite)),
            "status": status,
            "t_reached": run["t_reached"],
            "solver": solver
            if isinstance(solver, str)
            else ("euler" if solver is None else type(solver).__name__),
            "adaptive": adaptive,
            "dt0": float(dt0),
            "rtol": rtol if adaptive else None,
            "atol": atol if adaptive else None,
            "dtmin": dtmin if adaptive else None,
            "noise_scale": scale,
            "noise_coefficient": noise.coefficient(n),
        }
        if status == "diverged":
            bad_t = t_grid[np.argmax(~np.isfinite(loss).any(0))]
            eta_max, lam = stable_learning_rate(problem)
            message = (
                f"flow (SDE): the loss stopped being finite by t={bad_t:.6g} in "
                f"{int(np.sum(~finite))} of {len(keys)} seeds (dt0={dt0:.4g}, lr={noise.lr}). The "
                f"stable step is about 2/λ_max = {eta_max:.4g} (λ_max = {lam:.4g} at the start); "
                "lower dt0, or pass on_max_steps='truncate' to keep the partial trajectory"
            )
        else:
            message = (
                f"flow (SDE): {status}: max_steps={max_steps} reached before t1={t1} in some of "
                f"{len(keys)} seeds; raise max_steps or dtmin, or pass on_max_steps='truncate' to "
                "keep the partial trajectory"
            )
        config = {
            "dynamics": "sde",
            "problem": problem.describe(),
            "noise": noise.describe(),
            "t0": t0,
            "t1": t1,
            "seeds": seeds,
            "observables": list(observables),
        }
        config.update({k: stats[k] for k in ("solver", "adaptive", "dt0", "rtol", "atol", "dtmin")})
        traj = from_run(
            problem,
            "sde",
            t_grid[keep],
            {k: (v[:, keep] if seeds else v[keep]) for k, v in obs.items()},
            final,
            groups=observables,
            stats=stats,
            config=config,
            seeds=seeds,
        )
        if signum is not None:
            raise _checkpoint.interrupted("flow (SDE)", traj, signum, pol, grid[index])
        if status == "success" and blown_up(traj):
            traj.stats["status"] = "blew_up"
            message = (
                f"flow (SDE): the loss or ρ blew up (finite, beyond {BLOW_UP:.0e} times its start)"
            )
        return raise_or_return(traj, switch, message)

    if _plan:  # a sweep batches the whole run (gradflow.dynamics.run_plans)
        return Plan(_integrate_core, integrate_args, finish)
    bounds = _segment_bounds(grid, t0, t1, dt0, adaptive)
    signum, index = None, 0
    if bounds is None:
        if pol.path is not None or resume_from is not None:
            raise bad_value(
                "flow",
                "save_every",
                save_every,
                f"checkpoints of the fixed-step SDE need save times at least dt0={dt0:.4g} apart",
            )
        with solve_progress(progress, "flow", t0, t1):
            out = _integrate(*integrate_args)
            raw = jax.device_get(out)  # inside: the meter reports while it computes
    else:
        a, b = bounds
        groups = tuple(observables)
        fp = _checkpoint.fingerprint(
            "sde",
            problem.describe(),
            noise.describe(),
            {"t0": t0, "t1": t1, "solver": repr(inner), "controller": repr(controller)},
            {"dt0": float(dt0), "tol": tol, "max_steps": int(max_steps), "obs": list(groups)},
            grid,
            keys,
            *_checkpoint.flatten(y0),
        )
        describe = {
            "run": f"SDE of t1={t1}, lr={noise.lr}, {len(keys)} seed(s)",
            "problem": problem.describe(),
            "noise": noise.describe(),
            "t0": t0,
            "t1": t1,
            "dt0": float(dt0),
            "max_steps": int(max_steps),
        }
        ckpt = _checkpoint.resolve("flow", resume_from, fp, describe)
        dyn = SDE(inner, controller, *common[:1], t0a, t1a, common[4], tol, int(max_steps))
        carry, obs0 = _driver.first_record(
            dyn, problem, y0, keys, t0a, np.float64(b[0]), groups, True
        )
        carry, obs, index, info, signum = _driver.run(
            dyn,
            problem,
            where="flow",
            keys=keys,
            xs=(a, b, grid[1:]),
            carry=carry,
            obs0=obs0,
            seeded=True,
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
        raw = assembled(carry, obs, info, signum, seeded=True)
    return finish(raw, signum, index)


def _first_seed(raw: dict) -> dict:
    out = dict(raw)
    for k in ("t", "obs", "final", "stats", "success", "max_steps_reached", "t_end"):
        out[k] = jax.tree.map(lambda a: a[0], raw[k])
    for k in ("num_floor_steps", "num_floor_rejections"):
        out[k] = np.ravel(raw[k])[0]
    return out


def _segment_bounds(grid, t0, t1, dt0, adaptive):
    """Segment ``i`` runs ``[a_i, b_i]`` and saves at ``grid[i + 1]``: the save times for an
    adaptive run (its steps land on them); for fixed steps, the first step boundary at or
    after each save time (``None`` where two save times lie within one step)."""
    if adaptive:
        return grid[:-1], grid[1:]
    m = np.ceil((grid - t0) / dt0 - 1e-9)
    edges = np.minimum(t0 + m * dt0, t1)
    edges = np.where(np.abs(edges - grid) <= 1e-9 * dt0, grid, edges)
    edges[0], edges[-1] = t0, t1
    a, b, s = edges[:-1], edges[1:], grid[1:]
    if not (np.all(a < b) and np.all(a <= s) and np.all(s <= b)):
        return None
    return a, b


def _sde_term(problem, key, scale, t0, t1, dt0, tol):
    n = problem.x_train.shape[0]
    if tol is None:
        path = StepBrownianPath((n,), key, t0, dt0)
    else:
        path = diffrax.VirtualBrownianTree(t0, t1, tol, (n,), key)
    return SGDTerm(scale, path)


class SDE(AbstractDynamics):
    """The SDE of SGD (module docstring) as a dynamics: ``solver`` (Itô, projected) stepped by
    ``stepsize_controller`` on the term ``v dt + G dβ`` whose noise has ``scale``
    (:meth:`SGDNoise.scale`) and Brownian path from ``t0`` (fixed steps ``dt0``:
    :class:`StepBrownianPath`; ``tol``: a ``VirtualBrownianTree`` to ``t1``); ``max_steps``
    bounds the steps of one piece. ``init`` / ``advance`` are :func:`._core.start` /
    :func:`._core.segment` on that term, one Brownian path per key; :func:`sde` builds it."""

    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    scale: object
    t0: object
    t1: object
    dt0: object
    tol: float | None = None
    max_steps: int = eqx.field(static=True, default=_defaults.SDE["max_steps"])

    def _term(self, problem, key):
        return _sde_term(problem, key, self.scale, self.t0, self.t1, self.dt0, self.tol)

    def init(self, problem, state0, key, t0, t_next, groups):
        term, ctrl = self._term(problem, key), self.stepsize_controller
        return start(term, self.solver, ctrl, t0, t_next, self.dt0, state0, problem, groups)

    def advance(self, problem, carry, key, x, allowed, groups):
        a, b, s = x
        term, ctrl, steps = self._term(problem, key), self.stepsize_controller, self.max_steps
        return segment(
            term, self.solver, ctrl, a[0], b[0], s, carry, problem, steps, groups, allowed
        )


def _integrate_core(
    problem, y0, t0, t1, grid, scale, keys, solver, controller, dt0, tol, max_steps, groups, meter
):
    n = problem.x_train.shape[0]

    def one(key):
        if tol is None:
            path = StepBrownianPath((n,), key, t0, dt0)
        else:
            path = diffrax.VirtualBrownianTree(t0, t1, tol, (n,), key)
        term = SGDTerm(scale, path)
        return solve(
            term, solver, t0, t1, dt0, y0, problem, grid, controller, max_steps, groups, meter
        )

    return jax.vmap(one)(keys)


_integrate = eqx.filter_jit(_integrate_core)
