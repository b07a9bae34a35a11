"""Figure margins: histograms of the normalized margins at several times, λ > 0 vs λ = 0.

Prediction [paper, THEORY 4.4]: with weight decay the LM flow equalizes the margins
y_n f(V; x_n): their spread std/mean falls over time (towards 0), and min margin ≈ 1/ρ at
quasi-interpolation; without decay there is no such pull. Reads ``margins.toml``'s cached flows
(``--set problem.weight_decay=…``, and ``model.seed=…`` for the paper profile's seeds), whose
``margins`` observable holds every sample's margin.

Limit or approach: the end of each λ > 0 flow is polished with ``gf.equilibrium``
(:func:`_common.fixed_point`); the verdict states whether a fixed point was reached and the
spread there, and how settled the spread is (its relative change over the last quarter of the
horizon, :func:`_common.settled`). With several seeds the final spread is a mean with a 95%
Student-t interval. At the paper profile the paper's SGD protocol (:data:`SGD`) runs beside the
flows and is judged by the same criterion on its seed means.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common

NAME = "margins"
DECAYS = (0.05, 0.0)


def _seeds(profile: str) -> tuple[int, ...]:
    return (0, 1, 2) if profile == "paper" else (0,)


def _sets(lam, seed) -> list[str]:
    return [f"problem.weight_decay={lam}", *([f"model.seed={seed}"] if seed else [])]


#: The paper's SGD protocol for the binary runs (batch 128, η = 0.01, heavy-ball momentum 0.9),
#: at the paper profile: 50,000 steps, i.e. t = η·step = 500, which with momentum β is the
#: flow time η/(1 − β)·step = 5,000 of the flows; 3 seeds of the batch order.
SGD = {"lr": 0.01, "batch_size": 128, "momentum": 0.9, "t1": 500.0, "save_every": 5.0, "seeds": 3}


def _sgd_sets(lam) -> list[str]:
    return [
        f"problem.weight_decay={lam}",
        "flow.enabled=false",
        *(f"sgd.{key}={value}" for key, value in SGD.items()),
        "sgd.seed=1",
    ]


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper): keys ``(λ, seed)``
    (the flows) and, at the paper profile, ``("sgd", λ)`` (the paper's SGD protocol)."""
    profile = _common.profile_of(profile)
    points = {(lam, s): _sets(lam, s) for lam in DECAYS for s in _seeds(profile)}
    if profile == "paper":
        points.update({("sgd", lam): _sgd_sets(lam) for lam in DECAYS})
    results = _common.sweep("margins", profile, points, log=log)
    for (lam, seed), res in results.items():
        if lam != "sgd" and lam > 0:
            _common.fixed_point("margins", profile, _sets(lam, seed), res, log=log)
    return results


def _spread(m: np.ndarray) -> np.ndarray:
    return np.std(m, axis=-1) / np.abs(np.mean(m, axis=-1))


