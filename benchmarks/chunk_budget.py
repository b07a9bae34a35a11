"""The default chunk budget: one full-batch gradient of the paper CNN against the chunk size.

Run::

    python benchmarks/chunk_budget.py [--budgets 256,64,32] [--ns 4000,16000,64000]
        [--precision float32] [--repeats 2] [--out benchmarks/results/chunk_budget.json]

For each N (random CIFAR-shaped inputs ``(N, 3, 32, 32)``, ±1 targets, λ = 0, normalization
``none``) and each budget in MiB, the chunk ``gf.default_chunk_size(net, N, itemsize,
budget)``; one jitted ``jax.grad(problem.loss)`` per budget, compiled first, then
``--repeats`` timed calls per budget, the budgets alternating; medians of the wall time and of
the process's system time during the call (``os.times``: the kernel's share, mostly page faults
on XLA's freshly allocated temporaries). One process, XLA single-threaded
(``intra_op_parallelism_threads=1``, as ``scale.py --threads 1``).
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("JAX_ENABLE_X64", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import _result  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow.models import paper_cnn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="256,64,32")
    parser.add_argument("--ns", default="4000,16000,64000")
    parser.add_argument("--precision", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/chunk_budget.json"))
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    dtype = np.dtype(args.precision)
    net = paper_cnn((3, 32, 32), 1, key=jax.random.PRNGKey(0))
    rows = []
    start = _result.now()
    for n in (int(v) for v in args.ns.split(",")):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, 3, 32, 32)).astype(dtype)
        y = np.sign(rng.standard_normal((n, 1))).astype(dtype)
        data = gf.data.Dataset("random-cifar-shaped", x, y)
        calls = {}
        for b in budgets:
            k = gf.default_chunk_size(net, n, dtype.itemsize, b * 2**20)
            problem = gf.Problem(net, data, precision=args.precision, chunk_size=k)
            state = problem.initial_state()
            grad = jax.jit(jax.grad(problem.loss))
            jax.block_until_ready(grad(state))  # compile
            calls[b] = (grad, state, k)
        times = {b: [] for b in budgets}
        for _ in range(args.repeats):
            for b in budgets:
                grad, state, _ = calls[b]
                before, clock = os.times(), time.perf_counter()
                jax.block_until_ready(grad(state))
                wall, after = time.perf_counter() - clock, os.times()
                times[b].append((wall, after.system - before.system))
        for b in budgets:
            row = {
                "n": n,
                "budget_mib": b,
                "chunk": calls[b][2],
                "wall_s": statistics.median(t for t, _ in times[b]),
                "system_s": statistics.median(s for _, s in times[b]),
                "all": times[b],
            }
            rows.append(row)
            print(
                f"N={n:>6} budget {b:>4} MiB chunk {row['chunk']:>5}: wall {row['wall_s']:.3f} s, "
                f"system {row['system_s']:.3f} s",
                flush=True,
            )
        del calls
    _result.write(args.out, start, rows, precision=args.precision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
