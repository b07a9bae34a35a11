"""Figure init_scale: final ρ, normalized margin and test error against the initialization scale.

Prediction [paper, THEORY 4.4]: with weight decay λ > 0 the LM-last flow forgets its
initialization: the final ρ (= ρ_eq(V), THEORY 4.1), the normalized margin min_n y_n f(V; x_n)
and the test error hardly depend on the init scale; without decay the final state depends on it
(larger init, larger ρ). Criterion: the relative range (max − min)/mean|·| over the init scales of
the final ρ is < 5 % with decay and at least 5× smaller than without, and that of the margin is
smaller with decay than without and the decayed margin at least λ = 0's at every scale (smaller
ρ, larger margin); the test error's range and mean with decay within two binomial standard
errors of λ = 0's. Hypotheses (THEORY 4.3, 4.4; ``_verdict.QUASI_INTERPOLATION``): every λ > 0
point fits its training set (train accuracy 1) with small ε and residuals after λ·t ≥ 20;
every λ = 0 point fits its training set; otherwise the verdict is "outside the claim's
hypotheses" with the numbers that put it there.
Reads ``init_scale.toml``'s cached flows, one scenario per (init scale, λ) (``--set
model.init_scale=…``, ``--set problem.weight_decay=…``). In LM-last the init scale s only sets
ρ(0) ∝ s³ (three layers): V(0) is the same for every s.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "init_scale"
DECAYS = (0.0025, 0.0)
RHO_TOL, RATIO = 0.05, 5.0


def _scales(fast: bool):
    return (0.05, 0.22, 1.0) if fast else tuple(np.round(np.geomspace(0.05, 1.0, 5), 3))


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    fast = _common.profile_of(profile) == "fast"
    points = {
        (float(s), lam): {"model.init_scale": float(s), "problem.weight_decay": lam}
        for lam in DECAYS
        for s in _scales(fast)
    }
    return _common.sweep("init_scale", profile, points, log=log)


def _rel_range(values) -> float:
    values = np.asarray(values, dtype=float)
    return float((values.max() - values.min()) / np.mean(np.abs(values)))


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    # the init scale and λ of each run as the run recorded them (not the figure's own key)
    inputs = {
        (float(res.value("model.init_scale")), _common.decay(res.runs()["flow"])): res
        for res in inputs.values()
    }
    fig, axes = plt.subplots(2, 2, figsize=(9.5, 6.8))
    (ax_t, ax_rho), (ax_m, ax_err) = axes
    final, gaps, losses = {}, {}, {}
    cmap = plt.get_cmap("viridis")
    scales = sorted({s for s, _ in inputs})
    for lam in DECAYS:
        rows = []
        for i, s in enumerate(scales):
            traj = inputs[(s, lam)].runs()["flow"]
            rho = np.asarray(traj["rho"])
            err = 1.0 - float(np.asarray(traj["test_acc"])[-1])
            rows.append((s, rho[-1], float(np.asarray(traj["margin_min"])[-1]), err))
            losses.setdefault(lam, []).append(float(np.asarray(traj["data_loss"])[-1]))
            if lam > 0:
                gaps[s] = abs(rho[-1] / float(np.asarray(traj["rho_eq"])[-1]) - 1)
            ax_t.plot(
                traj.t,
                rho,
                "-" if lam > 0 else "--",
                color=cmap(i / max(1, len(scales) - 1)),
                label=f"init scale s = {s:g}" if lam > 0 else None,
            )
        final[lam] = np.array(rows)
        style = "o-" if lam > 0 else "s--"
        for ax, col in ((ax_rho, 1), (ax_m, 2), (ax_err, 3)):
            ax.plot(final[lam][:, 0], final[lam][:, col], style, label=f"flow, λ = {lam:g}")
    ax_t.set(
        yscale="log",
        xlabel="flow time t",
        ylabel="ρ(t) = Π_k ||W_k||_F (log)",
        title=f"ρ(t) per init scale s (solid λ = {DECAYS[0]:g}, dashed λ = 0)",
    )
    scale = "init scale s (multiplies the initial weights; log)"
    ax_rho.set(xscale="log", yscale="log", xlabel=scale, ylabel="final ρ (log)", title="final ρ")
    ax_m.set(
        xscale="log",
        xlabel=scale,
        ylabel="final min_n y_n f(V; x_n)\n(normalized margin)",
        title="final smallest normalized margin",
    )
    ax_err.set(
        xscale="log", xlabel=scale, ylabel="final test error (fraction)", title="final test error"
    )
    from matplotlib.ticker import NullLocator

    for ax in (ax_rho, ax_m, ax_err):  # ticks at the measured scales
        ax.set_xticks(scales, [f"{s:g}" for s in scales])
        ax.xaxis.set_minor_locator(NullLocator())
    ax_t.legend(fontsize=7, ncol=2)
    for ax in (ax_rho, ax_m, ax_err):
        ax.legend(fontsize=7)
    for ax in axes.ravel():
        ax.title.set_fontsize(8)
    classes = inputs[(scales[0], DECAYS[0])].config()["table"]["data"]["classes"]
    fig.suptitle(
        f"LM-last flow, digits {classes[0]} vs {classes[1]}: final state against the init "
        "scale, with and without weight decay (THEORY 4.4)",
        fontsize=9,
    )

    lam_pos = DECAYS[0]
    rho_r = {lam: _rel_range(final[lam][:, 1]) for lam in DECAYS}
    m_r = {lam: _rel_range(final[lam][:, 2]) for lam in DECAYS}
    err_r = {lam: float(np.ptp(final[lam][:, 3])) for lam in DECAYS}
    n_test = int(inputs[(scales[0], lam_pos)].config()["table"]["data"]["n_test"])
    # the test-error claims, up to the binomial noise of n_test points (2 standard errors)
    e0 = float(np.mean(final[0.0][:, 3]))
    err_tol = 2.0 * np.sqrt(max(e0 * (1 - e0), 1.0 / n_test) / n_test)
    claims = {
        "ρ": rho_r[lam_pos] < RHO_TOL and rho_r[lam_pos] * RATIO < rho_r[0.0],
        "margin": m_r[lam_pos] < m_r[0.0]
        and bool(np.all(final[lam_pos][:, 2] >= final[0.0][:, 2])),
        "test error": err_r[lam_pos] <= max(err_r[0.0], err_tol)
        and float(np.mean(final[lam_pos][:, 3])) <= e0 + err_tol,
    }
    points = []
    for lam in DECAYS:
        hyp = _verdict.QUASI_INTERPOLATION if lam > 0 else _verdict.INTERPOLATION
        for s in scales:
            traj = inputs[(s, lam)].runs()["flow"]
            extra = (("|ρ/ρ_eq − 1|", f"{gaps[s]:.1e}"),) if lam > 0 else ()
            points.append(
                (
                    _verdict.run_regime(
                        traj, f"s={s:g} λ={lam:g}", _common.settled(traj["rho"]), extra=extra
                    ),
                    hyp,
                )
            )
    failed = [k for k, ok in claims.items() if not ok]
    word = _verdict.judge(not failed, points)
    parts = [
        f"λ={lam:g}: final ρ {final[lam][0, 1]:.3g}..{final[lam][-1, 1]:.3g} "
        f"(rel. range {rho_r[lam]:.2g}), margin {final[lam][0, 2]:+.3g}..{final[lam][-1, 2]:+.3g} "
        f"(rel. range {m_r[lam]:.2g}), test error {final[lam][0, 3]:.3f}..{final[lam][-1, 3]:.3f} "
        f"(range {err_r[lam]:.3f})"
        for lam in DECAYS
    ]
    loss0 = losses[0.0]
    verdict = _verdict.line(
        NAME,
        "with λ>0 the final ρ, normalized margin and test error hardly depend on the init "
        f"scale, without decay they do (ρ: rel. range < {RHO_TOL:g} and {RATIO:g}× below λ=0's; "
        "margin: rel. range below λ=0's and margin ≥ λ=0's at every scale; test error: range "
        f"and mean within 2 binomial SE ({err_tol:.3f}, n_test={n_test}) of λ=0's)",
        f"over s={scales[0]:g}..{scales[-1]:g} (first..last) "
        + "; ".join(parts)
        + f"; λ=0 data loss {min(loss0):.1e}..{max(loss0):.1e}; claims "
        + ", ".join(f"{k} {'hold' if ok else 'fail'}" for k, ok in claims.items())
        + (
            " (test error 0 at every point with and without decay: that claim is not "
            "discriminated here)"
            if not np.any(final[lam_pos][:, 3]) and not np.any(final[0.0][:, 3])
            else ""
        ),
        points,
        None,
        word,
        ("fails: " + ", ".join(failed)) if failed and word != _verdict.OUTSIDE else "",
    )
    return _common.finish(fig, out_dir, NAME, verdict)
