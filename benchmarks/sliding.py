"""The sliding (Filippov) flow against today's default, Tsit5 and GD on long ReLU horizons.

Run::

    python benchmarks/sliding.py [--n 256] [--widths 64] [--lam 1e-2] [--norm none]
        [--t1 1000] [--out benchmarks/results/sliding_<norm>_<lam>.json]

Problem: a bias-free ReLU MLP 64-``widths``-1 (He initialization, seed 0) on ``n`` scikit-learn
digits of classes 0/1 (±1 targets), weight decay ``lam``, normalization ``none`` (plain + decay)
or ``lm-last``, to ``t1`` (``λ·t1 ≥ 10``).

Peers, every adaptive one at the library's default controller (``PIDController(rtol=1e-4,
atol=1e-6)`` inside ``FloorController(dtmin=1e-4)``) and wrapped in the parametrization's
``ProjectedSolver``, exactly as ``gf.flow`` builds them: ``heun`` (today's default), ``tsit5``,
``slide-heun`` and ``slide-rkc2`` (:class:`gradflow.diffrax_ext.SlidingSolver` around Heun,
RKC2), and ``gd`` (Euler at a fixed step, the largest of ``c · 2/λ_max``, ``c ∈ {0.95, 0.8,
0.6, 0.4}``, whose run ends finite; ``λ_max`` by power iteration at the start and at the
reference's end).

Reference: the sliding flow (Heun inside) at ``rtol = atol = --ref-rtol`` (1e-8); its
self-consistency is its distance to the same at ten times that tolerance (reported). Errors at
``t1`` (relative): data loss, ``ρ`` (product of the layer norms), the smallest normalized
margin ``min_n y_n f(V; x_n)``, and the weights. Work: gradient (velocity) evaluations,
rejected steps included: Heun 2 per step (also inside the sliding solver: Heun is not FSAL, a
reset costs nothing), Tsit5 6 per step + 1, GD 1 per step; RKC2 counts the evaluations of its
accepted steps and its rejected steps are charged the accepted mean.
Each sliding evaluation also costs per-sample passes for the entries of ``S`` and a Gram solve:
the ``projection share`` is the time of one sliding field evaluation at the end state minus one
gradient, over the former; the ``event share`` the time of the per-step forward pass and
selection over the run's time per step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import gradflow as gf  # noqa: E402
from gradflow.diffrax_ext import (  # noqa: E402
    RKC2,
    FloorController,
    ProjectedSolver,
    SlidingSolver,
    sliding_record,
    sliding_stats,
    sliding_velocity,
)
from gradflow.models import MLP  # noqa: E402


def _problem(n, widths, lam, norm):
    data = gf.data.load("digits", classes=(0, 1), n_train=n, seed=0)
    net = MLP(64, tuple(widths), 1, key=jax.random.PRNGKey(0))
    return gf.Problem(net, data, weight_decay=lam, normalization=norm)


def _term():
    return diffrax.ODETerm(lambda t, y, args: args.velocity(y))


def _controller(rtol, atol, dtmin=1e-4):
    pid = diffrax.PIDController(rtol=rtol, atol=atol)
    return pid if dtmin is None else FloorController(pid, dtmin)


def _run(problem, solver, t1, controller, dt0=1e-3, max_steps=5_000_000):
    solver = ProjectedSolver(solver, problem.parametrization)

    @eqx.filter_jit
    def go(y0, t1):
        sol = diffrax.diffeqsolve(
            _term(),
            solver,
            0.0,
            t1,
            dt0,
            y0,
            args=problem,
            stepsize_controller=controller,
            saveat=diffrax.SaveAt(t1=True, solver_state=True),
            max_steps=max_steps,
            throw=False,
        )
        return jax.tree.map(lambda a: a[-1], sol.ys), sol.stats, sol.solver_state, sol.result

    y0 = problem.initial_state()
    jax.block_until_ready(go(y0, 1e-3 if dt0 is None else 2 * dt0))  # compile
    start = time.perf_counter()
    y, stats, state, result = jax.block_until_ready(go(y0, t1))
    wall = time.perf_counter() - start
    out = {k: int(v) for k, v in stats.items() if k.startswith("num")}
    out["wall_s"] = wall
    out["ok"] = bool(result == diffrax.RESULTS.successful)
    record = sliding_record(state)
    if record is not None:
        out.update(sliding_stats(record))
    rkc = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: hasattr(s, "num_evaluations"))
        if hasattr(s, "num_evaluations")
    ]
    if rkc:
        out["rkc2_evaluations_accepted"] = int(rkc[0].num_evaluations)
    return y, out


def _evaluations(name, out):
    steps = out["num_steps"]
    if name in ("heun", "slide-heun"):
        return 2 * steps  # Heun is not FSAL: a reset costs nothing extra
    if name == "tsit5":
        return 6 * steps + 1
    if name == "gd":
        return steps
    if name == "slide-rkc2":  # accepted steps counted; rejected charged the accepted mean
        acc = out["rkc2_evaluations_accepted"]
        mean = acc / max(out["num_accepted_steps"], 1)
        return int(acc + out["num_rejected_steps"] * mean)
    raise KeyError(name)


def _observables(problem, y):
    weights = problem.to_weights(y)
    norms = [float(jnp.linalg.norm(w)) for w in weights]
    rho = float(np.prod(norms))
    v = tuple(w / n for w, n in zip(weights, norms))
    f = problem.model.apply_batch(v, problem.x_train)
    margins = np.asarray(problem.y_train * f).min()
    flat = np.concatenate([np.ravel(np.asarray(w)) for w in weights])
    return {
        "data_loss": float(problem.data_loss(y)),
        "rho": rho,
        "margin_min": float(margins),
        "weights": flat,
    }


def _errors(obs, ref):
    out = {}
    for k in ("data_loss", "rho", "margin_min"):
        out[k] = abs(obs[k] - ref[k]) / max(abs(ref[k]), 1e-300)
    out["weights"] = float(
        np.linalg.norm(obs["weights"] - ref["weights"]) / np.linalg.norm(ref["weights"])
    )
    return out


def _lambda_max(problem, y, iterations=60):
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.PRNGKey(1), a.shape, a.dtype), y)

    @jax.jit
    def step(v):
        jv = jax.jvp(problem.velocity, (y,), (v,))[1]
        n = jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree.leaves(jv)))
        return jax.tree.map(lambda a: a / n, jv), n

    for _ in range(iterations):
        v, n = step(v)
    return float(n)


def _shares(problem, y, solver):
    """Seconds of one gradient, one sliding evaluation (S = the entries within the solver's
    surface tolerance at ``y``) and one event pass (the pre-activations of every sample and
    the selection of S), each the median of 30 jitted calls."""
    state = solver.init(_term(), 0.0, 1.0, y, problem)
    model, x = problem.model, problem.x_train

    def events(y):
        z = jax.vmap(
            lambda xn: jnp.concatenate(
                [jnp.ravel(a) for a in model.pre_activations(problem.network_weights(y), xn)]
            )
        )(x)
        return jax.lax.top_k(-jnp.abs(jnp.ravel(z)), min(solver.capacity, z.size))

    def sliding(y):
        v0 = problem.velocity(y)
        return sliding_velocity(solver, problem, y, v0, state.rows, state.mask, 0.0)

    out = {}
    for name, fn in (
        ("gradient_s", lambda y: problem.velocity(y)),
        ("sliding_eval_s", sliding),
        ("event_pass_s", events),
    ):
        fn = jax.jit(fn)  # a closure: the problem's arrays are constants, not static arguments
        jax.block_until_ready(fn(y))
        times = []
        for _ in range(30):
            t = time.perf_counter()
            jax.block_until_ready(fn(y))
            times.append(time.perf_counter() - t)
        out[name] = float(np.median(times))
    out["size_at_end"] = int(jnp.sum(state.mask))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--widths", type=int, nargs="+", default=[64])
    ap.add_argument("--lam", type=float, default=1e-2)
    ap.add_argument("--norm", default="none")
    ap.add_argument("--t1", type=float, default=None)
    ap.add_argument("--capacity", type=int, default=256)
    ap.add_argument("--ref-rtol", type=float, default=1e-8)
    ap.add_argument(
        "--peers", nargs="+", default=["slide-heun", "slide-rkc2", "heun", "tsit5", "gd"]
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t1 = args.t1 or 10 / args.lam
    problem = _problem(args.n, args.widths, args.lam, args.norm)
    result = {
        "config": {
            "n": args.n,
            "widths": args.widths,
            "lam": args.lam,
            "norm": args.norm,
            "t1": t1,
            "lam_t1": args.lam * t1,
            "capacity": args.capacity,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "peers": {},
    }
    slide = lambda inner: SlidingSolver(inner, capacity=args.capacity)  # noqa: E731
    tight, looser = args.ref_rtol, 10 * args.ref_rtol
    y_ref, ref_run = _run(problem, slide(diffrax.Heun()), t1, _controller(tight, tight, 1e-6))
    y_ref7, ref7_run = _run(problem, slide(diffrax.Heun()), t1, _controller(looser, looser, 1e-6))
    ref = _observables(problem, y_ref)
    result["reference"] = {
        "run": ref_run,
        "rtol": tight,
        "run_10x_rtol": ref7_run,
        "self_consistency": _errors(_observables(problem, y_ref7), ref),
        **{k: v for k, v in ref.items() if k != "weights"},
    }
    print(json.dumps(result["reference"], default=float, indent=1), flush=True)
    lam_max = max(_lambda_max(problem, problem.initial_state()), _lambda_max(problem, y_ref))
    result["lambda_max"] = lam_max
    default = _controller(1e-4, 1e-6)
    for name in args.peers:
        if name == "gd":
            for c in (0.95, 0.8, 0.6, 0.4):
                dt = c * 2 / lam_max
                y, out = _run(
                    problem,
                    diffrax.Euler(),
                    t1,
                    diffrax.ConstantStepSize(),
                    dt0=dt,
                    max_steps=int(t1 / dt) + 10,
                )
                obs = _observables(problem, y)
                if np.isfinite(obs["data_loss"]) and out["ok"]:
                    out["dt"] = dt
                    break
        else:
            inner = {
                "heun": diffrax.Heun(),
                "tsit5": diffrax.Tsit5(),
                "slide-heun": slide(diffrax.Heun()),
                "slide-rkc2": slide(RKC2()),
            }[name]
            y, out = _run(problem, inner, t1, default)
            obs = _observables(problem, y)
        out["evaluations"] = _evaluations(name, out)
        out["errors"] = _errors(obs, ref)
        result["peers"][name] = out
        print(name, json.dumps(out, default=float), flush=True)
    path = args.out or f"benchmarks/results/sliding_{args.norm}_{args.lam:g}.json"
    _write(path, result)  # before the timing below, so that the runs are kept if it fails
    result["shares"] = _shares(problem, y_ref, slide(diffrax.Heun()))
    print(json.dumps(result["shares"]), flush=True)
    _write(path, result)


def _write(path, result):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=float)


if __name__ == "__main__":
    main()
