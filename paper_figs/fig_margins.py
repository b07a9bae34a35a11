"""Figure margins: histograms of the normalized margins at several times, λ > 0 vs λ = 0.

Prediction [paper, THEORY 4.4]: with weight decay the LM flow equalizes the margins
y_n f(V; x_n): their spread std/mean falls over time (towards 0), and min margin ≈ 1/ρ at
quasi-interpolation; without decay there is no such pull. Reads ``margins.toml``'s cached flows
(``--set problem.weight_decay=…``), whose ``margins`` observable holds every sample's margin.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common

NAME = "margins"
DECAYS = (0.05, 0.0)


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    points = {f"lam{lam:g}": [f"problem.weight_decay={lam}"] for lam in DECAYS}
    return _common.sweep("margins", profile, points, log=log)


def _spread(m: np.ndarray) -> np.ndarray:
    return np.std(m, axis=-1) / np.abs(np.mean(m, axis=-1))


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    parts, ok = [], True
    for ax, lam in zip(axes[:2], DECAYS, strict=True):
        traj = inputs[f"lam{lam:g}"].runs()["flow"]
        m, t = np.asarray(traj["margins"]), traj.t
        picks = np.unique(np.round(np.linspace(0, len(t) - 1, 4)).astype(int))
        scale = np.abs(np.mean(m, axis=-1))
        for i in picks[1:]:
            ax.hist(m[i] / scale[i], bins=30, histtype="step", label=f"t={t[i]:g}")
        ax.set(xlabel="margin / mean margin", title=f"λ = {lam:g}")
        ax.legend(fontsize=7)
        s = _spread(m)
        i1 = max(1, len(t) // 10)
        axes[2].semilogy(t[1:], s[1:], label=f"λ = {lam:g}")
        rho_end = float(np.asarray(traj["rho"])[-1])
        parts.append(
            f"λ={lam:g}: spread {s[i1]:.2f} (t={t[i1]:g}) -> {s[-1]:.3f} (t={t[-1]:g}), "
            f"min margin·ρ = {np.min(m[-1]) * rho_end:.2f}"
        )
        if lam > 0:
            ok = s[-1] < 0.5 * s[i1]
            spread_decay = s[-1]
        else:
            spread_free = s[-1]
    axes[2].set(xlabel="t", ylabel="std/mean of the margins")
    axes[2].legend(fontsize=7)
    fig.suptitle("Normalized margins y_n f(V; x_n) along the LM-last flow (THEORY 4.4)", fontsize=9)
    _common.savefig(fig, out_dir, NAME)
    ok = ok and spread_decay < spread_free
    status = (
        "borne out"
        if ok
        else "NOT borne out at this scale (the spread does not fall below half, or below λ=0's)"
    )
    return (
        f"{NAME}: predicted spread -> 0 with λ>0 (smaller than λ=0) and min margin·ρ ≈ 1; "
        f"measured " + "; ".join(parts) + f": {status}"
    )
