"""Direct calls in blocks: the interruptible direct call against one unsegmented compiled call.

Run::

    python benchmarks/blocks.py [--repeats 5] [--cases sgd-small,flow-wide] [--out ...]

A direct ``gf.sgd`` / ``gf.flow`` call runs its save intervals in blocks of about half a second
(gradflow/dynamics/_blocks.py) so that SIGINT/SIGTERM and checkpoints are handled between
blocks; ``gradflow.dynamics._batch.plan(...).run()`` runs the same dynamics as ONE compiled call (the
batched path's core, not interruptible: since the one driver, the same ``init`` and
``advance`` in one block bounded only by ``max_steps``). Both are compiled first (a warm-up
call each); then ``--repeats`` timed calls, alternating; medians. Cases (float64, bias-free
ReLU MLPs on a Gaussian mixture, LM-last, λ = 1e-3):

* ``sgd-small``: 16-32-32-1, 256 samples, B = 16, 2,000 steps, 201 saves (overhead-bound);
* ``sgd-wide``: 40-256-256-1, 2,000 samples, B = 32, 2,000 steps, 201 saves;
* ``flow-wide``: the same network and data, adaptive Heun to t = 2, 101 saves.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import _result  # noqa: E402
import numpy as np  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow.dynamics._batch import plan  # noqa: E402
from gradflow.models import MLP  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def problem(dim, widths, n):
    data = gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=dim, seed=0, unit_norm=True)
    net = MLP(dim, widths, 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    return gf.Problem(net, data, weight_decay=1e-3, normalization="lm-last")


def cases():
    key = jax.random.PRNGKey(1)
    small, wide = problem(16, (32, 32), 256), problem(40, (256, 256), 2000)
    sgd = dict(lr=0.01, steps=2000, save_every=0.1, key=key)
    return {
        "sgd-small": (gf.sgd, small, dict(sgd, batch_size=16)),
        "sgd-wide": (gf.sgd, wide, dict(sgd, batch_size=32)),
        "flow-wide": (gf.flow, wide, dict(t1=2.0, save_every=0.02)),
    }


def timed(fn):
    start = time.perf_counter()
    traj = fn()
    jax.block_until_ready(traj.final_state)
    return time.perf_counter() - start, traj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/blocks.json"))
    parser.add_argument("--cases", default=None, help="comma-separated case names (default all)")
    args = parser.parse_args(argv)
    rows = {}
    start = _result.now()
    chosen = None if args.cases is None else args.cases.split(",")
    for name, (dynamics, prob, kw) in cases().items():
        if chosen is not None and name not in chosen:
            continue
        runners = {
            "direct": lambda d=dynamics, p=prob, k=kw: d(p, **k),
            "one_call": lambda d=dynamics, p=prob, k=kw: plan(d, p, **k).run(),
        }
        outs = {c: timed(r)[1] for c, r in runners.items()}  # compile both
        times = {c: [] for c in runners}
        for _ in range(args.repeats):
            for c, r in runners.items():
                seconds, outs[c] = timed(r)
                times[c].append(seconds)
        a, b = outs["direct"], outs["one_call"]
        diff = float(np.max(np.abs(np.asarray(a["loss"]) - np.asarray(b["loss"]))))
        med = {c: statistics.median(v) for c, v in times.items()}
        rows[name] = {
            "saves": len(a.t),
            "direct_s": med["direct"],
            "one_call_s": med["one_call"],
            "ratio_direct_over_one_call": med["direct"] / med["one_call"],
            "all": times,
            "max_abs_loss_difference": diff,
        }
        print(
            f"{name}: {len(a.t)} saves, direct {med['direct']:.3f} s, one call "
            f"{med['one_call']:.3f} s (ratio {med['direct'] / med['one_call']:.2f}); "
            f"max |Δloss| {diff:.1e}",
            flush=True,
        )
    _result.write(args.out, start, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
