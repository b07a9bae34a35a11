"""Figure rho_dynamics: ρ(t) against ρ_eq(V(t)) on digits 0 vs 1 (THEORY 4.1).

Prediction [exact at equilibria, paper along a run]: in LM-last with λ > 0, the gap between
ρ(t) and ρ_eq(V(t)) = Σ⟨y_n,f_n⟩/(Σ||f_n||² + Nλ/2) closes; SGD on t = η·step follows the flow.
Reads ``paper_figs/scenarios/rho_dynamics.toml``'s cached runs (flow, SGD at two η).
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "rho_dynamics"


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    # the scenario's runs (flow, SGD at two η) are one point of the sweep engine, as in
    # conservation and sde_vs_sgd: one compiled call per run, without the summary plot, the
    # combined NetCDF and the checkpoints of a scenario run (the same cache folder)
    return _common.sweep("rho_dynamics", profile, {"main": {}}, log=log)


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    runs = inputs["main"].runs()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.6))
    parts, flow_gap0 = [], None
    for traj in runs.values():
        t, rho, eq = traj.t, np.asarray(traj["rho"]), np.asarray(traj["rho_eq"])
        gap = rho / eq - 1
        (line,) = ax0.plot(t, rho, label=_common.words(traj))
        ax0.plot(t, eq, ":", color=line.get_color())
        ax1.semilogy(t[1:], np.abs(gap[1:]), color=line.get_color(), label=_common.words(traj))
        if traj.kind == "flow":
            flow_gap0 = abs(gap[0])
            parts.insert(0, f"{gap[-1]:+.1e} at t={t[-1]:g} (ODE)")
        else:
            lr = traj.config["lr"]
            parts.append(f"{_common.tail_mean(gap):+.1e} (SGD η={lr:g}, mean of last 10%)")
    ax0.plot([], [], "k:", label="ρ_eq(V(t)) (dotted, same colour)")
    ax0.set(
        xlabel="flow time t (SGD: t = η·step)",
        ylabel="ρ = Π_k ||W_k||_F (solid)",
        title="ρ(t) and ρ_eq(V(t))",
    )
    ax1.set(
        xlabel="flow time t (SGD: t = η·step)",
        ylabel="|ρ/ρ_eq − 1| (log scale)",
        title="relative gap to ρ_eq",
    )
    ax0.legend(fontsize=7)
    ax1.legend(fontsize=7)
    first = next(iter(runs.values()))
    fig.suptitle(
        f"LM-last, λ = {_common.decay(first):g}, digits 0 vs 1 "
        f"(N = {first.config['problem']['n_train']}): ρ(t) closes in on ρ_eq(V(t)) "
        "(THEORY 4.1)",
        fontsize=9,
    )
    flow = next(tr for tr in runs.values() if tr.kind == "flow")
    end = abs(np.asarray(flow["rho"])[-1] / np.asarray(flow["rho_eq"])[-1] - 1)
    ok = end < 0.1 * flow_gap0 and end < 1e-2
    # the claim has no hypotheses beyond λ > 0 (ρ relaxes at the rate κ ≥ λ): the regime
    # says how long the runs were exposed to the decay and how well they fit
    regimes = [_verdict.run_regime(tr, _common.words(tr)) for tr in runs.values()]
    hyp = _verdict.Hypotheses()
    verdict = _verdict.line(
        NAME,
        "rho/rho_eq - 1 -> 0 (criterion: the flow's gap below 1e-2 and 10× below its start)",
        ", ".join(parts) + f" (from {flow_gap0:.1e} at t=0)",
        regimes,
        hyp,
        _verdict.judge(ok, regimes, hyp),
        "" if ok else "gap not closed",
    )
    return _common.finish(fig, out_dir, NAME, verdict)
