"""Certified Filippov equilibria from the end of settled ReLU flows (docs/equilibria.md).

Run (each case is independent; ``--only`` picks some)::

    python benchmarks/equilibria.py [--only NAME ...] [--out benchmarks/results/equilibria.json]
    python benchmarks/equilibria.py --figures [--only margins-0.04 ...]

**Problems** (:data:`CASES`): small bias-free ReLU networks — MLP and LocalCNN; plain weights
with decay, LM-all, LM-last and WN; digits, MNIST-1D and a Gaussian mixture — each integrated by
``gf.flow`` (its default solver and tolerances) to ``λ·t ≥ 20``; ``gf.equilibrium`` from the
flow's end, with its default thresholds: relative residual ``≤ 1e-12``, every ``α ∈ [0, 1]``,
no sign flip off ``S``, THEORY 4.9's identity ``≤ 1e-9`` relative per layer, and a flow of
``t = 1`` from the point that moves less than its ``rtol = 1e-4``. Where the flow's end is not
certified, the row records that verdict (``first``) and certifies again after a tail of the flow
with tight tolerances (:data:`TAIL`), whose steps at the floor shrink the sliding chatter.

**Figure nets** (``--figures``): the flows of the margins and neural_collapse figures at their
full profile (``paper_figs/scenarios/*.toml`` as written, with the figures' own overrides), the
flow alone (the figures' SDE and SGD runs are not needed), then ``gf.equilibrium`` as above.

Each row records the flow's wall time and steps, the certificate's numbers and its verdict; the
table in benchmarks/README.md ("Certified equilibria") is written from the JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import gradflow as gf  # noqa: E402
from gradflow.models import MLP, LocalCNN  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _result  # noqa: E402

#: Where the flow's end is not certified: a tail of ``TAIL`` more time units with tight
#: tolerances, whose steps sit at the controller's floor ``dtmin = 1e-4`` while sliding, so that
#: the chatter across the switching surfaces (of the order of the step) shrinks.
TAIL = 2.0
TAIL_TOLERANCES = {"rtol": 1e-8, "atol": 1e-10}
#: Newton iterations (joins and drops of the active set count as iterations).
MAX_ITER = 200
RESULTS = Path(__file__).resolve().parent / "results"


def _gmm(n, dim):
    return gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=dim, seed=0)


def _digits(n, image=False):
    return gf.data.load(
        "digits", classes=(0, 1), n_train=n, n_test=0, unit_norm=True, image=image, seed=0
    )


def _mnist1d(n, channel_first=False):
    return gf.data.load(
        "mnist1d",
        classes=(0, 1),
        n_train=n,
        n_test=0,
        unit_norm=True,
        channel_first=channel_first,
        seed=0,
    )


def _cnn1d(key):
    return LocalCNN((1, 40), (4, 4), (5, 5), (3, 2), 1, key=key)


def _cnn2d(key):
    return LocalCNN((1, 8, 8), (4, 4), (3, 3), (1, 2), 1, key=key)


#: name -> (data, model, normalization, λ, t1): λ·t1 = 20 everywhere.
CASES = {
    "mlp-plain-gmm": (lambda: _gmm(16, 6), lambda k: MLP(6, (8,), 1, key=k), "none", 0.1, 200.0),
    "mlp-lmall-gmm": (lambda: _gmm(16, 6), lambda k: MLP(6, (8,), 1, key=k), "lm-all", 0.1, 200.0),
    "mlp-lmlast-digits": (
        lambda: _digits(32),
        lambda k: MLP(64, (12, 12), 1, key=k),
        "lm-last",
        0.1,
        200.0,
    ),
    "mlp-wn-mnist1d": (
        lambda: _mnist1d(32),
        lambda k: MLP(40, (12,), 1, key=k),
        "wn",
        0.1,
        200.0,
    ),
    "cnn-plain-gmm": (
        lambda: _gmm(16, 12),
        lambda k: LocalCNN((1, 12), (3,), (3,), (3,), 1, key=k),
        "none",
        0.1,
        200.0,
    ),
    "cnn-plain-mnist1d": (lambda: _mnist1d(24, True), _cnn1d, "none", 0.1, 200.0),
    "cnn-lmlast-digits": (lambda: _digits(24, True), _cnn2d, "lm-last", 0.1, 200.0),
    "cnn-lmall-mnist1d": (lambda: _mnist1d(24, True), _cnn1d, "lm-all", 0.1, 200.0),
}

#: The figure nets at the full profile: (scenario, the figure's overrides, λ).
FIGURES = {
    **{
        f"margins-{lam:g}": (
            "margins",
            [f"problem.weight_decay={lam}", f"time.t1={min(20 / lam, 2000.0)!r}"],
            lam,
        )
        for lam in (0.04, 0.02, 0.01, 0.005)
    },
    **{
        f"neural_collapse-{targets}": (
            "neural_collapse",
            ["problem.weight_decay=0.01", f"data.centre_targets={str(centred).lower()}"],
            0.01,
        )
        for targets, centred in (("one-hot", False), ("centred", True))
    },
}


def _certify(problem, state, lam: float, t1: float) -> dict:
    start = time.perf_counter()
    fp = gf.equilibrium(problem, state, spectrum=False, max_iter=MAX_ITER)
    c = fp.certificate
    f, y = np.asarray(problem.outputs(fp.state)), np.asarray(problem.y_train)
    fits = np.sign(f) == y if y.shape[1] == 1 else np.argmax(f, 1) == np.argmax(y, 1)
    return {
        "lambda_t": lam * t1,
        "max_abs_output": float(np.max(np.abs(f))),  # a collapsed network (F = 0) is trivial
        "train_accuracy": float(np.mean(fits)),
        "certified": bool(fp.certified),
        "verdict": c.verdict,
        "reasons": list(c.reasons),
        "start_residual": c.start_residual,
        "relative_residual": c.relative_residual,
        "filippov_residual": c.filippov_residual,
        "alpha_range": c.alpha_range,
        "sign_flips": c.sign_flips,
        "identity_defects": list(c.identity_defects),
        "flow_drift": c.flow_drift,
        "flow_sign_changes": c.flow_sign_changes,
        "n_switching": c.n_switching,
        "n_dying": c.n_dying,
        "n_flat": c.n_flat,
        "joins": c.joins,
        "drops": c.drops,
        "iterations": int(fp.iterations),
        "distance": c.distance,
        "hessian_range": c.hessian_range,
        "equilibrium_seconds": time.perf_counter() - start,
        "describe": fp.describe(),
    }


def _flow(problem, t1: float, **options) -> tuple:
    start = time.perf_counter()
    tr = gf.flow(problem, t1=t1, save_every=t1 / 4, **options)
    seconds = time.perf_counter() - start
    stats = {k: tr.stats.get(k) for k in ("num_steps", "num_accepted_steps", "status")}
    return tr, {"flow_seconds": seconds, **stats}


def run_case(name: str) -> dict:
    data, model, norm, lam, t1 = CASES[name]
    net = model(jax.random.PRNGKey(0))
    problem = gf.Problem(net, data(), weight_decay=lam, normalization=norm)
    tr, row = _flow(problem, t1)
    row.update(_certify(problem, tr, lam, t1))
    if not row["certified"]:  # the sliding chatter of the flow's steps: a tail at the floor
        tail, more = _flow(problem, TAIL, state0=tr.final_state, **TAIL_TOLERANCES)
        row["first"] = {k: row[k] for k in ("verdict", "start_residual", "relative_residual")}
        row["first"]["reasons"] = row["reasons"]
        row.update({f"tail_{k}": v for k, v in more.items()})
        row.update(_certify(problem, tail, lam, t1 + TAIL))
    row.update(
        name=name,
        model=type(net).__name__,
        normalization=norm,
        data=problem.data.name if hasattr(problem, "data") else None,
        n_train=int(problem.x_train.shape[0]),
        parameters=int(sum(np.size(w) for w in net.weights)),
        weight_decay=lam,
        t1=t1,
    )
    return row


def run_figure(name: str) -> dict:
    from paper_figs import _common

    scenario, sets, lam = FIGURES[name]
    config = _common._config(scenario, "full", sets)
    problem = _common.problem(scenario, "full", sets)
    t1, flow = float(config.table["time"]["t1"]), config.table["flow"]
    options = {k: flow[k] for k in ("solver", "rtol", "atol") if k in flow}
    tr, row = _flow(problem, t1, **options)
    row.update(name=name, scenario=scenario, sets=sets, weight_decay=lam, t1=t1, **options)
    row.update(_certify(problem, tr, lam, t1))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", action="store_true", help="the figure nets (full profile)")
    parser.add_argument("--only", nargs="+", help="these cases only")
    parser.add_argument("--out", type=Path, help="the JSON result")
    args = parser.parse_args(argv)
    table = FIGURES if args.figures else CASES
    names = args.only or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        parser.error(f"--only: unknown case(s) {unknown}; use some of {list(table)}")
    default = "equilibria_figures.json" if args.figures else "equilibria.json"
    out = args.out or RESULTS / default
    start = _result.now()
    rows = []
    for name in names:
        row = (run_figure if args.figures else run_case)(name)
        print(
            f"{name}: flow {row['flow_seconds']:.0f} s, {row['verdict']}, residual "
            f"{row['relative_residual']:.1e} (start {row['start_residual']:.1e}), alpha "
            f"{row['alpha_range']}, 4.9 max {max(row['identity_defects']):.1e}, drift "
            f"{row['flow_drift']}, |S| {row['n_switching']}, dying {row['n_dying']}, "
            f"{row['equilibrium_seconds']:.0f} s",
            flush=True,
        )
        rows.append(row)
        _result.write(out, start, rows)  # after every case: a long run keeps what it did
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
