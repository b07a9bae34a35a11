"""Why the neural_collapse nets are not certified: the flow's end against its horizon λ·t.

Run::

    python benchmarks/nc_horizon.py [--profile full] [--row C=4] [--lam 0.02]
        [--exposures 20,40,80,160,320] [--out benchmarks/results/nc_horizon.json]

One point of the ``neural_collapse`` figure (``paper_figs/fig_neural_collapse.py``: bias-free
ReLU MLP, centred targets, decay on every layer, Heun at ``rtol = 1e-4``) is integrated to each
horizon ``λ·t`` of ``--exposures`` in turn (each flow continues from the last one's end); at each
end the figure's own certificate attempt runs — a fixed-step Heun tail of ``t = 2`` at step 1e-4
whose last 200 steps seed S, then ``gf.equilibrium(max_iter=60, max_stall=15,
dense_max=4000, sliding=...)`` — and, at the tail's end, the dense Jacobian of the multiplier
system of the start's S (evidence-seeded, as the solve's first attempt starts) is decomposed:
its singular values, and the minimum-norm Newton step's largest components along the singular
directions (``coefficient / σ``), with the share of that direction in each weight matrix.

Each row: the horizon, the flow's seconds and steps, the certificate's verdict, start residual,
first Newton step (relative to the state), |S| and dying units, the solve's seconds, and the
Jacobian's smallest singular values and the step's three largest components.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import gradflow as gf  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import _result  # noqa: E402

from paper_figs import _common  # noqa: E402
from paper_figs import fig_neural_collapse as nc  # noqa: E402


def _jacobian_at(problem, tail_end, last) -> dict:
    """The multiplier system's dense Jacobian at the start of the seeded solve: its singular
    values and the Newton step's largest components along its singular directions."""
    from jax.flatten_util import ravel_pytree

    from gradflow.analysis import _multiplier_system as ms
    from gradflow.analysis._equilibrium import _sliding
    from gradflow.analysis._manifold import StateManifold
    from gradflow.analysis._sliding_set import identify

    manifold = StateManifold.of(problem, tail_end)
    state = manifold.retract(tail_end)
    _, template, dying, free, s, pattern, _ = identify(
        problem, state, 1e-2, 1e-4, _sliding(problem, last)
    )
    template = manifold.retract(template)
    flat = np.asarray(ravel_pytree(template)[0])
    aux = ms.system_aux(free, s, pattern, pattern.size)
    mu, nu = ms.best_multipliers(problem, manifold, template, jnp.asarray(flat), aux, True)
    u = jnp.asarray(np.concatenate([flat, np.asarray(mu), np.asarray(nu)]))
    r = np.asarray(ms.residual(problem, manifold, template, u, aux))
    jac = np.asarray(ms.jacobian(problem, manifold, template, u, aux))
    left, sv, right = np.linalg.svd(jac)
    coef = left.T @ (-r)
    kept = sv > 1e-13 * sv[0]  # gelsy's cond in the solve
    step = np.where(kept, coef / np.where(kept, sv, 1.0), 0.0)
    unravel = ravel_pytree(template)[1]
    top = []
    for k in np.argsort(-np.abs(step))[:3]:
        leaves = jax.tree.leaves(unravel(jnp.asarray(right[k, : flat.size])))
        top.append(
            {
                "sigma": float(sv[k]),
                "coefficient": float(coef[k]),
                "step": float(step[k]),
                "per_layer": [float(np.linalg.norm(np.asarray(w))) for w in leaves],
            }
        )
    return {
        "unknowns": int(u.size),
        "sigma_max": float(sv[0]),
        "sigma_smallest": [float(v) for v in sv[-12:]],
        "below_1e-5_of_max": int(np.sum(sv < 1e-5 * sv[0])),
        "state_norm": float(np.linalg.norm(flat)),
        "step_norm_rel": float(
            np.linalg.norm((right.T @ step)[: flat.size]) / np.linalg.norm(flat)
        ),
        "top_components": top,
        "n_dying_identified": len(dying),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--row", default="C=4")
    parser.add_argument("--lam", type=float, default=0.02)
    parser.add_argument("--exposures", default="20,40,80,160,320")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "nc_horizon.json")
    args = parser.parse_args(argv)
    start_date = _result.now()
    row = nc.ROWS[args.profile][args.row]
    lam = args.lam
    sets = {
        "data.classes": list(range(row.classes)),
        "data.n_train": row.n_train,
        "model.widths": list(row.widths),
        "problem.weight_decay": lam,
        "time.t1": nc.EXPOSURE / lam,
        "time.save_every": nc.EXPOSURE / lam / nc.SAVES,
    }
    problem = _common.problem(nc.NAME, args.profile, sets)
    state, done, rows = None, 0.0, []
    for exposure in (float(e) for e in args.exposures.split(",")):
        t1 = exposure / lam
        t0 = time.perf_counter()
        tr = gf.flow(
            problem,
            t1=t1 - done,
            save_every=t1 - done,
            solver="heun",
            rtol=1e-4,
            atol=1e-6,
            max_steps=10**8,
            **({} if state is None else {"state0": state}),
        )
        flow_seconds = time.perf_counter() - t0
        state = problem.to_state(tuple(np.asarray(w) for w in tr.final_params))
        done = t1
        tail_end, last, _, _ = _common.sliding_tail(
            problem, state, nc.TAIL, nc.TAIL_STEP, nc.EVIDENCE
        )
        jac = _jacobian_at(problem, tail_end, last)
        t0 = time.perf_counter()
        fp = gf.equilibrium(
            problem,
            tail_end,
            spectrum=False,
            max_iter=nc.MAX_ITER,
            max_stall=nc.MAX_STALL,
            dense_max=4000,
            sliding=last,
        )
        c = fp.certificate
        rows.append(
            {
                "exposure": exposure,
                "t1": t1,
                "flow_seconds": flow_seconds,
                "flow_steps": int(tr.stats.get("num_steps") or 0),
                "verdict": c.verdict,
                "start_residual": c.start_residual,
                "relative_residual": float(fp.relative_residual),
                "first_step": c.first_step,
                "n_switching": c.n_switching,
                "n_dying": c.n_dying,
                "solve_seconds": time.perf_counter() - t0,
                "message": fp.message,
                "jacobian": jac,
            }
        )
        print({k: v for k, v in rows[-1].items() if k not in ("message", "jacobian")}, flush=True)
        print("   sigma smallest", np.round(jac["sigma_smallest"], 9), flush=True)
    _result.write(
        args.out,
        start_date,
        rows,
        profile=args.profile,
        row=args.row,
        weight_decay=lam,
        sets=sets,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
