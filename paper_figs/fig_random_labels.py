"""Figure random_labels: converged ρ and test error against the fraction of random labels.

Prediction [paper claim; its mechanism is THEORY 4.3-4.4 [paper]: a smaller normalized margin
needs a larger ρ, and THEORY 6's norm-based bound grows with ρ = Π_k ||W_k||_F]: with weight
decay, fitting a larger fraction p of random training labels ends at a larger ρ, and the test
error rises towards chance (0.5, balanced test set). Criterion: ρ(p=1)/ρ(p=0) > 1.5 with every
step in p non-decreasing up to 5 %, test error at the largest p at least 0.2 above p=0's and
within 0.15 of chance. Hypotheses (the regime of each p): the network fits its labels (train
accuracy ≥ 0.95) and ρ has settled (relative change over the last quarter of the run < 5 %).
Reads ``random_labels.toml``'s cached GD runs (plain network, λ > 0), one scenario per p
(``--set data.label_noise=p``).
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "random_labels"
RATIO, MONO_TOL, ERR_RISE, CHANCE, CHANCE_TOL, SETTLED = 1.5, 0.05, 0.2, 0.5, 0.15, 0.05
FITS = 0.95  # train accuracy from which a run counts as fitting its labels


def _fractions(fast: bool):
    return (0.0, 0.5, 1.0) if fast else (0.0, 0.25, 0.5, 0.75, 1.0)


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    fast = _common.profile_of(profile) == "fast"
    points = {p: {"data.label_noise": p} for p in _fractions(fast)}
    return _common.sweep("random_labels", profile, points, log=log)


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9.5, 6.8))
    (ax_t, ax_rho), (ax_err, ax_m) = axes
    cmap = plt.get_cmap("viridis")
    ps = sorted(inputs)
    rows, drift = [], []
    for i, p in enumerate(ps):
        (traj,) = inputs[p].runs().values()
        rho = np.asarray(traj["rho"])
        k = max(1, len(rho) // 4)
        drift.append(abs(rho[-1] / rho[-1 - k] - 1))
        rows.append(
            (
                p,
                rho[-1],
                1.0 - float(np.asarray(traj["train_acc"])[-1]),
                1.0 - float(np.asarray(traj["test_acc"])[-1]),
                float(np.asarray(traj["margin_min"])[-1]),
            )
        )
        color = cmap(i / max(1, len(ps) - 1))
        ax_t.plot(traj.t, rho, color=color, label=f"random fraction p = {p:g}")
    table = np.array(rows)
    cfg = inputs[ps[0]].config()["table"]
    lam, lr = cfg["problem"]["weight_decay"], traj.config["lr"]
    ax_t.set(
        yscale="log",
        xlabel="flow time t = η·step",
        ylabel="ρ = Π_k ||W_k||_F (log)",
        title="ρ(t) per fraction p of random labels",
    )
    ax_rho.plot(table[:, 0], table[:, 1], "o-")
    ax_rho.set(
        yscale="log",
        xlabel="fraction p of random train labels",
        ylabel="final ρ (log)",
        title="final ρ (∝ the norm-based bound, THEORY 6)",
    )
    ax_err.plot(table[:, 0], table[:, 3], "o-", label="test error")
    ax_err.plot(table[:, 0], table[:, 2], "s--", label="train error")
    ax_err.axhline(CHANCE, color="gray", ls=":", label="chance")
    ax_err.set(
        xlabel="fraction p of random train labels",
        ylabel="final error (fraction misclassified)",
        title="train and test error",
    )
    ax_m.plot(table[:, 0], table[:, 4], "o-")
    ax_m.set(
        xlabel="fraction p of random train labels",
        ylabel="final min_n y_n f(V; x_n)\n(normalized margin)",
        title="normalized margin (network at ρ = 1)",
    )
    ax_t.set_ylim(bottom=0.3 * float(np.min(table[:, 1])))
    ax_t.legend(fontsize=6, ncol=2, loc="lower right")
    ax_err.legend(fontsize=7)
    for ax in axes.ravel():
        ax.title.set_fontsize(8)
    fig.suptitle(
        f"Random labels: GD (η = {lr:g}) with weight decay λ = {lam:g}, plain ReLU MLP, digits "
        f"{cfg['data']['classes'][0]} vs {cfg['data']['classes'][1]}",
        fontsize=9,
    )

    rho, err = table[:, 1], table[:, 3]
    ratio = rho[-1] / rho[0]
    mono = bool(np.all(rho[1:] >= (1 - MONO_TOL) * rho[:-1]))
    err_ok = err[-1] >= err[0] + ERR_RISE and abs(err[-1] - CHANCE) <= CHANCE_TOL
    meas = ", ".join(
        f"p={p:g}: ρ {r:.3g}, test err {e:.3f} (train {tr:.3f})" for p, r, tr, e, _ in rows
    )
    why = []
    if not (ratio > RATIO and mono):
        why.append("ρ does not grow with p")
    if not err_ok:
        why.append("test error does not rise to chance")
    # the claim concerns networks that fit their (partly random) labels, at their limit
    hyp = _verdict.Hypotheses(min_train_acc=FITS, max_settled=SETTLED)
    regimes = [
        _verdict.run_regime(next(iter(inputs[p].runs().values())), f"p={p:g}", settled=d, eps=None)
        for p, d in zip(ps, drift, strict=True)
    ]
    verdict = _verdict.line(
        NAME,
        f"(paper claim, THEORY 4.3-4.4, 6) ρ grows with the fraction p of random labels "
        f"(ρ(1)/ρ(0) > {RATIO:g}, non-decreasing within {MONO_TOL:.0%}) and test error rises "
        f"to chance (≥ +{ERR_RISE:g}, within {CHANCE_TOL:g} of {CHANCE:g})",
        f"λ={lam:g}: {meas}; ρ ratio {ratio:.2f}, max drift of ρ over the last quarter "
        f"{max(drift):.1e}",
        regimes,
        hyp,
        _verdict.judge(ratio > RATIO and mono and err_ok, regimes, hyp),
        "; ".join(why),
    )
    return _common.finish(fig, out_dir, NAME, verdict)
