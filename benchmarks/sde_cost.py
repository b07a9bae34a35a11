"""Cost of the SDE of SGD: one Euler–Maruyama step against one Euler step of the ODE.

Run::

    python benchmarks/sde_cost.py [--fast] [--threads 1] [--repeats 7]
        [--out benchmarks/results/sde_cost.json]

What it measures (see benchmarks/README.md, section "SDE cost"):

1. **Step time.** ``K`` fixed steps of Diffrax ``diffeqsolve`` (``ConstantStepSize``,
   ``SaveAt(t1=True)``, the library's ``ProjectedSolver``) for:

   * ``ode``: ``ODETerm(problem.velocity)`` with Euler — what ``gf.flow(solver="euler")``
     steps;
   * ``sde``: the library's fused ``SGDTerm`` (drift and diffusion in ONE gradient of
     ``Σ_n u_n ℓ_n``) on a ``StepBrownianPath``, Euler–Maruyama — what
     ``gf.flow(noise=SGDNoise(...))`` steps;
   * ``sde-unfused``: ``MultiTerm(ODETerm(v), ControlTerm(G, β))`` with ``G`` the Lineax
     ``FunctionLinearOperator`` of one VJP — two gradients per step.

   Wall time of a compiled call divided by ``K``; candidates alternate repeat by repeat and
   the median is reported (the machine may be shared). Problems: bias-free ReLU MLPs on
   Gaussian-mixture data, float64, λ = 1e-3, normalization ``none`` and ``lm-last``.
2. **Peak memory.** XLA's compiled ``memory_analysis()`` (temporary buffers) of ONE step of
   each candidate, plus the naive diffusion that forms the ``N × P`` per-sample-gradient
   matrix (``jacrev``), for ``N ∈ {256, 1024, 4096}`` and ``P`` from 2k to 280k weights.
   Nothing is run for this part: XLA reports the buffers of the compiled program.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _set_threads(argv) -> None:
    """Single-threaded XLA unless ``--threads 0`` (must happen before JAX is imported)."""
    if not ("--threads" in argv and argv[argv.index("--threads") + 1] == "0"):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )


_set_threads(sys.argv)
os.environ.setdefault("JAX_ENABLE_X64", "1")

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow import diffrax_ext as _noise  # noqa: E402
from gradflow.diffrax_ext import ItoProjectedSolver, ProjectedSolver  # noqa: E402
from gradflow.models import MLP  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CANDIDATES = ("ode", "sde", "sde-unfused")


def make_problem(n, dim, widths, normalization, seed=0) -> gf.Problem:
    data = gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=dim, seed=seed)
    net = MLP(dim, tuple(widths), 1, key=jax.random.PRNGKey(seed))
    return gf.Problem(net, data, weight_decay=1e-3, normalization=normalization)


def n_params(problem) -> int:
    return int(sum(w.size for w in problem.model.weights))


def _terms(name, problem, scale, key, dt):
    n = problem.n_train
    path = _noise.StepBrownianPath((n,), key, jnp.asarray(0.0), dt)
    if name == "ode":
        return diffrax.ODETerm(lambda t, y, args: args.velocity(y)), ProjectedSolver
    if name == "sde":
        return _noise.SGDTerm(scale, path), ItoProjectedSolver
    drift = diffrax.ODETerm(lambda t, y, args: args.velocity(y))
    return diffrax.MultiTerm(drift, _noise.diffusion_term(scale, path)), ItoProjectedSolver


@eqx.filter_jit
def run_steps(name, problem, y0, scale, key, dt, steps):
    term, wrap = _terms(name, problem, scale, key, dt)
    sol = diffrax.diffeqsolve(
        term,
        wrap(diffrax.Euler(), problem.parametrization),
        0.0,
        steps * dt,
        dt,
        y0,
        args=problem,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=steps,
    )
    return sol.ys


def step_time(spec, steps, repeats) -> dict:
    problem = make_problem(spec["n"], spec["dim"], spec["widths"], spec["normalization"])
    y0 = problem.initial_state()
    scale = jnp.asarray(_noise.SGDNoise(0.05, 16).scale(problem.n_train))
    dt = jnp.asarray(1e-3)
    times = {c: [] for c in CANDIDATES}
    for c in CANDIDATES:  # compile (and warm up) each once
        jax.block_until_ready(run_steps(c, problem, y0, scale, jax.random.key(0), dt, steps))
    for r in range(repeats):
        for c in CANDIDATES:
            t = time.perf_counter()
            jax.block_until_ready(
                run_steps(c, problem, y0, scale, jax.random.key(r + 1), dt, steps)
            )
            times[c].append((time.perf_counter() - t) / steps)
    med = {c: float(np.median(v)) for c, v in times.items()}
    return {
        **spec,
        "params": n_params(problem),
        "steps": steps,
        "seconds_per_step": med,
        "all_seconds_per_step": times,
        "ratio_sde_to_ode": med["sde"] / med["ode"],
        "ratio_unfused_to_ode": med["sde-unfused"] / med["ode"],
    }


# ---- memory ----------------------------------------------------------------------------
def _one_step(name, problem, y, key, scale, dt):
    if name == "naive":  # the N × P per-sample-gradient matrix: what the library never forms
        flat, unravel = ravel_pytree(y)

        def losses(f):
            return gf.sample_losses(
                problem.model, problem.to_weights(unravel(f)), problem.x_train, problem.y_train
            )

        g = jax.jacrev(losses)(flat)  # (N, P)
        xi = jax.random.normal(key, (problem.n_train,)) * jnp.sqrt(dt)
        noise = scale * (g - g.mean(0)).T @ xi
        drift = ravel_pytree(problem.velocity(y))[0]
        return problem.project(unravel(flat + dt * drift - noise))
    term, wrap = _terms(name, problem, scale, key, dt)
    y1, *_ = wrap(diffrax.Euler(), problem.parametrization).step(
        term, 0.0, dt, y, problem, None, False
    )
    return y1


def memory(n, h, dim=32, normalization="lm-last") -> dict:
    problem = make_problem(n, dim, (h, h), normalization)
    y0 = problem.initial_state()
    scale = jnp.asarray(0.01)
    dt = jnp.asarray(1e-3)
    out = {"n": n, "hidden": h, "params": n_params(problem), "normalization": normalization}
    dynamic, static = eqx.partition(problem, eqx.is_array)
    for name in (*CANDIDATES, "naive"):
        fn = jax.jit(
            lambda p, y, k, s, d, name=name: _one_step(name, eqx.combine(p, static), y, k, s, d)
        )
        compiled = fn.lower(dynamic, y0, jax.random.key(0), scale, dt).compile()
        stats = compiled.memory_analysis()
        out[f"temp_bytes_{name}"] = int(stats.temp_size_in_bytes) if stats else None
    out["n_times_p_bytes"] = 8 * n * out["params"]
    out["data_bytes"] = 8 * n * (dim + 1)
    return out


def machine() -> dict:
    def sh(cmd):
        try:
            return subprocess.run(
                cmd, shell=True, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": sh("lscpu | grep 'Model name' | sed 's/.*: *//'"),
        "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "versions": gf.versions(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "gradflow_dirty": sh(f"git -C {ROOT} status --porcelain gradflow models"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        choices=(0, 1),
        help="1 (default): single-threaded XLA; 0: XLA's default threads",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sde_cost.json")
    args = parser.parse_args(argv)
    steps = 50 if args.fast else 200
    specs = [
        {"n": 512, "dim": 32, "widths": [64, 64], "normalization": "none"},
        {"n": 512, "dim": 32, "widths": [64, 64], "normalization": "lm-last"},
        {"n": 2048, "dim": 64, "widths": [256, 256], "normalization": "lm-last"},
    ]
    if args.fast:
        specs = specs[:2]
    results = {"machine": machine(), "threads": args.threads, "step_time": [], "memory": []}
    for spec in specs:
        row = step_time(spec, steps, args.repeats)
        results["step_time"].append(row)
        us = {c: 1e6 * v for c, v in row["seconds_per_step"].items()}
        print(
            f"N={row['n']:5d} P={row['params']:7d} {row['normalization']:8s} "
            f"ode {us['ode']:9.1f} us  sde {us['sde']:9.1f} us  unfused "
            f"{us['sde-unfused']:9.1f} us  sde/ode {row['ratio_sde_to_ode']:.2f}  "
            f"unfused/ode {row['ratio_unfused_to_ode']:.2f}",
            flush=True,
        )
    grid_n = (256, 1024) if args.fast else (256, 1024, 4096)
    grid_h = (32, 128) if args.fast else (32, 128, 512)
    for n in grid_n:
        for h in grid_h:
            row = memory(n, h)
            results["memory"].append(row)
            mib = lambda b: b / 2**20  # noqa: E731
            print(
                f"N={n:5d} P={row['params']:7d}  temp MiB: ode {mib(row['temp_bytes_ode']):8.2f}"
                f"  sde {mib(row['temp_bytes_sde']):8.2f}  unfused "
                f"{mib(row['temp_bytes_sde-unfused']):8.2f}  naive "
                f"{mib(row['temp_bytes_naive']):9.2f}  "
                f"(8·N·P = {mib(row['n_times_p_bytes']):9.2f})",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
