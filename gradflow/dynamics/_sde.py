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

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._hessian import stable_learning_rate
from .._problem import Problem
from .._trajectory import Trajectory, from_run
from .._validate import bad_value
from ..diffrax_ext import HalfStepEuler, ItoProjectedSolver, SGDNoise, SGDTerm, StepBrownianPath
from . import _defaults
from ._core import (
    DiffraxDynamics,
    check_key,
    check_sde_horizon,
    padded_step_ts,
    run_stats,
    solve,
    traced,
)
from ._driver import Run
from ._failure import BLOW_UP
from ._simulate import simulate

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


def sde(
    problem: Problem,
    noise: SGDNoise,
    *,
    key,
    seeds: int | None = None,
    t1: float,
    solver=None,
    dt0: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    dtmin: float | None = None,
    **kwargs,
) -> Trajectory:
    """Integrate the SDE of SGD (module docstring): ``gf.simulate(problem, SDE(noise, solver,
    dt0), key=key, seeds=seeds, t1=t1, ...)``; what ``gf.flow(..., noise=noise, key=key)``
    calls. The other arguments are :func:`gradflow.simulate`'s (``max_steps`` default
    ``SDE_DEFAULTS``). The steps are fixed: ``rtol``, ``atol``, ``dtmin`` are refused (they
    served the removed adaptive solver, see the module docstring).

    Returns a :class:`Trajectory` of ``kind="sde"``; ``seeds=k`` runs ``k`` Brownian paths
    (keys ``split(key, k)``) in one ``vmap`` with a leading ``seed`` dimension.
    """
    if not isinstance(noise, SGDNoise):
        raise bad_value("flow", "noise", type(noise).__name__, "pass a gf.SGDNoise")
    if key is None:
        raise bad_value("flow", "key", key, "the SDE needs a PRNG key: pass key=jax.random.key(0)")
    check_key("flow", key)
    check_sde_horizon("flow", noise, kwargs.get("t0", 0.0), t1)
    tolerances = {"rtol": rtol, "atol": atol, "dtmin": dtmin}
    dyn = SDE(noise, solver, dt0, {k: v for k, v in tolerances.items() if v is not None})
    return simulate(problem, dyn, key=key, seeds=seeds, t1=t1, **kwargs)


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


