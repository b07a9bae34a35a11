"""Stationary covariance of the SDE's solvers and of SGD on linear regression, and their cost.

Run::

    python benchmarks/sde_stationary.py [--seeds 2048] [--repeats 2] [--t1 36]
        [--out benchmarks/results/sde_stationary.json]

Linear regression ``f = w·x`` (d = 3, N = 16, noisy targets, λ = 0), SGD noise with
replacement, B = 2, η = 0.02; every path starts at the least-squares ``w*``. The estimate of
``Cov(w)`` of each candidate is the average of ``(w − w*)(w − w*)ᵀ`` over the save times
``t ∈ [6, t1]`` (step 0.5) and over the paths; its Monte-Carlo standard error comes from the
spread of the per-path averages (the paths are independent). Each is compared with the exact
stationary covariance (:func:`gradflow.testing.linreg_stationary_covariance`): the SDE's
continuous Lyapunov equation for the SDE solvers, SGD's discrete one for SGD. ``z`` is the
largest ``|Ĉ_ij − C_ij| / SE_ij`` over the entries ``i ≤ j``; ``rel`` is
``||Ĉ − C||_F / ||C||_F``.

Candidates: ``sgd`` (``gf.sgd``, with replacement); ``euler`` (the SDE, fixed step η/4, the
default); ``euler-adaptive`` (the former public choice: step-doubling Euler–Maruyama, PID at
rtol 1e-2, atol 1e-4, dtmin 1e-3, on a ``VirtualBrownianTree``); ``euler-adaptive+revisit``
(the same with Diffrax's ``ClipStepSizeController(store_rejected_steps=100)``, the documented
route for non-commutative noise); ``euler-adaptive-tight`` (rtol 1e-3, atol 1e-5,
dtmin 1e-4); ``euler-equal-cost`` (fixed-step Euler with at most as many gradients per path as
``euler-adaptive`` took, 3 per attempted step: the largest step ``0.5/k`` whose count does
not exceed it — the step divides the save interval, as a fixed-step run saves at its steps'
ends only then; otherwise it saves Diffrax's linear interpolation between two steps, whose
variance is smaller). ``--adaptive-grads G`` gives that count when ``euler-adaptive`` is not
run in the same call. ``--summary FILE...`` prints the rows of earlier runs and, for each
adaptive one, the fixed Euler step whose *exact* bias (Euler–Maruyama's own Lyapunov
equation, no sampling) equals the adaptive's measured error, with its gradients per path:
the cost of fixed-step Euler at the adaptive's accuracy. The
adaptive candidates reach the private code path (``gradflow.dynamics._sde``), which is not a
public choice. Each candidate runs ``repeats`` times with different keys (the first includes
compilation); its wall time is the last repeat's, all repeats' paths enter the estimate.
"""

from __future__ import annotations

import argparse
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from _result import now, write

import gradflow as gf
from gradflow.data import Dataset
from gradflow.dynamics import _sde
from gradflow.models import DeepLinear
from gradflow.testing import linreg_stationary_covariance

jax.config.update("jax_enable_x64", True)
FIRST_W = gf.Observable(
    "_bench_w", lambda p, s: {"w": p.to_weights(s)[0].ravel()}, {"w": ("param",)}
)

ETA, B, N, BURN = 0.02, 2, 16, 6.0


def problem():
    rng = np.random.default_rng(0)
    scales = np.array([0.8, 0.5, 0.3])
    x = rng.standard_normal((N, 3)) * np.sqrt(scales)
    y = (x @ np.linspace(1.0, -0.5, 3) + 0.5 * rng.standard_normal(N))[:, None]
    wstar = np.linalg.lstsq(x, y[:, 0], rcond=None)[0]
    net = DeepLinear(3, (), 1, key=jax.random.PRNGKey(0)).with_weights((jnp.asarray(wstar[None]),))
    return gf.Problem(net, Dataset("linreg", x, y)), x, y


def per_path(tr, wstar):
    dw = tr["w"][:, tr.t >= BURN, :] - wstar
    return np.einsum("sti,stj->sij", dw, dw) / dw.shape[1]


def compare(per, exact):
    cov = per.mean(0)
    se = per.std(0, ddof=1) / np.sqrt(len(per))
    iu = np.triu_indices(len(exact))
    z = (cov - exact)[iu] / se[iu]
    return {
        "rel": float(np.linalg.norm(cov - exact) / np.linalg.norm(exact)),
        "rel_se": float(np.linalg.norm(se) / np.linalg.norm(exact)),
        "trace_ratio": float(np.trace(cov) / np.trace(exact)),
        "trace_ratio_se": float(np.sqrt(np.sum(se.diagonal() ** 2)) / np.trace(exact)),
        "z_max": float(np.abs(z).max()),
        "z": z.round(2).tolist(),
    }


