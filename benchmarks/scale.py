"""Full-batch gradients at the paper's scale: seconds and peak memory against N and P, for an MLP
and the paper CNN on random CIFAR-shaped data, in float32 and float64, beside PyTorch.

Run::

    python benchmarks/scale.py [--repeats 3] [--threads 1] [--cap-s 75]
        [--out benchmarks/results/scale.json]
    python benchmarks/scale.py --tiny          # seconds: tiny sizes, checks that it runs
    python benchmarks/scale.py --device gpu    # the GPU subset (benchmarks/device.sh)
    python benchmarks/scale.py --only paper-cnn:1e5 --ns 4000,16000,64000 --precisions float32 \
        --repeats 2 --out benchmarks/results/scale_paper_cnn_f32.json   # one series, these N

PyTorch is a benchmark-only dependency (``pip install torch==2.13.0``, the CPU build).

**Points.** Inputs ``(N, 3, 32, 32)`` (standard normal), targets ±1 (``C = 1``), square loss,
``λ = 0``, normalization ``none``; ``N ∈ {1k, 4k, 16k, 64k}``. Networks (bias-free ReLU):

* MLP ``3072 → h → h → 1``, ``h = 3, 32, 290``: ``P = 9,228 / 99,360 / 975,270``;
* paper CNN (``gradflow.models.paper_cnn``: 3×3 stride-2 convolutions with padding 1, then a
  dense layer), channels ``(10, 20, 40)``, ``(32, 64, 128)`` (the paper's), ``(104, 208, 416)``:
  ``P = 9,910 / 95,072 / 982,904``.

**What is measured**, one subprocess (``--worker``) per network, its points in order of N
(float32, then float64): one full-batch gradient ``jax.grad(problem.loss)(state)`` of
``gf.Problem(net, data, precision=...)`` with its default ``chunk_size`` (activations within
32 MiB on a CPU since 2026-12-02, 256 MiB before), jitted; where that chunking is active also
``chunk_size = N`` ("jax unchunked"); and
PyTorch eager (autograd) on the same weights and data (``x64`` on; each point's data are made
afresh). Seconds: per candidate a first call (compilation / warm-up, reported apart), then
``--repeats`` timed calls, the candidates alternating; medians ("jax unchunked" is timed once
where one call takes over 5 s). Memory: the peak resident set size (``VmHWM`` of
``/proc/self/status``, reset through ``/proc/self/clear_refs`` after ``malloc_trim`` before the
call) during the first timed call of each candidate, and the same above the resident size just
before it (the data are resident already: ``N × 3072`` floats for the numpy array, shared with
torch, plus JAX's copy); JAX's compiled ``memory_analysis()`` temporaries too. Gradients are
compared with torch's (relative difference of the concatenated gradient).

**Skips**, each with its reason recorded: on a CPU, the grid ``CPU_NS`` (the paper CNN up to
N = 4k at P ≈ 1e5) and no paper CNN at ``P ≈ 1e6`` (≈ 10x the ``P ≈ 1e5`` cost); a point whose
estimated cost (one gradient of every candidate at the previous N, scaled linearly in N, times
the calls) exceeds ``--cap-s`` seconds, except the paper CNN at N = 1k and 4k (``MUST``); and
every point after ``--budget-s`` seconds but those (the paper CNN at N = 4k runs last).
``--device gpu`` runs every point within the budget (torch on CUDA if it has CUDA, else no
torch). ``--ns`` (and ``--precisions``) replace the grid: exactly these N (precisions) for every
selected series, each point run whatever its estimate (as ``MUST``).

**Fits.** Growth exponents: least squares of ``log t`` on ``log N`` (each network and
precision, ≥ 2 points), on ``log P`` (each N with ≥ 2 sizes) and jointly
``log t = a + b log N + c log P``.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NS = (1000, 4000, 16000, 64000)
MLP_WIDTHS = {"1e4": 3, "1e5": 32, "1e6": 290}
CNN_CHANNELS = {"1e4": (10, 20, 40), "1e5": (32, 64, 128), "1e6": (104, 208, 416)}
PRECISIONS = ("float32", "float64")
TINY = {"ns": (64, 128), "mlp": {"1e4": 3}, "cnn": {"1e4": (2, 4, 8)}}


# ---------------------------------------------------------------------------------------
# worker: one point in a fresh process
# ---------------------------------------------------------------------------------------


def _status(key: str) -> int:
    """``VmHWM`` / ``VmRSS`` of this process, bytes (0 where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> int:
    """Return freed heap to the OS and reset the peak RSS to the current RSS; the RSS then."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS")


def point(spec: dict, net) -> dict:
    """One point (``n``, ``precision``) of a series; see the module docstring."""
    import equinox as eqx
    import jax
    import numpy as np
    from _torch_ref import TorchGradient, relative_difference

    import gradflow as gf

    n, precision = spec["n"], spec["precision"]
    dtype = np.dtype(precision)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, 32, 32), dtype=np.float32).astype(dtype, copy=False)
    y = np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0).astype(dtype)
    data = type("Data", (), dict(x_train=x, y_train=y, x_test=None, y_test=None, name="random"))
    problem = gf.Problem(net, data, precision=precision)
    state = problem.initial_state()
    params = sum(w.size for w in net.weights)
    result = {**spec, "params": int(params), "chunk_size": problem.chunk_size}
    if hasattr(net, "conv"):  # the convolution path the CNN took (LocalCNN(conv="auto"))
        from gradflow.models import conv_path

        result["conv"] = net.conv if net.conv != "auto" else conv_path(dtype)
    compiled = {}

    def jax_call(label, p):
        def call():
            if label not in compiled:  # the first call compiles (and is timed as such)
                dyn, static = eqx.partition(p, eqx.is_array)
                fn = jax.jit(lambda d, s: jax.grad(eqx.combine(d, static).loss)(s))
                compiled[label] = (fn.lower(dyn, state).compile(), dyn)
            fn, dyn = compiled[label]
            return jax.block_until_ready(fn(dyn, state))

        return call

    calls = {"jax": jax_call("jax", problem)}
    if problem.chunk_size < n and n <= spec.get("unchunked_max_n", n):
        # the same problem in one chunk (it shares the arrays); not above --unchunked-max-n
        whole = copy.copy(problem)
        object.__setattr__(whole, "chunk_size", n)
        calls["jax unchunked"] = jax_call("jax unchunked", whole)
    if spec["torch"]:
        device = "cuda" if spec["device"] == "gpu" else "cpu"
        calls["torch"] = TorchGradient(net, state, "none", x, y, device=device)
    memory, grads, first_s = {}, {}, {}
    times = {label: [] for label in calls}
    for label, call in calls.items():
        _reset_peak()
        t0 = time.perf_counter()
        grads[label] = call()  # the first call: compilation (jax) or warm-up (torch)
        first_s[label] = time.perf_counter() - t0
        first_peak = _status("VmHWM")
        base = _reset_peak()
        t0 = time.perf_counter()
        call()  # the memory run, timed: the first repeat
        times[label].append(time.perf_counter() - t0)
        peak = _status("VmHWM")
        memory[label] = {
            "peak_rss_bytes": peak,
            "above_before_bytes": peak - base,
            "first_call_peak_rss_bytes": first_peak,
        }
        memory[label].update(_device_peak(label))
    for label, (fn, _) in compiled.items():
        stats = fn.memory_analysis()
        memory[label]["xla_temp_bytes"] = int(getattr(stats, "temp_size_in_bytes", 0))
    if spec["torch"]:
        for label in calls:
            if label != "torch":
                leaves = [np.asarray(g) for g in jax.tree.leaves(grads[label])]
                result[f"rel_diff_{label.replace(' ', '_')}_vs_torch"] = relative_difference(
                    leaves, grads["torch"]
                )
    # the unchunked variant only once more where it is expensive (it measures the chunks' cost)
    timed = {k: c for k, c in calls.items() if k != "jax unchunked" or times[k][0] < 5.0}
    for _ in range(spec["repeats"] - 1):
        for label, call in timed.items():
            t0 = time.perf_counter()
            call()
            times[label].append(time.perf_counter() - t0)
    result.update(
        times_s=times,
        median_s={k: statistics.median(v) for k, v in times.items()},
        first_call_s=first_s,
        memory=memory,
        data_bytes=int(x.nbytes),
        max_rss_bytes=_maxrss(),
    )
    return result  # its arrays and executables are freed on return (worker clears the caches)


def worker(series: dict) -> None:
    """A series of points of one network (N increasing) in one process, one JSON line each."""
    from _torch_ref import set_threads, set_torch_threads

    set_threads(series["threads"])
    import jax

    jax.config.update("jax_enable_x64", True)
    from gradflow.models import MLP, paper_cnn

    if series["torch"]:
        set_torch_threads(series["threads"])
    key = jax.random.PRNGKey(0)
    if series["model"] == "mlp":
        h = series["size"]
        net = MLP(3 * 32 * 32, (h, h), 1, key=key)
    else:
        net = paper_cnn((3, 32, 32), 1, channels=tuple(series["size"]), key=key)
    last = {}  # precision -> (n, seconds of one gradient of every candidate)
    for spec in series["points"]:
        spec = {**{k: v for k, v in series.items() if k != "points"}, **spec}
        evals = spec["repeats"] + 1
        reason = None
        if time.time() > series["deadline"] and not spec.get("must"):
            reason = "the run's time budget was spent (--budget-s)"
        elif spec["precision"] in last and not spec.get("must"):
            n0, t0 = last[spec["precision"]]
            estimate = t0 * spec["n"] / n0 * evals
            if estimate > spec["cap_s"]:
                reason = (
                    f"estimated {estimate:.0f} s > cap {spec['cap_s']:.0f} s (one gradient of "
                    f"every candidate ≈ {t0 * spec['n'] / n0:.1f} s, from N = {n0})"
                )
        if reason:
            row = {**spec, "skipped": reason}
        else:
            row = point(spec, net)
            jax.clear_caches()
            last[spec["precision"]] = (spec["n"], sum(row["median_s"].values()))
        print(json.dumps(row), flush=True)


def _device_peak(label: str) -> dict:
    """GPU memory: JAX's cumulative ``peak_bytes_in_use`` (so the first JAX candidate's is its
    own), torch's ``max_memory_allocated`` (reset before each call); {} on a CPU."""
    import jax

    device = jax.devices()[0]
    if device.platform != "gpu":
        return {}
    out = {}
    if label.startswith("jax"):
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak_bytes_cumulative"] = int(stats["peak_bytes_in_use"])
    else:
        import torch

        if torch.cuda.is_available():
            out["device_peak_bytes"] = int(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
    return out


def _maxrss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ---------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------


#: The order of the run (the most wanted numbers first, in case the budget runs out).
ORDER = [  # (network, P, the N of this series; None: all)
    ("paper-cnn", "1e5", (1000,)),
    ("mlp", "1e5", None),
    ("mlp", "1e4", None),
    ("paper-cnn", "1e4", None),
    ("mlp", "1e6", None),
    ("paper-cnn", "1e6", None),
    ("paper-cnn", "1e5", (4000, 16000, 64000)),  # the expensive ones last (MUST: past the budget)
]


#: The CPU grid (this machine's time): N per network and precision. Enough for the growth
#: exponents in N (each network) and in P (at N = 1k and 4k), the paper CNN at N = 4k and the
#: memory at N = 64k in float32; the points in MUST run whatever their estimate.
_BOTH = ("float32", "float64")
CPU_NS = {
    ("paper-cnn", "1e5"): {p: (1000, 4000) for p in _BOTH},
    ("mlp", "1e5"): {"float32": NS, "float64": (1000, 4000, 16000)},
    ("mlp", "1e4"): {"float32": (1000, 4000, 64000), "float64": (1000, 4000)},
    ("paper-cnn", "1e4"): {p: (1000, 4000) for p in _BOTH},
    ("mlp", "1e6"): {p: (1000, 4000) for p in _BOTH},
}
MUST = {("paper-cnn", "1e5", 1000), ("paper-cnn", "1e5", 4000)}


def series_list(args, done=frozenset()):
    """One series per network: its points (N increasing, float32 then float64 at each N)."""
    ns = TINY["ns"] if args.tiny else NS
    if args.ns:  # exactly these N (and precisions) for every selected series, all run
        ns = tuple(args.ns)
    precisions = tuple(args.precisions) if args.precisions else PRECISIONS
    sizes = {
        "mlp": TINY["mlp"] if args.tiny else MLP_WIDTHS,
        "paper-cnn": TINY["cnn"] if args.tiny else CNN_CHANNELS,
    }
    cpu_grid = args.device == "cpu" and not args.tiny and not args.ns
    order = ORDER if cpu_grid else [(m, q, None) for m, q in dict.fromkeys(o[:2] for o in ORDER)]
    for model, p_label, these in order:
        if p_label not in sizes[model] or (args.only and f"{model}:{p_label}" not in args.only):
            continue
        points, skipped = [], []
        for n in ns if these is None else these:
            for precision in precisions:
                spec = dict(n=n, precision=precision)
                if args.ns:
                    spec["must"] = True
                if args.device == "cpu" and not args.tiny:
                    if model == "paper-cnn" and p_label == "1e6":
                        skipped.append(
                            {
                                **spec,
                                "skipped": "the paper CNN at P≈1e6 on a CPU: ≈ 10x the "
                                "P≈1e5 cost, tens of seconds per gradient at N = 1k (GPU subset)",
                            }
                        )
                        continue
                    if args.ns:
                        pass
                    elif n not in CPU_NS.get((model, p_label), {}).get(precision, ()):
                        continue
                    else:
                        spec["must"] = (model, p_label, n) in MUST
                if (model, p_label, n, precision) in done:
                    continue  # measured by the run given to --merge
                points.append(spec)
        yield model, p_label, sizes[model][p_label], points, skipped


def run_series(series: dict, timeout: float, echo) -> list[dict]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(series)]
    rows = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        start = time.time()
        for line in proc.stdout:
            if line.startswith("{"):
                rows.append(json.loads(line))
                echo(rows[-1])
            if time.time() - start > timeout:
                proc.kill()
                break
        proc.wait()
    done = {(r["n"], r["precision"]) for r in rows}
    base = {k: v for k, v in series.items() if k != "points"}
    for spec in series["points"]:
        if (spec["n"], spec["precision"]) not in done:
            rows.append({**base, **spec, "skipped": f"worker ended (exit {proc.returncode})"})
    return rows