def _fixed(res) -> str:
    fp = res.fixed_point()
    if fp is None:
        return ""
    m = np.asarray(fp["fixed"]["margins"])
    r0, r1 = fp["relative_residuals"][0], fp["relative_residuals"][-1]
    if fp["converged"]:
        return f", at gf.equilibrium's fixed point {float(_spread(m)):.3f} (converged)"
    held = fp["held_at_zero"]
    return (
        f"; gf.equilibrium from the end: not converged (relative residual {r0:.1e} -> "
        f"{r1:.1e}, activation pattern {_common.flips(fp)}"
        + ("" if held is None else f", {held} live pre-activations within 1e-6 of 0 at the end")
        + "), spread at its last iterate "
        f"{float(_spread(m)):.3f}"
    )


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    sgd = {lam: r for (kind, lam), r in inputs.items() if kind == "sgd"}
    inputs = {k: r for k, r in inputs.items() if k[0] != "sgd"}
    seeds = sorted({s for _, s in inputs})
    parts, finals, first = [], {}, {}
    for ax, lam in zip(axes[:2], DECAYS, strict=True):
        spreads, settled = [], []
        for seed in seeds:
            res = inputs[(lam, seed)]
            traj = res.runs()["flow"]
            m, t = np.asarray(traj["margins"]), traj.t
            s = _spread(m)
            i1 = max(1, len(t) // 10)
            if seed == seeds[0]:
                picks = np.unique(np.round(np.linspace(0, len(t) - 1, 4)).astype(int))
                scale = np.abs(np.mean(m, axis=-1))
                for i in picks[1:]:
                    ax.hist(m[i] / scale[i], bins=30, histtype="step", label=f"t = {t[i]:g}")
                ax.set(
                    xlabel="normalized margin / its mean over samples",
                    ylabel="number of training samples",
                    title=f"flow, λ = {lam:g} (seed {seed})",
                )
                ax.legend(fontsize=7, title="flow time", title_fontsize=7)
                rho_end = float(np.asarray(traj["rho"])[-1])
                parts.append(
                    f"λ={lam:g}: spread {s[i1]:.2f} (t={t[i1]:g}) -> {s[-1]:.3f} "
                    f"(t={t[-1]:g}), min margin·ρ = {np.min(m[-1]) * rho_end:.2f}, relative "
                    f"change over the last quarter {_common.settled(s):.1e}"
                    + (_fixed(res) if lam > 0 else "")
                )
            axes[2].semilogy(
                t[1:],
                s[1:],
                color="C3" if lam > 0 else "C0",
                lw=1,
                label=f"flow, λ = {lam:g}" if seed == seeds[0] else None,
            )
            spreads.append(s[-1])
            settled.append(_common.settled(s))
            first.setdefault(lam, []).append(s[i1])
        finals[lam] = _common.interval(spreads)
        if len(seeds) > 1:
            mean, half = finals[lam]
            parts.append(
                f"λ={lam:g} over seeds {seeds}: final spread {mean:.3f} ± {half:.3f} (95% CI), "
                f"largest relative change over the last quarter {max(settled):.1e}"
            )
    sgd_finals, sgd_first = {}, {}
    for lam, res in sorted(sgd.items(), reverse=True):
        (traj,) = res.runs().values()
        m = np.asarray(traj["margins"])  # (seed, time, sample)
        s = _spread(m)
        beta = float(traj.config["momentum"])
        t_flow = traj.t / (1.0 - beta)  # the heavy-ball step's flow time
        for i, row in enumerate(s):
            axes[2].semilogy(
                t_flow[1:],
                row[1:],
                ":",
                color="C3" if lam > 0 else "C0",
                lw=1,
                label=f"{_common.words(traj)}, λ = {lam:g}" if i == 0 else None,
            )
        sgd_finals[lam] = _common.interval(s[:, -1])
        sgd_first[lam] = float(np.mean(s[:, max(1, s.shape[1] // 10)]))
        mean, half = sgd_finals[lam]
        rho_end = np.asarray(traj["rho"])[:, -1]
        parts.append(
            f"SGD (B={traj.config['batch_size']}, η={traj.config['lr']:g}, momentum {beta:g}, "
            f"{m.shape[0]} seeds, to flow time {t_flow[-1]:g}) λ={lam:g}: final spread "
            f"{mean:.3f} ± {half:.3f} (95% CI), min margin·ρ "
            f"{float(np.mean(np.min(m[:, -1], axis=-1) * rho_end)):.2f}, largest relative change "
            f"over the last quarter {max(_common.settled(row) for row in s):.1e}"
        )
    axes[2].set(
        xlabel="flow time t (SGD: η·step/(1 − β))",
        ylabel="spread: std/mean of the margins (log)",
        title="spread over time",
    )
    axes[2].legend(fontsize=7)
    fig.suptitle(
        "Normalized margins y_n f(V; x_n) along the LM-last flow, λ = "
        f"{DECAYS[0]:g} vs λ = 0 (THEORY 4.4)",
        fontsize=9,
    )
    lam = DECAYS[0]
    ok = finals[lam][0] < 0.5 * float(np.mean(first[lam])) and finals[lam][0] < finals[0.0][0]
    status = (
        "borne out"
        if ok
        else "NOT borne out at this scale (the spread does not fall below half, or below λ=0's)"
    )
    if sgd_finals:
        sgd_ok = (
            sgd_finals[lam][0] < 0.5 * sgd_first[lam] and sgd_finals[lam][0] < sgd_finals[0.0][0]
        )
        status += " by the flow; by SGD (the same criterion on its seed means): " + (
            "borne out" if sgd_ok else "NOT borne out"
        )
    verdict = (
        f"{NAME}: predicted spread -> 0 with λ>0 (smaller than λ=0) and min margin·ρ ≈ 1; "
        f"measured " + "; ".join(parts) + f": {status}"
    )
    return _common.finish(fig, out_dir, NAME, verdict)
