"""SGD throughput: ``gf.sgd`` against a plain PyTorch CPU loop on the same network.

Run::

    python benchmarks/sgd_throughput.py [--steps 2000] [--repeats 5]
        [--out benchmarks/results/sgd_throughput.json]

PyTorch is a benchmark-only dependency (``pip install torch==2.13.0``, the CPU build); it is
not a dependency of gradflow.

The problem (identical on both sides): a bias-free ReLU MLP 64-128-128-1 (24,704 weights,
He-normal init from the same ``models.MLP`` weights), 1,024 Gaussian-mixture samples in
dimension 64 scaled to unit norm, targets ±1, the square loss averaged over the batch
(summed over outputs), weight decay ``λ = 1e-4`` as the gradient ``λW`` (PyTorch's
``SGD(weight_decay=λ)`` is exactly that), plain SGD with ``η = 0.05``, batches drawn without
replacement (a fresh permutation each epoch), batch sizes 16 and 128, ``--steps`` steps.

Threads: ``--threads 1`` (the default) runs both libraries single-threaded (torch
``set_num_threads(1)``; XLA ``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``). At these sizes a second thread buys little, and on a shared,
loaded machine torch's OpenMP pool collapses (we saw ~15-200 steps/s with 2 threads at load
average 6 on 2 cores, against ~3,000 with 1 thread). ``--threads 0`` keeps each default.

Each dtype runs in its own subprocess (JAX's x64 switch is process-wide): float32 is gf.sgd
with ``jax_enable_x64`` off against torch float32, float64 is gf.sgd with x64 on against
torch float64. In each process the candidates alternate repeat by repeat (so that load on a
shared machine hits all of them alike); compilation and warm-up are excluded (a first call of
the same shapes, with another key / seed); the median over repeats is reported.

Candidates:

* ``gf.sgd``: the public call, saving observables at t = 0 and t = t1 only (``ts=[0, t1]``),
  wall time of the whole call (argument checks, the jitted run, the device-to-host copy and
  building the Trajectory).
* ``gf.sgd (101 saves)``: the same with the default save grid (101 observation points, each
  a full-data forward pass plus metrics).
* ``jax minimal``: a hand-written jitted ``fori_loop`` of plain SGD with the batch gather and
  one gradient per step and batch indices precomputed outside (no per-step permutation, no
  finiteness checks, no Optax): what gf.sgd could approach.
* ``jax minimal + perm/step``: the same, drawing the epoch's permutation at every step as
  ``gradflow.dynamics._sgd.batch_indices`` does (isolates that cost).
* ``jax minimal + perm/epoch``: the same, drawing the permutation once per epoch (carried
  through the loop, refreshed under ``lax.cond``): the suggested fix, same batches.
* ``torch``: a plain eager PyTorch loop (``randperm`` per epoch, index, forward, backward,
  ``optimizer.step``).

Also checked: 50 full-batch steps (GD) of gf.sgd and of the torch loop from the same weights
agree to float rounding (float64 process), i.e. both sides train the same network.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

N, DIM, WIDTHS, OUT = 1024, 64, (128, 128), 1
LR, LAM = 0.05, 1e-4
BATCHES = (16, 128)


# ---------------------------------------------------------------------------------------
# worker: one dtype, all candidates, in one process
# ---------------------------------------------------------------------------------------


def worker(dtype: str, steps: int, repeats: int, threads: int) -> dict:
    x64 = dtype == "float64"
    os.environ["JAX_ENABLE_X64"] = "1" if x64 else "0"
    if threads > 0:  # before JAX starts its CPU client
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
            + f" intra_op_parallelism_threads={threads}"
        )
    import jax

    jax.config.update("jax_enable_x64", x64)
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np
    import torch

    import gradflow as gf
from gradflow.dynamics._sgd import batch_indices
    from gradflow.models import MLP

    if threads > 0:
        torch.set_num_threads(threads)
    tdtype = torch.float64 if x64 else torch.float32
    data = gf.data.load(
        "gaussian-mixture", n_train=N, n_test=0, dim=DIM, classes=2, unit_norm=True, seed=0
    )
    net = MLP(DIM, WIDTHS, OUT, key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, data, weight_decay=LAM)
    assert problem.x_train.dtype == jnp.dtype(dtype), problem.x_train.dtype
    w0 = [np.asarray(w) for w in net.weights]
    x_np, y_np = np.asarray(data.x_train, dtype), np.asarray(data.y_train, dtype)

    # ---- torch -----------------------------------------------------------------------
    X, Y = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def torch_model():
        layers = []
        for k, w in enumerate(w0):
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.array(w, dtype)))
            layers.append(lin)
            if k < len(w0) - 1:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    def torch_run(batch, n_steps, seed, full_batch=False):
        torch.manual_seed(seed)
        model = torch_model()
        opt = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=LAM)
        per_epoch = N // batch
        perm = None
        for j in range(n_steps):
            block = j % per_epoch
            if block == 0:
                perm = torch.arange(N) if full_batch else torch.randperm(N)
            idx = perm[block * batch : (block + 1) * batch]
            xb, yb = X[idx], Y[idx]
            opt.zero_grad(set_to_none=True)
            loss = ((model(xb) - yb) ** 2).sum(1).mean()
            loss.backward()
            opt.step()
        return model, float(loss.detach())

    # ---- gf.sgd ------------------------------------------------------------------------
    def gf_run(batch, n_steps, seed, saves="ends"):
        ts = [0.0, n_steps * LR] if saves == "ends" else None
        tr = gf.sgd(
            problem, lr=LR, batch_size=batch, steps=n_steps, ts=ts, key=jax.random.PRNGKey(seed)
        )
        return tr

    # ---- minimal JAX loops (profiling) ------------------------------------------------
    x_j, y_j = problem.x_train, problem.y_train

    def batch_loss(ws, xb, yb):
        f = jax.vmap(net.apply, (None, 0))(ws, xb)
        l2 = sum(jnp.sum(w**2) for w in ws)
        return jnp.mean(jnp.sum((f - yb) ** 2, axis=1)) + 0.5 * LAM * l2

    @eqx.filter_jit
    def jax_minimal(ws, schedule):
        def body(j, ws):
            idx = schedule[j]
            g = jax.grad(batch_loss)(ws, x_j[idx], y_j[idx])
            return jax.tree.map(lambda w, d: w - LR * d, ws, g)

        return jax.lax.fori_loop(0, schedule.shape[0], body, ws)

    @eqx.filter_jit
    def jax_minimal_perm(ws, key, n_steps, batch):
        def body(j, ws):
            idx = batch_indices(key, j, N, batch, "without-replacement")
            g = jax.grad(batch_loss)(ws, x_j[idx], y_j[idx])
            return jax.tree.map(lambda w, d: w - LR * d, ws, g)

        return jax.lax.fori_loop(0, n_steps, body, ws)

    @eqx.filter_jit
    def jax_minimal_perm_epoch(ws, key, n_steps, batch):
        """The suggested fix: draw the epoch's permutation once (lax.cond), slice per step."""
        per_epoch = N // batch

        def body(j, carry):
            ws, perm = carry
            epoch, block = j // per_epoch, j % per_epoch
            perm = jax.lax.cond(
                block == 0,
                lambda: jax.random.permutation(jax.random.fold_in(key, epoch), N),
                lambda: perm,
            )
            idx = jnp.sort(jax.lax.dynamic_slice(perm, (block * batch,), (batch,)))
            g = jax.grad(batch_loss)(ws, x_j[idx], y_j[idx])
            return jax.tree.map(lambda w, d: w - LR * d, ws, g), perm

        return jax.lax.fori_loop(0, n_steps, body, (ws, jnp.arange(N)))[0]

    ws0 = tuple(jnp.asarray(w) for w in w0)

    def schedule(batch, n_steps, seed):
        rng = np.random.default_rng(seed)
        per_epoch = N // batch
        rows = []
        for _e in range(-(-n_steps // per_epoch)):
            perm = np.sort(rng.permutation(N)[: per_epoch * batch].reshape(per_epoch, batch), 1)
            rows.append(perm)
        return jnp.asarray(np.concatenate(rows)[:n_steps])

    def run_minimal(batch, n_steps, seed):
        sch = schedule(batch, n_steps, seed)  # host-side, outside the timed region
        return lambda: jax.block_until_ready(jax_minimal(ws0, sch))

    candidates = {
        "gf.sgd": lambda b, s: lambda: gf_run(b, steps, s),
        "gf.sgd (101 saves)": lambda b, s: lambda: gf_run(b, steps, s, saves="default"),
        "jax minimal": lambda b, s: run_minimal(b, steps, s),
        "jax minimal + perm/step": lambda b, s: (
            lambda: jax.block_until_ready(jax_minimal_perm(ws0, jax.random.PRNGKey(s), steps, b))
        ),
        "jax minimal + perm/epoch": lambda b, s: (
            lambda: jax.block_until_ready(
                jax_minimal_perm_epoch(ws0, jax.random.PRNGKey(s), steps, b)
            )
        ),
        "torch": lambda b, s: lambda: torch_run(b, steps, s),
    }

    results = {}
    for batch in BATCHES:
        # warm-up / compilation (not timed), with another seed
        for make in candidates.values():
            make(batch, 999)()
        times = {name: [] for name in candidates}
        for rep in range(repeats):
            for name, make in candidates.items():
                fn = make(batch, rep)
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        results[str(batch)] = {
            name: {
                "seconds": ts,
                "median_s": statistics.median(ts),
                "steps_per_s": steps / statistics.median(ts),
                "steps_per_s_best": steps / min(ts),
            }
            for name, ts in times.items()
        }

    # ---- same network: 50 GD steps on both sides ------------------------------------
    gd_steps = 50
    tr = gf.sgd(
        problem,
        lr=LR,
        batch_size=N,
        steps=gd_steps,
        ts=[0.0, gd_steps * LR],
        key=jax.random.PRNGKey(0),
    )
    model, _ = torch_run(N, gd_steps, 0, full_batch=True)
    tw = [m.weight.detach().numpy() for m in model if isinstance(m, torch.nn.Linear)]
    num = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(tr.final_params, tw, strict=True)))
    den = np.sqrt(sum(np.sum(b**2) for b in tw))
    moved = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(w0, tw, strict=True))) / den

    # a final loss of each side at B=16, for the record (they sample differently)
    final = {
        "gf.sgd": float(gf_run(16, steps, 0)["loss"][-1]),
        "torch (last batch loss)": torch_run(16, steps, 0)[1],
    }
    return {
        "dtype": dtype,
        "results": results,
        "gd_check": {
            "steps": gd_steps,
            "rel_weight_difference": float(num / den),
            "rel_weight_change_over_run": float(moved),
        },
        "final_loss_b16": final,
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_devices": [str(d) for d in jax.devices()],
    }