def _echo(row: dict) -> None:
    name = f"{row['model']:9s} P{row['p_label']} {row['precision']} N={row['n']:>6d}"
    if "skipped" in row:
        print(f"{name}: skipped: {row['skipped']}", flush=True)
        return
    med = "  ".join(f"{k} {1e3 * v:.1f} ms" for k, v in row["median_s"].items())
    mem = "  ".join(f"{k} {m['peak_rss_bytes'] / 2**20:.0f} MiB" for k, m in row["memory"].items())
    print(f"{name} P={row['params']:,d} k={row['chunk_size']}: {med} | peak RSS {mem}", flush=True)


def fit(rows) -> dict:
    """Growth exponents of the median seconds in N and P (see the module docstring)."""
    import numpy as np

    out = {}
    done = [r for r in rows if "median_s" in r]
    keys = sorted({(r["model"], r["precision"]) for r in done})
    for (model, precision), lib in itertools.product(keys, ("jax", "torch")):
        sel = [r for r in done if (r["model"], r["precision"]) == (model, precision)]
        sel = [r for r in sel if lib in r["median_s"]]
        if not sel:
            continue
        entry = {"in_N": {}, "in_P": {}}
        for p_label in sorted({r["p_label"] for r in sel}):
            pts = [(r["n"], r["median_s"][lib]) for r in sel if r["p_label"] == p_label]
            if len(pts) >= 2:
                a = np.log(np.array(pts, dtype=float))
                entry["in_N"][p_label] = float(np.polyfit(a[:, 0], a[:, 1], 1)[0])
        for n in sorted({r["n"] for r in sel}):
            pts = [(r["params"], r["median_s"][lib]) for r in sel if r["n"] == n]
            if len(pts) >= 2:
                a = np.log(np.array(pts, dtype=float))
                entry["in_P"][str(n)] = float(np.polyfit(a[:, 0], a[:, 1], 1)[0])
        if len(sel) >= 3 and len({r["n"] for r in sel}) > 1 and len({r["params"] for r in sel}) > 1:
            log_n, log_p = np.log([r["n"] for r in sel]), np.log([r["params"] for r in sel])
            design = np.column_stack([np.ones(len(sel)), log_n, log_p])
            coef = np.linalg.lstsq(design, np.log([r["median_s"][lib] for r in sel]), rcond=None)[0]
            entry["joint"] = {"N": float(coef[1]), "P": float(coef[2]), "points": len(sel)}
        out[f"{model} {precision} {lib}"] = entry
    return out


