"""Bit-for-bit comparison of a few small runs between two checkouts.

    python benchmarks/same_runs.py save OUT.npz [--full]   # in each checkout (own environment)
    python benchmarks/same_runs.py compare A.npz B.npz
    (``--only=sde,sgd``: only these runs)

``save`` runs the flow (Heun and its default controller; with ``--full`` also RKC2, the
stiffness record, fixed-step Heun), the SDE of SGD (two seeds), SGD (without and with
replacement, momentum 0.9, two seeds) and GD on a tiny problem, directly and through
:func:`gradflow.dynamics._batch.run_plans` (the sweeps' path), and stores every observable and the
final parameters; ``compare`` says which arrays differ and by how much (none: the arithmetic is
unchanged).
"""

import sys

import diffrax
import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import gradflow as gf  # noqa: E402
from gradflow.dynamics._batch import plan, run_plans

#: ``--full``: also RKC2, the stiffness record, fixed-step Heun, WN, a one-seed SDE and GD.
FULL = "--full" in sys.argv
#: ``--only a,b``: save (or compare) only these runs.
ONLY = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")), None)
from gradflow.models import MLP  # noqa: E402


def _problem(normalization="lm-last"):
    data = gf.data.load("gaussian-mixture", n_train=32, n_test=8, dim=5, classes=2, seed=0)
    net = MLP(5, (6, 6), 1, init_scale=0.5, key=jax.random.PRNGKey(2))
    return gf.Problem(net, data, weight_decay=1e-2, normalization=normalization)


def _runs():
    p = _problem()
    key = jax.random.PRNGKey(3)
    noise = gf.SGDNoise(lr=0.05, batch_size=8)
    yield "flow_heun", lambda: gf.flow(p, t1=4.0, save_every=0.5)
    if FULL:
        yield "flow_rkc2", lambda: gf.flow(p, t1=4.0, save_every=0.5, solver="rkc2")
        yield "flow_stiff", lambda: gf.flow(p, t1=2.0, save_every=0.5, stiffness=True)
        yield (
            "flow_fixed",
            lambda: gf.flow(
                p, t1=2.0, save_every=0.5, dt0=0.05, stepsize_controller=diffrax.ConstantStepSize()
            ),
        )
        yield "flow_wn", lambda: gf.flow(_problem("wn"), t1=2.0, save_every=0.5)
    yield "sde", lambda: gf.flow(p, t1=2.0, save_every=0.5, noise=noise, key=key, seeds=2)
    if FULL:
        yield "sde1", lambda: gf.flow(p, t1=2.0, save_every=0.25, noise=noise, key=key)
    yield "sgd", lambda: gf.sgd(p, lr=0.05, batch_size=8, t1=2.0, save_every=0.25, key=key)
    yield (
        "sgd_repl",
        lambda: gf.sgd(
            p, lr=0.05, batch_size=8, t1=2.0, key=key, sampling="with-replacement", seeds=2
        ),
    )
    yield "sgd_mom", lambda: gf.sgd(p, lr=0.05, batch_size=8, t1=2.0, key=key, momentum=0.9)
    if FULL:
        yield "gd", lambda: gf.sgd(p, lr=0.05, batch_size=32, t1=2.0, save_every=0.5, key=key)
    if ONLY is not None and not any(n.startswith("plan") for n in ONLY):
        return
    plans = [
        plan(gf.flow, p, t1=2.0, save_every=0.5),
        plan(gf.sgd, p, lr=0.05, batch_size=8, t1=2.0, key=key, momentum=0.9),
        plan(gf.sgd, p, lr=0.05, batch_size=8, t1=2.0, key=key, seeds=2),
    ]
    for i, traj in enumerate(run_plans(plans)):
        yield f"plan{i}", lambda traj=traj: traj


def save(path):
    out = {}
    for name, run in _runs():
        if ONLY is not None and name not in ONLY:
            continue
        traj = run()
        for k in traj.observables:
            out[f"{name}/{k}"] = np.asarray(traj[k])
        out[f"{name}/t"] = np.asarray(traj.t)
        for i, leaf in enumerate(jax.tree.leaves(traj.final_state)):
            out[f"{name}/final{i}"] = np.asarray(leaf)
        np.savez(path, **out)  # after every run: a partial file is still comparable
        print(name, flush=True)


def compare(a, b):
    a, b = np.load(a), np.load(b)
    bad = 0
    for k in sorted(set(a.files) | set(b.files)):
        if ONLY is not None and k.split("/")[0] not in ONLY:
            continue
        if k not in a.files or k not in b.files:
            print(f"{k}: only in {'A' if k in a.files else 'B'}")
            bad += 1
            continue
        x, y = a[k], b[k]
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            d = np.nanmax(np.abs(x - y)) if x.shape == y.shape else "shape"
            print(f"{k}: differs ({d})")
            bad += 1
    print(f"{len(a.files)} arrays, {bad} differ")
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2])
    else:
        sys.exit(1 if compare(sys.argv[2], sys.argv[3]) else 0)
