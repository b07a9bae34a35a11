"""Sweep batching: one vmapped call for the points of a sweep against the same runs one by one.

Run::

    python benchmarks/sweep.py [--repeats 3] [--cases sgd,flow] [--out results/sweep.json]

(To measure another checkout with the same script, run this file with that checkout's
environment: ``/other/.venv/bin/python benchmarks/sweep.py --out OTHER.json``.)

Two comparisons, each measured in the same process, candidates alternating repeat by repeat
(this machine is shared), medians reported, compilation excluded by a warm-up call of each
candidate at the same shapes (and reported separately):

* SGD: a 64-point λ × η grid (8 × 8; λ ∈ [0, 0.05], η ∈ [0.01, 0.08]) on one problem (a
  bias-free ReLU MLP 16-32-32-1, 256 Gaussian-mixture samples, LM-last, B = 16, t1 = 4 so
  400–50 steps, 17 saves). *Sequential*: 64 calls of ``gf.sgd`` (compiled once: λ and η are
  traced). *Batched*: the sweep engine's path, 64 plans in one vmapped call
  (``gradflow.dynamics.run_plans``), finishing into the same 64 Trajectories.
* Flow: a 16-point λ sweep of ``gf.flow`` (same network, 128 samples, t1 = 10, default
  solver), sequential against batched. A vmapped adaptive solve steps until its slowest
  member has finished, so its cost is (number of members) × (the largest step count), not the
  sum of step counts: it is reported honestly either way.

The results must agree: the batched runs equal the sequential ones (max abs difference of
the loss reported).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow.dynamics._batch import plan, run_plans  # noqa: E402
from gradflow.models import MLP  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def problems(lams, n):
    data = gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=16, seed=0, unit_norm=True)
    net = MLP(16, (32, 32), 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    return [gf.Problem(net, data, weight_decay=float(lam), normalization="lm-last") for lam in lams]


def sgd_points():
    lams, lrs = np.linspace(0.0, 0.05, 8), np.linspace(0.01, 0.08, 8)
    return [(p, float(lr)) for p in problems(lams, 256) for lr in lrs]


def run_sgd(points, batched: bool):
    kw = dict(batch_size=16, t1=4.0, save_every=0.25, key=jax.random.PRNGKey(1))
    if batched:
        return run_plans([plan(gf.sgd, p, lr=lr, **kw) for p, lr in points])
    return [gf.sgd(p, lr=lr, **kw) for p, lr in points]


def run_flow(points, batched: bool):
    kw = dict(t1=10.0, save_every=1.0)
    if batched:
        return run_plans([plan(gf.flow, p, **kw) for p in points])
    return [gf.flow(p, **kw) for p in points]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready([tr.final_state for tr in out])
    return time.perf_counter() - start, out


def compare(name, runner, points, repeats):
    warm = {}
    for batched in (False, True):
        warm[batched], _ = timed(lambda b=batched: runner(points, b))
    times = {False: [], True: []}
    outs = {}
    for _ in range(repeats):
        for batched in (False, True):
            seconds, outs[batched] = timed(lambda b=batched: runner(points, b))
            times[batched].append(seconds)
    diff = max(
        float(np.nanmax(np.abs(a["loss"] - b["loss"]))) for a, b in zip(outs[False], outs[True])
    )
    seq, bat = statistics.median(times[False]), statistics.median(times[True])
    row = {
        "points": len(points),
        "sequential_s": seq,
        "batched_s": bat,
        "ratio_batched_over_sequential": bat / seq,
        "first_call_sequential_s": warm[False],
        "first_call_batched_s": warm[True],
        "repeats": repeats,
        "all_sequential_s": times[False],
        "all_batched_s": times[True],
        "max_abs_loss_difference": diff,
    }
    if name == "flow":
        row["steps_per_point"] = [int(tr.stats["num_steps"]) for tr in outs[False]]
    print(
        f"{name}: {len(points)} points, sequential {seq:.3f} s, batched {bat:.3f} s "
        f"(ratio {bat / seq:.3f}); first calls {warm[False]:.2f} s / {warm[True]:.2f} s; "
        f"max |Δloss| {diff:.1e}",
        flush=True,
    )
    return row


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:20]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "lscpu": lscpu,
        "nproc": os.cpu_count(),
        "load_average": load,
        "python": platform.python_version(),
        "versions": gf.versions(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep.json"))
    parser.add_argument("--cases", default="sgd,flow", help="comma-separated: sgd, flow")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    result = {"machine": machine()}
    if "sgd" in cases:
        result["sgd"] = compare("sgd", run_sgd, sgd_points(), args.repeats)
    if "flow" in cases:
        points = problems(np.linspace(0, 0.05, 16), 128)
        result["flow"] = compare("flow", run_flow, points, args.repeats)
    result["machine"]["load_average_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