def _merge(earlier: list[dict], new: list[dict]) -> list[dict]:
    """Per point: a measured row of ``new``, else of ``earlier``, else ``new``'s skip, else
    ``earlier``'s (the order of ``earlier``, then ``new``'s other points)."""

    def key(r):
        return (r["model"], r["p_label"], r["n"], r["precision"])

    best: dict = {}
    for r in earlier + new:  # later rows win, measured rows win over skips
        k = key(r)
        if k not in best or "median_s" in r or "median_s" not in best[k]:
            best[k] = r
    return list(best.values())


def summarize(path) -> str:
    """Markdown tables of a result file (the ones in benchmarks/README.md)."""
    d = json.loads(Path(path).read_text())
    mib = 2.0**20
    out = [
        "| network | P | precision | N | chunk | jax ms | jax unchunked ms | torch ms | "
        "jax / torch | peak RSS jax / unchunked / torch (MiB) | XLA temp (MiB) | grad diff |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    rows = sorted(
        (r for r in d["rows"] if "median_s" in r),
        key=lambda r: (r["model"], r["params"], r["precision"], r["n"]),
    )
    for r in rows:
        med, mem = r["median_s"], r["memory"]

        def ms(k, med=med):
            return f"{1e3 * med[k]:,.1f}" if k in med else "—"

        peaks = " / ".join(
            f"{mem[k]['peak_rss_bytes'] / mib:,.0f}" if k in mem else "—"
            for k in ("jax", "jax unchunked", "torch")
        )
        ratio = f"{med['jax'] / med['torch']:.2f}" if "torch" in med else "—"
        diff = r.get("rel_diff_jax_vs_torch")
        diff = "—" if diff is None else f"{diff:.1e}"
        temp = mem["jax"].get("xla_temp_bytes", 0) / mib
        conv = f" ({r['conv']})" if "conv" in r else ""
        out.append(
            f"| {r['model']}{conv} | {r['params']:,} | {r['precision']} | {r['n']:,} | "
            f"{r['chunk_size']:,} | {ms('jax')} | {ms('jax unchunked')} | {ms('torch')} | "
            f"{ratio} | {peaks} | {temp:,.0f} | {diff} |"
        )
    skipped = [r for r in d["rows"] if "skipped" in r]
    if skipped:
        out += ["", "Skipped:", ""]
        for r in skipped:
            out.append(
                f"- {r['model']} P≈{r['p_label']} {r['precision']} N={r['n']:,}: {r['skipped']}"
            )
    out += ["", "| fit | in N (per P) | in P (per N) | joint N, P |", "|---|---|---|---|"]
    for name, e in d["exponents"].items():
        in_n = ", ".join(f"P≈{k}: {v:.2f}" for k, v in e["in_N"].items()) or "—"
        in_p = ", ".join(f"N={int(k):,}: {v:.2f}" for k, v in e["in_P"].items()) or "—"
        joint = f"{e['joint']['N']:.2f}, {e['joint']['P']:.2f}" if "joint" in e else "—"
        out.append(f"| {name} | {in_n} | {in_p} | {joint} |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per candidate")
    parser.add_argument("--threads", type=int, default=1, help="0: each library's default")
    parser.add_argument("--cap-s", type=float, default=75.0, help="estimated seconds per point")
    parser.add_argument(
        "--budget-s", type=float, default=780.0, help="no new point after this many seconds"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a check that it runs")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--only", nargs="+", default=[], metavar="MODEL:P", help="these series, e.g. mlp:1e5"
    )
    parser.add_argument(
        "--ns",
        type=lambda v: [int(n) for n in v.split(",")],
        default=None,
        metavar="N,N,...",
        help="exactly these N for every selected series (replaces the grid; all run)",
    )
    parser.add_argument(
        "--precisions",
        type=lambda v: v.split(","),
        default=None,
        metavar="P,P",
        help="with --ns: these precisions (default both)",
    )
    parser.add_argument(
        "--unchunked-max-n",
        type=int,
        default=None,
        metavar="N",
        help="no 'jax unchunked' comparison above this N (its memory: the paper CNN in "
        "float32 holds ~15 GiB unchunked at N = 64k)",
    )
    parser.add_argument(
        "--merge",
        default=None,
        metavar="JSON",
        help="a result file of an earlier run: its measured rows are kept, this run's replace "
        "the rows it measures (a run split in two, e.g. by --only)",
    )
    parser.add_argument("--summarize", metavar="JSON", help="print the tables of a result file")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    torch_ok = not args.no_torch
    if torch_ok:
        try:
            import torch

            torch_ok = args.device == "cpu" or torch.cuda.is_available()
        except ImportError:
            torch_ok = False
    default = "scale_gpu.json" if args.device == "gpu" else "scale.json"
    out_path = Path(args.out or HERE / "results" / ("scale_tiny.json" if args.tiny else default))
    rows, started = [], time.time()
    load_start = os.getloadavg()
    done = set()
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        done = {
            (r["model"], r["p_label"], r["n"], r["precision"])
            for r in earlier["rows"]
            if "median_s" in r
        }
    for model, p_label, size, points, skipped in series_list(args, done):
        base = dict(
            model=model,
            p_label=p_label,
            size=size,
            repeats=args.repeats,
            threads=args.threads,
            device=args.device,
            torch=torch_ok,
            cap_s=args.cap_s,
        )
        if args.unchunked_max_n is not None:
            base["unchunked_max_n"] = args.unchunked_max_n
        for row in skipped:
            rows.append({**base, **row})
            _echo(rows[-1])
        if not points:
            continue
        series = {**base, "points": points, "deadline": started + args.budget_s}
        rows.extend(run_series(series, timeout=args.budget_s + 600, echo=_echo))
    runs = [
        {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "wall_s": time.time() - started,
            "only": args.only,
            "ns": args.ns,
            "precisions": args.precisions,
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "env": {k: os.environ.get(k) for k in ("XLA_FLAGS", "GLIBC_TUNABLES")},
        }
    ]
    if args.merge:
        rows = _merge(earlier["rows"], rows)
        runs = earlier.get("runs", [{"date": earlier["date"], "wall_s": earlier["wall_s"]}]) + runs
    result = {
        "benchmark": "scale",
        "runs": runs,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "tiny": args.tiny,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "threads": args.threads,
        "repeats": args.repeats,
        "cap_s": args.cap_s,
        "wall_s": time.time() - started,
        "rows": rows,
        "exponents": fit(rows),
    }
    try:
        import jax

        result["jax"] = jax.__version__
        import torch

        result["torch"] = torch.__version__
    except ImportError:
        pass
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["exponents"], indent=1))
    print(f"wrote {out_path} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
