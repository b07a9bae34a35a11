"""Figure sgd_noise: per-epoch relative weight change under SGD (THEORY 4.7).

Prediction [exact argument, paper claim]: with λ > 0 and B < N the per-epoch relative change
||W_k(e+1) − W_k(e)||_F / ||W_k(e)||_F (``gf.metrics.sgd_noise``) stays bounded away from 0 and
grows as B falls; it vanishes for λ = 0 (at interpolation) or B = N. Reads ``sgd_noise.toml``'s
cached SGD runs, one per (B, λ), whose ``weights`` observable is saved once per epoch.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "sgd_noise"
LR = 0.1


def _grid(fast: bool):
    n = 64 if fast else 128
    batches = (8, n) if fast else (4, 16, n)
    decays = (0.0, 0.05) if fast else (0.0, 0.01, 0.05)
    epochs = 40 if fast else 150
    return n, batches, decays, epochs


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    fast = _common.profile_of(profile) == "fast"
    n, batches, decays, epochs = _grid(fast)
    points = {}
    for b in batches:
        epoch_t = LR * (n // b)
        for lam in decays:
            points[(b, lam)] = {
                "sgd.batch_size": b,
                "sgd.lr": LR,
                "problem.weight_decay": lam,
                "sgd.save_every": epoch_t,
                "sgd.t1": epochs * epoch_t,
            }
    return _common.sweep("sgd_noise", profile, points, log=log)


def _noise(traj) -> np.ndarray:
    """(epochs,) layer-averaged per-epoch relative change."""
    from gradflow.metrics import sgd_noise

    layers = sorted(k for k in traj.observables if k[0] == "w" and k[1:].isdigit())
    ws = [np.asarray(traj[k]) for k in layers]
    return np.array(
        [
            float(np.mean(sgd_noise([w[e] for w in ws], [w[e + 1] for w in ws])))
            for e in range(ws[0].shape[0] - 1)
        ]
    )


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    # B and λ of each run as the run recorded them (not the figure's own key)
    inputs = {
        (int(t.config["batch_size"]), _common.decay(t)): res
        for res in inputs.values()
        for t in [next(iter(res.runs().values()))]
    }
    batches = sorted({b for b, _ in inputs})
    decays = sorted({lam for _, lam in inputs})
    n = max(batches)
    fig, axes = plt.subplots(1, len(decays), figsize=(3.8 * len(decays), 3.6), sharey=True)
    late = {}
    for ax, lam in zip(axes, decays, strict=True):
        for b in batches:
            traj = next(iter(inputs[(b, lam)].runs().values()))
            noise = _noise(traj)
            ax.semilogy(
                np.arange(1, len(noise) + 1),
                np.maximum(noise, 1e-16),
                label=f"SGD B = {b}" + (" (= N, GD)" if b == n else ""),
            )
            late[(b, lam)] = _common.tail_mean(noise, 0.2)
        ax.set(xlabel="epoch e (passes over the N samples)", title=f"λ = {lam:g}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("||W(e+1) − W(e)||_F / ||W(e)||_F\n(mean over layers, log)")
    fig.suptitle(f"Inherent SGD noise (THEORY 4.7): η = {LR:g}, N = {n}", fontsize=9)
    lam_max, b_min = max(decays), min(batches)
    noisy = late[(b_min, lam_max)]
    checks = [noisy > 3 * late[(n, lam_max)], noisy > 3 * late[(b_min, 0.0)]]
    if len(batches) > 2:
        checks.append(
            all(
                late[(batches[i], lam_max)] >= late[(batches[i + 1], lam_max)]
                for i in range(len(batches) - 1)
            )
        )
    table = ", ".join(f"B={b} λ={lam:g}: {v:.1e}" for (b, lam), v in sorted(late.items()))
    # "-> 0 for λ = 0" is a claim at interpolation: the λ = 0 runs must fit their data
    points = [
        (
            _verdict.run_regime(next(iter(inputs[(b, lam)].runs().values())), f"B={b} λ={lam:g}"),
            _verdict.INTERPOLATION if lam == 0 else _verdict.Hypotheses(),
        )
        for b in batches
        for lam in decays
    ]
    verdict = _verdict.line(
        NAME,
        "per-epoch change bounded away from 0 for λ>0, B<N, growing as B falls, -> 0 for "
        "λ=0 (at interpolation) or B=N",
        f"(mean of last 20% epochs) {table}; ratio (B={b_min}, λ={lam_max:g}) / (B=N) = "
        f"{noisy / late[(n, lam_max)]:.1f}, / (λ=0) = {noisy / late[(b_min, 0.0)]:.1f}",
        points,
        None,
        _verdict.judge(all(checks), points),
    )
    return _common.finish(fig, out_dir, NAME, verdict)