class SDE(DiffraxDynamics):
    """The SDE of SGD (module docstring) as a dynamics.

    Args:
        noise: the :class:`gradflow.SGDNoise` (``lr``, ``batch_size``, ``sampling``).
        solver: ``"euler"`` (fixed-step Euler–Maruyama, the one choice: :data:`SDE_SOLVERS`)
            or ``diffrax.Euler()``; Stratonovich solvers are refused (module docstring).
        dt0: the fixed step (default ``lr/4``, rounded down so that it divides ``t1 − t0``).

    :meth:`prepare` finalizes it: the Itô projected solver, the noise's ``scale`` for the
    problem's ``N`` (an array: sweeping ``lr``, ``batch_size`` or λ does not recompile), the
    Brownian path from ``t0`` (:class:`StepBrownianPath` with fixed steps), and
    ``max_steps``, the bound on the steps of one piece.
    """

    noise: SGDNoise | None = None
    solver: object = None
    dt0: object = None
    tolerances: dict | None = None
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    scale: object = None
    t0: object = None
    t1: object = None
    tol: float | None = None
    max_steps: int = eqx.field(static=True, default=_defaults.SDE["max_steps"])
    where = "flow"

    def term(self, problem, key):
        return _sde_term(problem, key, self.scale, self.t0, self.t1, self.dt0, self.tol)

    def prepare(self, problem, saves, *, key, seeds, max_steps, state0) -> Run:
        """The finalized SDE (solver, step, noise scale, Brownian path) and its :class:`Run`:
        one ``vmap`` over ``split(key, seeds or 1)``."""
        noise, t0, t1, grid = self.noise, saves.t0, saves.t1, saves.grid
        if not isinstance(noise, SGDNoise):
            raise bad_value("flow", "noise", type(noise).__name__, "pass a gf.SGDNoise")
        if key is None:
            hint = "the SDE needs a PRNG key: pass key=jax.random.key(0)"
            raise bad_value("flow", "key", key, hint)
        max_steps = _defaults.SDE["max_steps"] if max_steps is None else int(max_steps)
        inner, adaptive = resolve_sde_solver(self.solver, problem.parametrization)
        controller, dt0, tol, tols = self._steps(adaptive, grid, t0, t1, max_steps)
        scale = noise.scale(problem.n_train)
        t0a, t1a, dt0a = (jnp.asarray(v, float) for v in (t0, t1, dt0))
        dyn = SDE(None, inner, dt0a, None, controller, jnp.asarray(scale, float), t0a, t1a, tol)
        dyn = dataclasses.replace(dyn, max_steps=max_steps)
        keys = jax.random.split(key, 1 if seeds is None else seeds)
        host = dict(noise=noise, seeds=seeds, adaptive=adaptive, dt0=float(dt0), scale=scale)
        host.update(solver=self.solver, t0=t0, t1=t1, max_steps=max_steps, tolerances=tols)
        host.update(n=problem.n_train, unsegmented=_unsegmented(saves.save_every, dt0))
        bounds = _segment_bounds(grid, t0, t1, dt0, adaptive)
        whole = None
        if bounds is None:  # save times closer than a step: one solve (module docstring)
            args = (t0a, t1a, jnp.asarray(grid), dyn.scale, keys, inner, controller, dt0a, tol)
            whole, bounds = (_integrate_core, (*args, max_steps)), (grid[:-1], grid[1:])
        a, b = bounds
        fingerprint, describe = _identity(problem, noise, dyn, saves, len(keys), float(dt0))
        xs = (a, b, grid[1:])
        start = (grid, t0a, np.float64(b[0]), keys, True, max_steps)
        return Run(dyn, xs, *start, fingerprint, describe, host, "flow", whole)

    def _steps(self, adaptive, grid, t0, t1, max_steps):
        """``(controller, dt0, tol, tolerances)``: fixed steps that divide the span, or the
        private adaptive solver's PID controller (module docstring)."""
        dt0 = self.dt0
        if dt0 is None:
            dt0 = self.noise.lr / _defaults.SDE["steps_per_lr"]
        if not (isinstance(dt0, (int, float)) and not isinstance(dt0, bool) and dt0 > 0):
            raise bad_value("flow", "dt0", dt0, "use a number > 0")
        given = dict(self.tolerances or {})
        if given and not adaptive:
            name = next(iter(given))
            hint = "the SDE takes fixed steps (solver 'euler'): set dt0 (default lr/4) instead"
            raise bad_value("flow", name, given[name], hint)
        if adaptive:
            tols = {**_ADAPTIVE_TOLERANCES, **given}
            pid = diffrax.PIDController(
                rtol=traced(tols["rtol"]),
                atol=traced(tols["atol"]),
                dtmin=traced(tols["dtmin"]),
                force_dtmin=True,
            )
            ctrl = diffrax.ClipStepSizeController(pid, step_ts=padded_step_ts(grid))
            return ctrl, dt0, 0.5 * tols["dtmin"], tols
        num = int(np.ceil((t1 - t0) / dt0 - 1e-9))
        if num > max_steps:
            raise bad_value("flow", "dt0", dt0, f"{num} steps exceed max_steps={max_steps}")
        # equal steps: StepBrownianPath keys by step index
        return diffrax.ConstantStepSize(), (t1 - t0) / num, None, {}

    def finish(self, problem, run, out: dict) -> Trajectory:
        """The SDE's :class:`Trajectory` (per-seed stats; the first seed's only without
        ``seeds``)."""
        h = run.host
        raw, seeds = self.raw(out, seeded=True), h["seeds"]
        if seeds is None:
            raw = _first_seed(raw)
        obs = {k: np.asarray(v) for k, v in raw["obs"].items()}
        stats = _stats(raw, obs, h)
        t_grid = np.asarray(raw["t"])[0] if seeds else np.asarray(raw["t"])
        keep = np.isfinite(t_grid)
        config = {
            "dynamics": "sde",
            "problem": problem.describe(),
            "noise": h["noise"].describe(),
            "t0": h["t0"],
            "t1": h["t1"],
            "seeds": seeds,
            "observables": list(run.groups),
        }
        config.update({k: stats[k] for k in ("solver", "adaptive", "dt0", "rtol", "atol", "dtmin")})
        return from_run(
            problem,
            "sde",
            t_grid[keep],
            {k: (v[:, keep] if seeds else v[keep]) for k, v in obs.items()},
            raw["final"],
            groups=run.groups,
            stats=stats,
            config=config,
            seeds=seeds,
        )

    def failure(self, problem, run, traj) -> str:
        h, status, n = run.host, traj.stats["status"], len(run.keys)
        if status == "blew_up":
            return (
                f"flow (SDE): the loss or ρ blew up (finite, beyond {BLOW_UP:.0e} times its start)"
            )
        if status != "diverged":
            return (
                f"flow (SDE): {status}: max_steps={h['max_steps']} reached before t1={h['t1']} in "
                f"some of {n} seeds; raise max_steps or dtmin, or pass throw=False to keep the "
                "partial trajectory"
            )
        loss = np.asarray(traj["loss"]).reshape(-1, len(traj.t))
        bad_t = traj.t[np.argmax(~np.isfinite(loss).any(0))] if loss.size else h["t0"]
        eta_max, lam = stable_learning_rate(problem)
        return (
            f"flow (SDE): the loss stopped being finite by t={bad_t:.6g} in "
            f"{traj.stats['num_diverged_seeds']} of {n} seeds (dt0={h['dt0']:.4g}, "
            f"lr={h['noise'].lr}). The stable step is about 2/λ_max = {eta_max:.4g} (λ_max = "
            f"{lam:.4g} at the start); lower dt0, or pass throw=False to keep the partial "
            "trajectory"
        )


