"""Which convolution path should ``LocalCNN`` take on a CPU? XLA's convolution against two
im2col gathers, beside PyTorch computing the same gradient.

Run::

    python benchmarks/conv_path.py [--repeats 7] [--threads 1] [--n-paper 1000]
        [--out benchmarks/results/conv_path.json]

PyTorch is a benchmark-only dependency (``pip install torch==2.13.0``, the CPU build).

What is timed: one full-batch gradient ``jax.grad(problem.loss)(state)`` (jitted, compiled
first, ``block_until_ready``) of

* the MNIST-1D CNN: ``gf.data.load("mnist1d", n_train=1000, channel_first=True)`` (10 classes,
  one-hot targets), ``LocalCNN((1, 40), (32, 32, 32), 5, 2, 10)`` (VALID, dense last layer,
  11,040 weights), normalization ``lm-last``;
* the paper CNN: ``gradflow.models.paper_cnn((3, 32, 32), 1)`` (95,072 weights) on ``--n-paper``
  random CIFAR-shaped inputs with ±1 targets, normalization ``none``;

with ``LocalCNN(conv="xla")`` (``lax.conv_general_dilated``, channel-first), ``conv="im2col"``
(channel-first strided slices, stacked, + one tensor contraction) and ``conv="im2col-cl"``
(channels-last strided slices, concatenated along the channels, + one matrix product
``(N · positions, K · C_in) @ (K · C_in, C_out)``), in float32 and float64
(``Problem(precision=...)``, x64 on), and PyTorch eager (``F.conv1d/conv2d`` + autograd) on
the same weights and data. The candidates alternate repeat by repeat; the median and the best
of ``--repeats`` are reported, with each gradient's relative difference to the float64 PyTorch
gradient. Both libraries run single-threaded by default (``--threads 1``), as in
``sgd_throughput.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: The candidate paths (``LocalCNN(conv=...)``).
CONVS = ("xla", "im2col", "im2col-cl")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-paper", type=int, default=1000)
    parser.add_argument("--out", default=str(HERE / "results" / "conv_path.json"))
    args = parser.parse_args(argv)

    from _torch_ref import TorchGradient, relative_difference, set_threads, set_torch_threads

    set_threads(args.threads)
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import numpy as np
    import torch

    import gradflow as gf
    from gradflow.data import Dataset
    from gradflow.models import LocalCNN, paper_cnn

    set_torch_threads(args.threads)
    grad = eqx.filter_jit(lambda p, s: jax.grad(p.loss)(s))

    def cases():
        mnist = gf.data.load("mnist1d", n_train=1000, n_test=0, channel_first=True)
        key = jax.random.PRNGKey(0)
        yield (
            "mnist1d-cnn",
            mnist,
            lambda conv: LocalCNN((1, 40), (32, 32, 32), 5, 2, 10, conv=conv, key=key),
            "lm-last",
        )
        rng = np.random.default_rng(0)
        n = args.n_paper
        x = rng.standard_normal((n, 3, 32, 32))
        y = np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0)
        yield (
            f"paper-cnn-N{n}",
            Dataset("random-cifar", x, y),
            lambda conv: paper_cnn((3, 32, 32), 1, conv=conv, key=jax.random.PRNGKey(0)),
            "none",
        )

    rows = []
    for name, data, make, normalization in cases():
        nets = {conv: make(conv) for conv in CONVS}
        reference = None
        candidates = {}
        for precision in ("float32", "float64"):
            for conv, net in nets.items():
                problem = gf.Problem(net, data, normalization=normalization, precision=precision)
                state = problem.initial_state()
                candidates[f"jax {conv} {precision}"] = (problem, state)
            problem = candidates[f"jax xla {precision}"][0]
            x = np.asarray(problem.x_train)
            y = np.asarray(problem.y_train)
            twin = TorchGradient(problem.model, problem.initial_state(), normalization, x, y)
            candidates[f"torch {precision}"] = twin
            if precision == "float64":
                reference = twin()
        calls = {}
        for label, cand in candidates.items():
            if isinstance(cand, TorchGradient):
                calls[label] = cand
            else:
                problem, state = cand
                calls[label] = lambda problem=problem, state=state: jax.block_until_ready(
                    grad(problem, state)
                )
        errors = {}
        for label, call in calls.items():  # compile / warm up, and the agreement
            out = call()
            leaves = jax.tree.leaves(out) if not label.startswith("torch") else out
            errors[label] = relative_difference(
                [
                    np.asarray(g) if not isinstance(g, torch.Tensor) else g.detach().numpy()
                    for g in leaves
                ],
                reference,
            )
        times = {label: [] for label in calls}
        for _ in range(args.repeats):
            for label, call in calls.items():
                t0 = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - t0)
        for label in calls:
            lib, *rest = label.split()
            precision = rest[-1]
            torch_median = statistics.median(times[f"torch {precision}"])
            med = statistics.median(times[label])
            rows.append(
                {
                    "case": name,
                    "candidate": label,
                    "precision": precision,
                    "median_ms": 1e3 * med,
                    "best_ms": 1e3 * min(times[label]),
                    "median_over_torch": med / torch_median,
                    "rel_diff_to_torch_float64": errors[label],
                    "times_s": times[label],
                }
            )
            print(
                f"{name:18s} {label:22s} median {1e3 * med:9.1f} ms  best "
                f"{1e3 * min(times[label]):9.1f} ms  /torch {med / torch_median:5.2f}  "
                f"diff {errors[label]:.1e}",
                flush=True,
            )
    out = {
        "benchmark": "conv_path",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
