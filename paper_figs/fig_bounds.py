"""Figure bounds: dense vs kernel-norm margin bounds of a LocalCNN and its test error (THEORY 6).

Predictions: [exact] a VALID convolution with ``d_k`` output positions has Toeplitz norm
``||W_k||_F = sqrt(d_k) ||w_k||_F``, so the dense bound's norm product (Golowich–Rakhlin–Shamir)
exceeds the kernel bound's by ``Π_k sqrt(d_k)`` and the kernel bound [recon, constants
unverified] is the tighter one. Measurements, not predictions: whether either bound is
non-vacuous (< 1) at this scale, and whether the bounds track the test error (Spearman rank
correlation across training-set sizes N, and along training).

Reads ``bounds.toml``'s cached SGD runs, one per N; each saves every layer's kernel along
training (``weights`` group), so ``gf.bounds.all_bounds`` is evaluated at every save on the
rebuilt (deterministic) data. ``all_bounds`` picks γ among the positive training margins; only
while no margin is positive is γ = ∞, with the trivial value 1 + confidence (drawn as open
circles); the correlation along training (all N pooled) uses only the points with a finite γ.
The Toeplitz matrices of the final weights are built explicitly (``gf.bounds.toeplitz_matrices``)
to measure the norm ratio.
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "bounds"


def _sizes(fast: bool):
    return (16, 64) if fast else (8, 16, 32, 64, 128, 192)


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    fast = _common.profile_of(profile) == "fast"
    points = {n: {"data.n_train": n} for n in _sizes(fast)}
    return _common.sweep("bounds", profile, points, log=log)


def _rebuild(res):
    """The validated config (its data set, regenerated) and the model of a cached result."""
    from gradflow.scenario import build_problem, validate

    config = validate(res.config()["table"])
    return config, build_problem(config).model


def _evaluate(res) -> dict:
    """all_bounds at every save, and the Toeplitz/kernel norm ratio of the final weights."""
    import gradflow as gf

    config, model = _rebuild(res)
    (traj,) = res.runs().values()
    rows = []
    for i in range(len(traj.t)):
        ws = [np.reshape(traj[f"w{k}"][i], w.shape) for k, w in enumerate(model.weights)]
        rows.append(gf.bounds.all_bounds(model, ws, config.dataset))
    final = [np.asarray(w) for w in traj.final_params]
    toeplitz = gf.bounds.toeplitz_matrices(model, final)
    dense_norm = np.prod([np.linalg.norm(np.asarray(w)) for w in toeplitz])
    kernel_norm = np.prod([np.linalg.norm(w) for w in final])
    # the rebuilt data must be the trained data: same final training error
    recorded = 1.0 - float(np.asarray(traj["train_acc"])[-1])
    if abs(recorded - rows[-1]["train_error"]) > 1e-9:
        raise RuntimeError(
            f"rebuilt data disagree with the run: train error {rows[-1]['train_error']:.4g} "
            f"vs recorded {recorded:.4g}"
        )
    table = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return {
        "t": np.asarray(traj.t),
        "table": table,
        "norm_ratio": float(dense_norm / kernel_norm),
        "predicted_ratio": gf.bounds.dense_to_kernel_ratio(model),
        "n_test": config.dataset.n_test,
        "train_loss": float(np.asarray(traj["data_loss"])[-1]),
    }


def spearman(x, y) -> float:
    """Spearman rank correlation (NaN when one side is constant)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    evals = {n: _evaluate(res) for n, res in sorted(inputs.items())}
    sizes = sorted(evals)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, n in enumerate(sizes):
        e, c = evals[n], colors[i % len(colors)]
        floor = 0.5 / e["n_test"]
        tab = e["table"]
        ax0.semilogy(e["t"], tab["bound_dense"], "-", color=c, label=f"N = {n} training samples")
        ax0.semilogy(e["t"], tab["bound_kernel"], "--", color=c)
        trivial = ~np.isfinite(tab["gamma_dense"])
        ax0.semilogy(e["t"][trivial], tab["bound_dense"][trivial], "o", mfc="none", color=c)
        ax0.semilogy(e["t"], np.maximum(tab["test_error"], floor), ":", marker=".", color=c)
    ax0.axhline(1.0, color="0.4", lw=0.8)
    # style key
    ax0.plot([], [], "k-", label="dense bound (Golowich–Rakhlin–Shamir)")
    ax0.plot([], [], "k--", label="kernel-norm bound")
    ax0.plot([], [], "ko", mfc="none", label="trivial bound (γ = ∞): 1 + confidence")
    ax0.plot([], [], "k:", marker=".", label="measured test error")
    ax0.set(
        xlabel="flow time t = η·step",
        ylabel="bound on the test error, or the test error (log)",
        title="along SGD training",
    )
    ax0.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fin = {k: np.array([evals[n]["table"][k][-1] for n in sizes]) for k in evals[sizes[0]]["table"]}
    n_test = evals[sizes[0]]["n_test"]
    floor = 0.5 / n_test
    ax1.loglog(sizes, fin["bound_dense"], "o-", label="dense bound (Golowich–Rakhlin–Shamir)")
    ax1.loglog(sizes, fin["bound_kernel"], "s--", label="kernel-norm bound")
    err = fin["test_error"]
    ax1.loglog(sizes, np.maximum(err, floor), "^:", label=f"test error (0 drawn at {floor:.1g})")
    ax1.axhline(1.0, color="0.4", lw=0.8, label="1 (vacuous above)")
    ax1.set(
        xlabel="training-set size N (log)",
        ylabel="bound or test error at the end (log)",
        title=f"end of training, t = {evals[sizes[0]]['t'][-1]:g}; {n_test} test samples",
    )
    ax1.set_xticks(sizes, [str(n) for n in sizes])
    ax1.minorticks_off()
    ax1.legend(fontsize=7)
    for ax in (ax0, ax1):
        ax.title.set_fontsize(8)
    fig.suptitle(
        "LocalCNN on digits 4 vs 9: margin bounds (THEORY 6) vs measured test error", fontsize=9
    )

    predicted = evals[sizes[0]]["predicted_ratio"]
    ratios = np.array([evals[n]["norm_ratio"] for n in sizes])
    ratio_dev = float(np.max(np.abs(ratios / predicted - 1)))
    all_dense = np.concatenate([evals[n]["table"]["bound_dense"] for n in sizes])
    all_kernel = np.concatenate([evals[n]["table"]["bound_kernel"] for n in sizes])
    all_err = np.concatenate([evals[n]["table"]["test_error"] for n in sizes])
    points = len(all_dense)
    never_looser = bool(np.all(all_kernel <= all_dense * (1 + 1e-12)))
    strictly_final = bool(np.all(fin["bound_kernel"] < fin["bound_dense"]))
    r_ratio = fin["rademacher_dense"] / fin["rademacher_kernel"]
    other = r_ratio / predicted  # B_x / P_x times the ratio of the log terms
    final_train_err = float(np.max(fin["train_error"]))
    rho_n_dense, rho_n_kernel = (
        spearman(fin["bound_dense"], err),
        spearman(fin["bound_kernel"], err),
    )
    # along training, only where the bound is not the trivial γ = ∞ value 1 + confidence
    # (all_bounds offers γ = ∞ while some training margin is ≤ 0)
    finite = np.concatenate([np.isfinite(evals[n]["table"]["gamma_dense"]) for n in sizes])
    rho_t_dense = spearman(all_dense[finite], all_err[finite])
    rho_t_kernel = spearman(all_kernel[finite], all_err[finite])
    ok = ratio_dev < 1e-9 and never_looser and strictly_final
    finals = ", ".join(
        f"N={n}: dense {d:.3g}, kernel {k:.3g}, test error {t:.3g}"
        for n, d, k, t in zip(sizes, fin["bound_dense"], fin["bound_kernel"], err, strict=True)
    )
    # the ratio is exact and the comparison of the two bounds holds at any weights: no
    # hypotheses; the regime says where the runs ended (fit, and whether a bound is < 1)
    regimes = [
        _verdict.Regime(
            f"N={n}",
            train_acc=1.0 - float(tr),
            extra=(("dense bound", f"{d:.3g}"), ("kernel bound", f"{k:.3g}")),
        )
        for n, d, k, tr in zip(
            sizes, fin["bound_dense"], fin["bound_kernel"], fin["train_error"], strict=True
        )
    ]
    hyp = _verdict.Hypotheses()
    verdict = (
        f"{NAME}: predicted Π||W_k||_F / Π||w_k||_F = Π sqrt(d_k) = {predicted:g} and kernel "
        f"bound < dense bound; measured norm ratio {np.mean(ratios):.6g} (max rel. dev "
        f"{ratio_dev:.1e}), R_dense/R_kernel {np.min(r_ratio):.3g}..{np.max(r_ratio):.3g} "
        f"(= {predicted:g} × B_x/P_x × log terms {np.min(other):.3g}..{np.max(other):.3g}); "
        f"kernel ≤ dense at {int(np.sum(all_kernel <= all_dense * (1 + 1e-12)))}/{points} "
        f"points; final (max train error {final_train_err:.3g}) {finals}; bound < 1 at "
        f"{int(np.sum(all_dense < 1))}/{points} (dense), {int(np.sum(all_kernel < 1))}/{points} "
        f"(kernel) points; Spearman(bound, test error) across the {len(sizes)} N "
        f"{rho_n_dense:.2f} (dense), "
        f"{rho_n_kernel:.2f} (kernel), along training ({int(finite.sum())} points with finite "
        f"γ, N pooled) "
        f"{rho_t_dense:.2f}, "
        f"{rho_t_kernel:.2f}; {_verdict.regime_text(regimes, hyp)}: "
        f"{_verdict.judge(ok, regimes, hyp)}"
    )
    return _common.finish(fig, out_dir, NAME, verdict)