def run(name, p, key, seeds, t1, dt0=None):
    kw = dict(t1=t1, save_every=0.5, seeds=seeds, observables=(FIRST_W,), key=key)
    noise = gf.SGDNoise(ETA, B, "with-replacement")
    if name == "sgd":
        return gf.sgd(p, lr=ETA, batch_size=B, sampling="with-replacement", **kw)
    if name in ("euler", "euler-equal-cost"):
        return gf.flow(p, noise=noise, dt0=dt0, **kw)
    real = diffrax.ClipStepSizeController
    revisit = name.endswith("+revisit")
    old = _sde.SDE_SOLVERS
    try:
        _sde.SDE_SOLVERS = (*old, "euler-adaptive")
        if revisit:
            _sde.diffrax.ClipStepSizeController = lambda c, **k: real(
                c, store_rejected_steps=100, **k
            )
        tight = dict(rtol=1e-3, atol=1e-5, dtmin=1e-4) if "tight" in name else {}
        return gf.flow(p, noise=noise, solver="euler-adaptive", **tight, **kw)
    finally:
        _sde.SDE_SOLVERS = old
        _sde.diffrax.ClipStepSizeController = real


def equal_accuracy_step(rel, x, y, exact):
    """The fixed step whose exact Euler–Maruyama covariance is ``rel`` off the SDE's."""

    def err(h):
        cov = linreg_stationary_covariance(x, y, ETA, 1.0 / B, step=h)[0]
        return np.linalg.norm(cov - exact) / np.linalg.norm(exact)

    lo, hi = 1e-6, 0.5
    for _ in range(60):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if err(mid) < rel else (lo, mid)
    return lo


def summary(paths):
    import json

    _, x, y = problem()
    exact = linreg_stationary_covariance(x, y, ETA, 1.0 / B)[0]
    for path in paths:
        res = json.load(open(path))
        print(f"{path}: {res['date_start']} .. {res['date_end']}, load {res['load_average_end']}")
        for r in res["rows"]:
            line = (
                f"  {r['name']:<24} paths {r['paths']:>5} rel {r['rel']:.4f} (se {r['rel_se']:.4f})"
                f" tr/tr* {r['trace_ratio']:.4f} ± {r['trace_ratio_se']:.4f} z_max {r['z_max']:.1f}"
                f" grads/path {r['gradients_per_path']:,.0f} wall {r['wall_s']:.1f} s"
            )
            if r["name"].startswith("euler-adaptive"):
                h = equal_accuracy_step(r["rel"], x, y, exact)
                line += f"; Euler at that accuracy: dt = {h:.3f}, {36.0 / h:,.0f} grads/path"
            print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--t1", type=float, default=36.0)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--adaptive-grads", type=float, default=None)
    ap.add_argument("--summary", nargs="*", default=None)
    ap.add_argument("--out", default="benchmarks/results/sde_stationary.json")
    args = ap.parse_args()
    if args.summary:
        return summary(args.summary)
    start = now()
    p, x, y = problem()
    c = 1.0 / B
    exact_sde, wstar = linreg_stationary_covariance(x, y, ETA, c)
    exact_sgd, _ = linreg_stationary_covariance(x, y, ETA, c, step=ETA)
    names = args.only or [
        "sgd",
        "euler",
        "euler-adaptive",
        "euler-adaptive+revisit",
        "euler-equal-cost",
        "euler-adaptive-tight",
    ]
    rows, grads_adaptive = [], args.adaptive_grads
    for i, name in enumerate(names):
        dt0 = None
        if name == "euler-equal-cost":
            if grads_adaptive is None:
                continue
            dt0 = 0.5 / max(1.0, np.floor(0.5 * grads_adaptive / args.t1))
        pers, times, steps = [], [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            tr = run(name, p, jax.random.key(1000 * i + r), args.seeds, args.t1, dt0)
            times.append(time.perf_counter() - t)
            pers.append(per_path(tr, wstar))
            steps.append(np.mean(tr.stats.get("num_steps", np.nan)))
        per = np.concatenate(pers)
        exact = exact_sgd if name == "sgd" else exact_sde
        grads = float(np.mean(steps)) * (3 if name.startswith("euler-adaptive") else 1)
        if name == "sgd":
            grads = args.t1 / ETA
        if name == "euler-adaptive":
            grads_adaptive = grads
        row = {
            "name": name,
            "paths": len(per),
            "dt0": dt0,
            "steps_per_path": float(np.mean(steps)),
            "gradients_per_path": grads,
            "wall_s_first": times[0],
            "wall_s": times[-1],
            **compare(per, exact),
        }
        rows.append(row)
        print(
            f"{name:<24} paths {row['paths']:>5}  rel {row['rel']:.4f} (se {row['rel_se']:.4f})  "
            f"tr/tr* {row['trace_ratio']:.4f} ± {row['trace_ratio_se']:.4f}  "
            f"z_max {row['z_max']:.2f}"
            f"  grads/path {grads:,.0f}  wall {times[-1]:.1f} s (first {times[0]:.1f} s)",
            flush=True,
        )
    bias = float(
        np.linalg.norm(linreg_stationary_covariance(x, y, ETA, c, step=ETA / 4)[0] - exact_sde)
        / np.linalg.norm(exact_sde)
    )
    print(f"Euler–Maruyama's own bias at dt = η/4 (exact): {bias:.4f} relative")
    write(
        args.out,
        start,
        rows,
        setup={
            "eta": ETA,
            "batch_size": B,
            "n": N,
            "d": 3,
            "t1": args.t1,
            "burn_in": BURN,
            "seeds": args.seeds,
            "repeats": args.repeats,
        },
        exact_sde=exact_sde.tolist(),
        exact_sgd=exact_sgd.tolist(),
        euler_quarter_step_bias=bias,
    )


if __name__ == "__main__":
    main()