def _unsegmented(save_every, dt0) -> tuple:
    """The argument, value and hint of a checkpoint refused for want of segments."""
    hint = f"checkpoints of the fixed-step SDE need save times at least dt0={dt0:.4g} apart"
    return "save_every", save_every, hint


def _identity(problem, noise, dyn, saves, seeds: int, dt0: float) -> tuple:
    """The fingerprint parts and the description of an SDE run (:mod:`._checkpoint`)."""
    t0, t1, steps = saves.t0, saves.t1, dyn.max_steps
    ctrl = {"t0": t0, "t1": t1, "solver": repr(dyn.solver)}
    ctrl["controller"] = repr(dyn.stepsize_controller)
    settings = {"dt0": dt0, "tol": dyn.tol, "max_steps": steps}
    fingerprint = ("sde", problem.describe(), noise.describe(), ctrl, settings, saves.grid)
    describe = {"run": f"SDE of t1={t1}, lr={noise.lr}, {seeds} seed(s)"}
    describe.update(problem=problem.describe(), noise=noise.describe(), t0=t0, t1=t1)
    describe.update(dt0=dt0, max_steps=steps)
    return fingerprint, describe


def _stats(raw, obs, h) -> dict:
    """The SDE's ``stats``: per-seed step counts, diverged seeds, the step and noise."""
    seeds, adaptive, tols, solver = h["seeds"], h["adaptive"], h["tolerances"], h["solver"]
    run = run_stats(raw, seeded=seeds is not None)
    loss = obs["loss"].reshape(-1, obs["loss"].shape[-1])
    saved = np.isfinite(np.asarray(raw["t"]).reshape(loss.shape))
    finite = np.all(np.isfinite(loss) | ~saved, 1)
    name = (
        solver
        if isinstance(solver, str)
        else ("euler" if solver is None else type(solver).__name__)
    )
    return {
        **{k: run[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")},
        "num_diverged_seeds": int(np.sum(~finite)),
        "status": run["status"],
        "t_reached": run["t_reached"],
        "solver": name,
        "adaptive": adaptive,
        "dt0": h["dt0"],
        **{k: tols.get(k) if adaptive else None for k in ("rtol", "atol", "dtmin")},
        "noise_scale": h["scale"],
        "noise_coefficient": h["noise"].coefficient(h["n"]),
    }


def _integrate_core(
    problem, y0, t0, t1, grid, scale, keys, solver, controller, dt0, tol, max_steps, groups, meter
):
    """The whole SDE as one ``diffeqsolve`` per key (only where its save times are closer than
    its step, so that it cannot go in segments)."""

    def one(key):
        term = _sde_term(problem, key, scale, t0, t1, dt0, tol)
        return solve(
            term, solver, t0, t1, dt0, y0, problem, grid, controller, max_steps, groups, meter
        )

    return jax.vmap(one)(keys)
