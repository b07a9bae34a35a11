"""Compilations per distinct number of save points: padded ``step_ts`` against unpadded.

Run::

    python benchmarks/save_counts.py [--repeats 2] [--out benchmarks/results/save_counts.json]

The adaptive flow clips its steps at the save times (``diffrax.ClipStepSizeController``'s
``step_ts``); the array's length is part of the compiled program. gradflow pads it with +inf
to a power of two (``dynamics._core.padded_step_ts``). Each variant runs in a fresh process
(empty JAX caches): ``gf.flow`` on the same problem with 11, 21, 31, 41 and 61 save times in
turn (t1 = 1, the last four in the 32 and 64 buckets), counting XLA compilations and wall time
per call; ``unpadded`` swaps in ``jnp.asarray(grid)`` (the code before 2026-12-07). The two
variants alternate, ``--repeats`` times; medians. Problem: float64, bias-free ReLU MLP
40-64-64-1 on 512 Gaussian-mixture samples, LM-last, λ = 1e-3, adaptive Heun (the default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTS = (11, 21, 31, 41, 61)


def child(variant: str) -> dict:
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import gradflow as gf
    from gradflow.dynamics import _ode, _sde
    from gradflow.models import MLP

    if variant == "unpadded":
        _ode.padded_step_ts = _sde.padded_step_ts = lambda grid: jnp.asarray(grid)
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, d, **kw: (
            compiles.append(d) if event == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    data = gf.data.load("gaussian-mixture", n_train=512, n_test=0, dim=40, seed=0, unit_norm=True)
    net = MLP(40, (64, 64), 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, data, weight_decay=1e-3, normalization="lm-last")
    rows, finals = [], []
    for n in COUNTS:
        before, start = len(compiles), time.perf_counter()
        tr = gf.flow(problem, t1=1.0, save_every=1.0 / (n - 1))
        rows.append(
            {
                "saves": n,
                "seconds": time.perf_counter() - start,
                "compilations": len(compiles) - before,
                "compile_seconds": sum(compiles[before:]),
            }
        )
        finals.append(float(tr["loss"][-1]))
    return {"variant": variant, "rows": rows, "final_loss": finals}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "save_counts.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    runs = {"padded": [], "unpadded": []}
    for _ in range(args.repeats):
        for variant in ("unpadded", "padded"):
            cmd = [sys.executable, __file__, "--child", variant]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
    summary = {}
    for variant, results in runs.items():
        summary[variant] = [
            {
                "saves": n,
                "seconds": statistics.median(r["rows"][i]["seconds"] for r in results),
                "compilations": statistics.median(r["rows"][i]["compilations"] for r in results),
            }
            for i, n in enumerate(COUNTS)
        ]
        print(variant, summary[variant])
    same = runs["padded"][0]["final_loss"] == runs["unpadded"][0]["final_loss"]
    print("final losses equal bit for bit:", same)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "summary": summary,
                "runs": runs,
                "same_losses": same,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
