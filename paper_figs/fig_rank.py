"""Figure rank: numerical rank of the hidden layer vs batch size and λ, with THEORY 4.6's bound.

Prediction [paper; the bound's derivation is exact]: under SGD with λ > 0 the rank of
W_k/||W_k||_F (singular values above 1e-3) falls as B falls and as λ rises; with λ = 0 there is no
such bias. Bound: rank ≤ B·k, k = ⌈ln(C/(cε))/(ηλ)⌉ (``gf.predict.rank_bound``, ε = 1e-3, C/c
the measured ratio of the largest to the smallest ||W_k||_F along the run), capped by the size.
Reads ``rank.toml``'s cached SGD runs, one scenario per λ.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common

NAME = "rank"
LAYER = 1  # the 32 x 32 hidden-to-hidden matrix


def _decays(profile: str):
    if profile == "paper":  # the low-rank protocol's range (Galanti et al.: 1e-4 .. 1e-2) and up
        return (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.05)
    return (0.0, 0.05) if profile == "fast" else (0.0, 0.01, 0.05)


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    points = {lam: [f"problem.weight_decay={lam}"] for lam in _decays(_common.profile_of(profile))}
    return _common.sweep("rank", profile, points, log=log)


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    from gradflow.predict import rank_bound

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.3))
    measured, bounds, full = {}, {}, None
    for lam, res in sorted(inputs.items()):
        rows = []
        for traj in res.runs().values():
            b, lr = traj.config["batch_size"], traj.config["lr"]
            rank = np.asarray(traj["rank"])[:, LAYER]
            rho = np.asarray(traj["rho_k"])[:, LAYER]
            full = min(traj.final_params[LAYER].shape)
            rows.append((b, float(rank[-1])))
            if lam > 0:
                _, bnd = rank_bound(b, lr, lam, 1e-3, float(rho.max() / rho.min()))
                bounds[(b, lam)] = float(min(float(bnd), full))
            if lam == max(inputs):
                ax0.plot(traj.t, rank, label=f"B={b}")
        rows.sort()
        measured.update({(b, lam): r for b, r in rows})
        (line,) = ax1.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label=f"λ={lam:g}")
        if lam > 0:
            ax1.plot(
                [r[0] for r in rows],
                [bounds[(r[0], lam)] for r in rows],
                ":",
                color=line.get_color(),
            )
    ax0.set(xlabel="t = η·step", ylabel=f"rank(W_{LAYER + 1})", title=f"λ = {max(inputs):g}")
    ax1.set(
        xscale="log",
        xlabel="batch size B",
        ylabel="final numerical rank (tol 1e-3)",
        title="dotted: THEORY 4.6 bound (capped at full rank)",
    )
    ax0.legend(fontsize=7)
    ax1.legend(fontsize=7)
    for ax in (ax0, ax1):
        ax.title.set_fontsize(8)
    fig.suptitle("Low rank under SGD + weight decay (THEORY 4.6)", fontsize=9)
    _common.savefig(fig, out_dir, NAME)
    batches = sorted({b for b, _ in measured})
    lam_max, b_min, b_max = max(inputs), batches[0], batches[-1]
    ok = (
        measured[(b_min, lam_max)] < measured[(b_max, lam_max)]
        and measured[(b_min, lam_max)] < measured[(b_min, 0.0)]
    )
    vacuous = all(v >= full for v in bounds.values())
    # informative: the λ > 0 at which the smallest B ends at a lower rank than the largest
    lams = sorted({lam for _, lam in measured if lam > 0})
    matters = [lam for lam in lams if measured[(b_min, lam)] < measured[(b_max, lam)]]
    table = ", ".join(f"B={b} λ={lam:g}: {r:.0f}" for (b, lam), r in sorted(measured.items()))
    status = "borne out" if ok else "NOT borne out at this scale"
    return (
        f"{NAME}: predicted rank(W_{LAYER + 1}) falls with smaller B and larger λ, no bias at "
        f"λ=0; measured final rank (of {full}) {table}; THEORY 4.6 bound "
        + (
            "vacuous (≥ full rank) at every point"
            if vacuous
            else ", ".join(f"{v:.0f}" for v in bounds.values())
        )
        + f"; B={b_min} below B={b_max} at λ ∈ "
        + ("{" + ", ".join(f"{lam:g}" for lam in matters) + "}" if matters else "∅")
        + f" (of {len(lams)} λ > 0): {status}"
    )
