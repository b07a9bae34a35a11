"""Figure conservation: balancedness and the WN direction norm (THEORY 3.1, 3.3, 4.5).

Predictions [exact]: with λ = 0 the plain flow conserves ρ_k² − ρ_{k+1}², and the WN flow
conserves ||v_k||; discrete GD changes both by O(η²) per step, hence by O(η) at a fixed flow
time t = η·step: the drift at fixed t grows like η^1 (fitted slope of log drift vs log η).
This needs GD to follow the flow, i.e. η well below the stability limit 2/λ_max: for the WN
problem 2/λ_max falls from 0.042 at t = 0 to 0.024 at t = 20, and an earlier version of this
figure that used η up to 0.1 measured slopes ≈ 3 (GD at the edge of stability, off the flow);
for the balance problem 2/λ_max ≥ 0.34 on [0, 20] and η ≤ 0.2.
Reads ``conservation_balance.toml`` and ``conservation_wn.toml``'s cached runs.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "conservation"


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    # each scenario's runs (one per η) are one point of the sweep engine: batched where their
    # compiled arguments agree
    return {
        "balance": _common.sweep("conservation_balance", profile, {"main": {}}, log=log)["main"],
        "wn": _common.sweep("conservation_wn", profile, {"main": {}}, log=log)["main"],
    }


def _drift(traj, which: str) -> np.ndarray:
    if which == "balance":
        gap = np.asarray(traj["balance_gap"])
        return np.max(np.abs(gap - gap[0]), axis=1)
    v = np.asarray(traj["v_norm"])
    return np.max(np.abs(v - v[0]), axis=1)


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    parts = []
    for which, ax, title, ylabel in (
        (
            "balance",
            axes[0],
            "balancedness, plain flow (λ = 0)",
            "max_k |gap_k(t) − gap_k(0)|,  gap_k = ρ_k² − ρ_{k+1}²",
        ),
        ("wn", axes[1], "WN direction norms (λ = 0)", "max_k | ||v_k(t)|| − ||v_k(0)|| |"),
    ):
        runs = inputs[which].runs()
        lrs, ends, flow_end = [], [], np.nan
        for traj in runs.values():
            d = _drift(traj, which)
            ax.semilogy(traj.t[1:], np.maximum(d[1:], 1e-17), label=_common.words(traj))
            if traj.kind == "flow":
                flow_end = float(d[-1])
            else:
                lrs.append(traj.config["lr"])
                ends.append(float(d[-1]))
        ax.set(xlabel="flow time t (GD: t = η·step)", ylabel=ylabel + " (log)", title=title)
        ax.yaxis.label.set_fontsize(8)
        ax.legend(fontsize=7)
        order = np.argsort(lrs)
        lrs, ends = np.asarray(lrs)[order], np.asarray(ends)[order]
        p = _common.slope(lrs, ends)
        t_end = float(next(iter(runs.values())).t[-1])
        what = "balancedness" if which == "balance" else "WN norms"
        axes[2].loglog(lrs, ends, "o-", label=f"{what}: fitted slope {p:.2f}")
        parts.append((which, flow_end, p, t_end, lrs, ends))
    lr_ref = np.asarray(parts[0][4])
    axes[2].loglog(lr_ref, parts[0][5][0] * lr_ref / lr_ref[0], "k:", label="∝ η (predicted)")
    axes[2].set(
        xlabel="GD step size η (log)",
        ylabel=f"GD drift at t = {parts[0][3]:g} (log)",
        title="drift at fixed t against η",
    )
    axes[2].legend(fontsize=7)
    fig.suptitle("Conserved by the flow (λ = 0), drifting under GD like η at fixed t", fontsize=9)
    # every pair of neighbouring η must show the same law, not only the overall fit
    local = [np.diff(np.log(e)) / np.diff(np.log(l)) for _, _, _, _, l, e in parts]
    ok = all(
        abs(p - 1) < 0.25 and np.all(np.abs(s - 1) < 0.5) and f < 1e-2 * e[0]
        for (_, f, p, _, _, e), s in zip(parts, local, strict=True)
    )
    text = "; ".join(
        f"{w}: flow drift {f:.1e}, GD drift {e[0]:.1e}..{e[-1]:.1e} for η={l[0]:g}..{l[-1]:g}, "
        f"slope {p:.2f} (gap {p - 1:+.2f}; local {', '.join(f'{x:.2f}' for x in s)})"
        for (w, f, p, _, l, e), s in zip(parts, local, strict=True)
    )
    # the laws are exact for λ = 0 (the hypothesis, read from the runs), and GD follows the
    # flow only below its stability limit (η·λ_max/2 < 1, stated in the module docstring)
    regimes = []
    for which, *_ in parts:
        for traj in inputs[which].runs().values():
            lam = _common.decay(traj)
            regimes.append(
                _verdict.Regime(
                    f"{which} {_common.words(traj)}",
                    extra=(("λ", f"{lam:g}"), ("t", f"{float(traj.t[-1]):g}")),
                    outside=(f"λ = {lam:g} ≠ 0",) if lam != 0 else (),
                )
            )
    hyp = _verdict.Hypotheses()
    verdict = _verdict.line(
        NAME,
        f"flow drift = 0 (solver tolerance), GD drift ∝ η^1 at t={parts[0][3]:g}, for λ = 0",
        text,
        regimes,
        hyp,
        _verdict.judge(ok, regimes, hyp),
    )
    return _common.finish(fig, out_dir, NAME, verdict)
