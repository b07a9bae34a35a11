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

# one thread per process, for every peer alike: on a shared machine XLA's and LAPACK's thread
# pools spin, and a 256×256 Cholesky took 0.5 ms or 170 ms from one call to the next
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

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


def _run(problem, solver, t1, controller, dt0=1e-3, max_steps=5_000_000, budget_s=None, pieces=20):
    """Integrate ``[0, t1]`` in ``pieces`` equal intervals (one compiled solve, chained through
    the solver state and ``made_jump``; each interval after the first starts at the previous
    one's mean step), stopping after the interval in which ``budget_s`` seconds ran out:
    ``t_reached`` says how far it got. Seconds exclude the compilation."""
    solver = ProjectedSolver(solver, problem.parametrization)
    term = _term()

    @eqx.filter_jit
    def go(y0, t0, t1, dt0, state, jump):
        sol = diffrax.diffeqsolve(
            term,
            solver,
            t0,
            t1,
            dt0,
            y0,
            args=problem,
            stepsize_controller=controller,
            saveat=diffrax.SaveAt(t1=True, solver_state=True, made_jump=True),
            max_steps=max_steps,
            throw=False,
            solver_state=state,
            made_jump=jump,
        )
        y = jax.tree.map(lambda a: a[-1], sol.ys)
        return y, sol.ts[-1], sol.stats, sol.solver_state, sol.made_jump, sol.result

    y = problem.initial_state()
    dtype = jnp.result_type(*jax.tree.leaves(y))
    f = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    state = solver.init(term, f(0.0), f(t1), y, problem)
    jump = jnp.asarray(False)
    jax.block_until_ready(go(y, f(0.0), f(2 * dt0), f(dt0), state, jump))  # compile
    edges = np.linspace(
        0.0, t1, (1 if isinstance(controller, diffrax.ConstantStepSize) else pieces) + 1
    )
    out = {"num_steps": 0, "num_accepted_steps": 0, "num_rejected_steps": 0}
    wall, cpu, t_reached, ok, h = 0.0, 0.0, 0.0, True, dt0
    for a, b in zip(edges[:-1], edges[1:]):
        start, start_cpu = time.perf_counter(), time.process_time()
        y, t_end, stats, state, jump, result = jax.block_until_ready(
            go(y, f(a), f(b), f(h), state, jump)
        )
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        for k in out:
            out[k] += int(stats[k])
        t_reached = float(t_end)
        print(
            f"  t = {t_reached:g}: {out['num_steps']} steps, {wall:.1f} s, cpu {cpu:.1f} s",
            flush=True,
        )
        ok = ok and bool(result == diffrax.RESULTS.successful)
        if not ok or (budget_s is not None and wall > budget_s and b < t1):
            break
        if not isinstance(controller, diffrax.ConstantStepSize):
            h = (b - a) / max(int(stats["num_accepted_steps"]), 1)
    out["wall_s"] = wall
    out["cpu_s"] = cpu  # one thread: the CPU time of this process, the load's share removed
    out["ok"] = ok
    out["t_reached"] = t_reached
    out["finished"] = ok and t_reached >= t1 * (1 - 1e-12)
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
    name = name.partition("@")[0]
    steps = out["num_steps"]
    if name in ("heun", "slide-heun"):
        return 2 * steps  # Heun is not FSAL: a reset costs nothing extra
    if name in ("tsit5", "tsit5-1e-6"):
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
    """CPU seconds of one gradient, one sliding evaluation (S = the entries within the solver's
    surface tolerance at ``y``) and one event pass (the pre-activations of every sample and
    the selection of S), each the median of 30 jitted calls."""
    state = solver.init(_term(), 0.0, 1.0, y, problem)
    model, x = problem.model, problem.x_train

    def events(y):  # as the solver's per-step pass: every pre-activation, then S by a prefix
        # sum (the solver's batched forward pass is private; this vmaps the public one)
        z = jax.vmap(
            lambda xn: jnp.concatenate(
                [jnp.ravel(a) for a in model.pre_activations(problem.network_weights(y), xn)]
            )
        )(x)
        flat = jnp.ravel(z)
        near = jnp.abs(flat) <= solver.surface_tol * jnp.sqrt(jnp.mean(flat**2))
        return jnp.nonzero(near, size=min(solver.capacity, flat.size), fill_value=0)[0]

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
            t = time.process_time()
            jax.block_until_ready(fn(y))
            times.append(time.process_time() - t)
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
    ap.add_argument(
        "--budget",
        type=float,
        nargs=3,
        default=None,
        metavar=("REF", "SLIDE", "OTHER"),
        help="wall seconds for the reference (and as much again, halved, for its 10x looser "
        "twin), for each sliding peer and for each other peer; a run out of budget stops at "
        "the end of one of 20 intervals and reports how far it got",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t1 = args.t1 or 10 / args.lam
    problem = _problem(args.n, args.widths, args.lam, args.norm)
    budget_ref, budget_slide, budget_other = args.budget or (None, None, None)
    path = args.out or f"benchmarks/results/sliding_{args.norm}_{args.lam:g}.json"
    result = {
        "config": {
            "n": args.n,
            "widths": args.widths,
            "lam": args.lam,
            "norm": args.norm,
            "t1": t1,
            "lam_t1": args.lam * t1,
            "capacity": args.capacity,
            "budget_s": args.budget,
            "threads": "1 per process (XLA_FLAGS, OPENBLAS_NUM_THREADS)",
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "peers": {},
    }
    slide = lambda inner: SlidingSolver(inner, capacity=args.capacity)  # noqa: E731
    tight, looser = args.ref_rtol, 10 * args.ref_rtol
    default = _controller(1e-4, 1e-6)
    finals = {}
    # λ_max at the start (the reference runs last; its end's λ_max is recorded after it)
    lam_max = _lambda_max(problem, problem.initial_state())
    result["lambda_max"] = lam_max
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
                if np.isfinite(float(problem.data_loss(y))) and out["ok"]:
                    out["dt"] = dt
                    break
        else:
            # NAME@RTOL: the peer at rtol = RTOL, atol = RTOL/100 (the default's ratio; the
            # step floor stays 1e-4), a rung of the equal-error ladder
            base, _, tol = name.partition("@")
            inner = {
                "heun": diffrax.Heun(),
                "tsit5": diffrax.Tsit5(),
                "tsit5-1e-6": diffrax.Tsit5(),
                "slide-heun": slide(diffrax.Heun()),
                "slide-rkc2": slide(RKC2()),
            }[base]
            budget = budget_slide if name.startswith("slide") else budget_other
            ctrl = _controller(1e-6, 1e-8) if name == "tsit5-1e-6" else default
            if tol:
                ctrl = _controller(float(tol), float(tol) / 100)
            y, out = _run(problem, inner, t1, ctrl, budget_s=budget)
        out["evaluations"] = _evaluations(name, out)
        obs = _observables(problem, y)
        out["observables"] = {k: v for k, v in obs.items() if k != "weights"}
        finals[name] = (y, out)
        result["peers"][name] = out
        print(name, json.dumps(out, default=float), flush=True)
        _write(path, result)
    # the differences between the peers that reached t1, pairwise (errors need no reference)
    done = {k: _observables(problem, y) for k, (y, o) in finals.items() if o["finished"]}
    result["pairwise"] = {a: {b: _errors(done[a], done[b]) for b in done if b != a} for a in done}
    _write(path, result)
    if budget_ref == 0:  # --budget 0 ...: no reference
        return
    # the reference, and its twin at ten times its tolerance (skipped when that is the
    # default tolerance: the twin is then the slide-heun peer itself)
    y_ref, ref_run = _run(
        problem, slide(diffrax.Heun()), t1, _controller(tight, tight, 1e-6), budget_s=budget_ref
    )
    result["reference"] = {"run": ref_run, "rtol": tight}
    if looser < 1e-4:
        half = None if budget_ref is None else budget_ref / 2
        y_loose, loose_run = _run(
            problem, slide(diffrax.Heun()), t1, _controller(looser, looser, 1e-6), budget_s=half
        )
        result["reference"]["run_10x_rtol"] = loose_run
        finals["reference_10x"] = (y_loose, loose_run)
    print("reference", json.dumps(ref_run, default=float), flush=True)
    result["lambda_max_reference_end"] = _lambda_max(problem, y_ref)
    _write(path, result)
    if "reference_10x" not in finals and "slide-heun" in finals:
        finals["reference_10x"] = finals["slide-heun"]
        result["reference"]["run_10x_rtol"] = "the slide-heun peer (rtol 1e-4)"
    ref = _observables(problem, y_ref) if ref_run["finished"] else None
    if ref is not None:
        result["reference"].update({k: v for k, v in ref.items() if k != "weights"})
        if finals.get("reference_10x", (None, {"finished": False}))[1]["finished"]:
            loose = _observables(problem, finals["reference_10x"][0])
            result["reference"]["self_consistency"] = _errors(loose, ref)
        for name, (y, out) in finals.items():
            if name in result["peers"] and out["finished"]:
                out["errors"] = _errors(_observables(problem, y), ref)
    result["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(result["reference"], default=float), flush=True)
    _write(path, result)  # before the timing below, so that the runs are kept if it fails
    result["shares"] = _shares(problem, y_ref, slide(diffrax.Heun()))
    print(json.dumps(result["shares"]), flush=True)
    _write(path, result)


def _write(path, result):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=float)


if __name__ == "__main__":
    main()