# ---------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("jax", "jaxlib", "equinox", "optax", "numpy", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        out["git_revision"] = rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        lines = lscpu.splitlines()[:20]
    except OSError:
        lines = []
    model = next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "lscpu_head": lines,
        "platform": platform.platform(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads for torch and XLA (0: each library's default)",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "sgd_throughput.json"))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.repeats, args.threads)))
        return

    load0 = os.getloadavg()
    t_start = time.time()
    runs = []
    for dtype in args.dtypes.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            dtype,
            "--steps",
            str(args.steps),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"worker {dtype} failed")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "sgd_throughput",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
        "load_average_1min": {"start": load0[0], "end": os.getloadavg()[0]},
        "versions": _versions(),
        "setup": {
            "network": f"bias-free ReLU MLP {DIM}-{'-'.join(map(str, WIDTHS))}-{OUT}",
            "n_train": N,
            "lr": LR,
            "weight_decay": LAM,
            "batch_sizes": list(BATCHES),
            "steps": args.steps,
            "repeats": args.repeats,
            "threads": args.threads,
            "sampling": "without replacement, a permutation per epoch",
            "data": "gaussian-mixture dim 64, unit_norm, 2 classes, seed 0",
        },
        "runs": runs,
        "wall_seconds": time.time() - t_start,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [
        "| dtype | batch | candidate | steps/s (median) | best | median / torch median |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for run in report["runs"]:
        for batch, res in run["results"].items():
            torch_sps = res["torch"]["steps_per_s"]
            for name, r in res.items():
                lines.append(
                    f"| {run['dtype']} | {batch} | {name} | {r['steps_per_s']:,.0f} | "
                    f"{r['steps_per_s_best']:,.0f} | "
                    f"{r['steps_per_s'] / torch_sps:.2f} |"
                )
    for run in report["runs"]:
        g = run["gd_check"]
        lines.append(
            f"\n{run['dtype']}: {g['steps']} GD steps, ||W_gf − W_torch|| / ||W_torch|| "
            f"= {g['rel_weight_difference']:.2e} (the weights moved "
            f"{g['rel_weight_change_over_run']:.2e} relative); torch threads "
            f"{run['torch_threads']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
