"""Figure work_precision: error at t1 against gradient evaluations for gf.flow's ODE solvers.

Prediction [classical ODE theory, for a smooth right-hand side]: a method of order p has global
error ∝ h^p, i.e. ∝ evals^(−p): Euler 1 (fixed step = gradient descent), Heun 2, Bosh3 3,
Tsit5 5 (adaptive, on an rtol ladder with atol = rtol·1e-2 and no step floor). The ReLU flow's
right-hand side is only piecewise smooth (THEORY 1: it jumps across switching surfaces), so the
measured slopes may fall short of p; the figure reports the fitted log-log slopes, their gap to
p, and the methods' ranking at equal work (fitted lines at a common number of evaluations).

Error: relative L2 error of the concatenated final weights against the scenario's tight
reference (Tsit5, rtol 1e-11); the reference's own error is its distance to the same at rtol
1e-10, and only errors above 10x that (and below 1e-2, past the pre-asymptotic Euler steps)
enter the fits. Gradient evaluations: steps taken (accepted + rejected, ``stats["num_steps"]``)
times new stages per step, plus the FSAL first stage (``gradflow.dynamics.EVALS_PER_STEP``, which
``benchmarks/work_precision.py`` uses too): Euler 1, Heun 2, Bosh3 3 + 1, Tsit5 6 + 1.
Reads ``work_precision.toml``'s cached runs.
"""

from __future__ import annotations

import numpy as np

from gradflow.dynamics import EVALS_PER_STEP
from paper_figs import _common

NAME = "work_precision"
ORDER = {"euler": 1, "heun": 2, "bosh3": 3, "tsit5": 5}
REF_CHECK_RTOL = 1e-10
MAX_ERROR = 1e-2  # above: pre-asymptotic (Euler's largest steps), left out of the fits
REF_MARGIN = 10.0  # errors must exceed this multiple of the reference's own error


def _ladders(fast: bool) -> dict:
    if fast:
        # tolerances and dt0 are traced (one compilation per solver): three points per method
        return {
            "euler": (0.025, 0.0125, 0.00625),
            "heun": (1e-3, 1e-4, 1e-5),
            "bosh3": (1e-4, 1e-5, 1e-6),
            "tsit5": (1e-5, 1e-6, 1e-7),
        }
    return {
        "euler": (0.025, 0.0125, 0.00625, 0.003125),
        "heun": (1e-3, 1e-4, 1e-5, 1e-6),
        "bosh3": (1e-4, 1e-5, 1e-6, 1e-7),
        "tsit5": (1e-5, 1e-6, 1e-7, 1e-8),
    }


def _sets(method: str, x: float) -> list[str]:
    if method == "euler":
        return ["flow.solver=euler", f"flow.dt0={x!r}"]
    atol = float(f"{x * 1e-2:.6g}")
    return [f"flow.solver={method}", f"flow.rtol={x!r}", f"flow.atol={atol!r}", "flow.dtmin=false"]


#: At the paper profile, a smooth control of the same size: the same network and data with a
#: linear activation (a deep linear net: a polynomial, smooth right-hand side), keys
#: ``("smooth", method, x)``.
SMOOTH = ["model.activation=linear"]


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    profile = _common.profile_of(profile)
    fast = profile == "fast"
    points = {
        ("reference", None): [],
        ("ref-check", REF_CHECK_RTOL): _sets("tsit5", REF_CHECK_RTOL),
    }
    for method, ladder in _ladders(fast).items():
        for x in ladder:
            points[(method, x)] = _sets(method, x)
    if profile == "paper":
        points.update({("smooth", *key): [*SMOOTH, *sets] for key, sets in list(points.items())})
    return _common.sweep("work_precision", profile, points, log=log)


def _final(res):
    (traj,) = res.runs().values()
    return traj, np.concatenate([np.ravel(np.asarray(w)) for w in traj.final_params])


def _fit(evals, errs):
    """Least-squares ``log err = c + s log evals``; returns (s, c)."""
    s, c = np.polyfit(np.log(evals), np.log(errs), 1)
    return float(s), float(c)


COLORS = {"euler": "k", "heun": "tab:blue", "bosh3": "tab:green", "tsit5": "tab:red"}


def _measure(inputs: dict) -> tuple[float, float, dict]:
    """t1, the reference's own error, and per method the (x, evals, error) of every run that
    reached t1."""
    ref_traj, ref = _final(inputs[("reference", None)])
    t1 = float(ref_traj.t[-1])
    _, check = _final(inputs[("ref-check", REF_CHECK_RTOL)])
    ref_err = float(np.linalg.norm(check - ref) / np.linalg.norm(ref))
    ran = {method for method, _ in inputs if method in EVALS_PER_STEP}
    points = {m: [] for m in EVALS_PER_STEP if m in ran}
    for (method, x), res in inputs.items():
        if method not in EVALS_PER_STEP:
            continue
        traj, w = _final(res)
        if traj.stats["status"] != "success" or not np.isclose(traj.t[-1], t1):
            continue
        per, fsal = EVALS_PER_STEP[method]
        evals = traj.stats["num_steps"] * per + fsal
        points[method].append((x, evals, float(np.linalg.norm(w - ref) / np.linalg.norm(ref))))
    return t1, ref_err, points


def _fits(ax, points: dict, ref_err: float, style: str, suffix: str = "") -> dict:
    """Fit and draw each method's errors in range: method -> (slope, intercept, evals used)."""
    fits = {}
    for m, pts in points.items():
        pts.sort(key=lambda p: p[1])
        ev = np.array([p[1] for p in pts], float)
        er = np.array([p[2] for p in pts], float)
        use = (er > REF_MARGIN * ref_err) & (er < MAX_ERROR)
        if use.sum() >= 2:
            fits[m] = (*_fit(ev[use], er[use]), ev[use])
        label = m + (" (fixed dt)" if m == "euler" else " (rtol ladder)") + suffix
        if m in fits:
            label += f": slope {-fits[m][0]:.2f} (p = {ORDER[m]})"
        ax.loglog(ev, er, "o" + style, color=COLORS[m], ms=4, label=label)
        ax.loglog(ev[~use], er[~use], "x", color=COLORS[m], ms=8)
        if m in fits:
            s, c, e = fits[m]
            xs = np.array([e.min(), e.max()])
            ax.loglog(xs, np.exp(c) * xs**s, ":", color=COLORS[m], lw=2, alpha=0.6)
    return fits


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    smooth = {k[1:]: r for k, r in inputs.items() if k[0] == "smooth"}
    inputs = {k: r for k, r in inputs.items() if k[0] != "smooth"}
    t1, ref_err, points = _measure(inputs)
    ran = set(points)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [2, 1]})
    fits = _fits(ax0, points, ref_err, "-")
    ax0.axhline(ref_err, color="0.5", lw=0.8, ls="--", label="reference's own error")
    smooth_text = ""
    if smooth:
        _, s_ref_err, s_points = _measure(smooth)
        s_fits = _fits(ax0, s_points, s_ref_err, "--", " (linear activation)")
        smooth_text = (
            "; smooth control (the same net with a linear activation): slopes "
            + ", ".join(
                f"{m} {-s_fits[m][0]:.2f} (p={ORDER[m]}, gap {-s_fits[m][0] - ORDER[m]:+.2f})"
                for m in s_points
                if m in s_fits
            )
            + "".join(f", no fit for {m}" for m in s_points if m not in s_fits)
            + f", reference's own error {s_ref_err:.1e}"
        )
    ax0.set(
        xlabel="gradient evaluations (count, log)",
        ylabel="||W(t1) − W_ref(t1)|| / ||W_ref(t1)|| (log)",
        title=f"ReLU MLP flow on [0, {t1:g}], λ = {_decay(inputs):g}; x: left out of the fit",
    )
    ax0.grid(True, which="major", alpha=0.3)
    ax0.legend(fontsize=7, loc="lower left")
    names = [m for m in EVALS_PER_STEP if m in ran]
    xs = np.arange(len(names))
    ax1.bar(xs - 0.2, [ORDER[m] for m in names], 0.4, color="0.8", label="order p (smooth)")
    ax1.bar(
        xs + 0.2,
        [-fits[m][0] if m in fits else np.nan for m in names],
        0.4,
        color=[COLORS[m] for m in names],
        label="fitted slope",
    )
    ax1.set_xticks(xs, names)
    ax1.set(
        xlabel="solver",
        ylabel="order: −d log error / d log evals",
        title="order: predicted vs measured",
    )
    ax1.legend(fontsize=7)
    for ax in (ax0, ax1):
        ax.title.set_fontsize(8)
    fig.suptitle("Work-precision of gf.flow's solvers on a piecewise-smooth ReLU flow", fontsize=9)

    missing = [m for m in names if m not in fits]
    # ranking at equal work: the fitted lines at a common number of evaluations
    all_evals = np.concatenate([fits[m][2] for m in fits]) if fits else np.array([1.0])
    work = float(10 ** np.round(np.mean(np.log10(all_evals)), 1))
    at_work = {m: float(np.exp(c) * work**s) for m, (s, c, _) in fits.items()}
    ranking = sorted(at_work, key=at_work.get)
    predicted_rank = sorted(fits, key=lambda m: -ORDER[m])
    gaps = {m: -fits[m][0] - ORDER[m] for m in fits}
    ok = not missing and all(abs(g) <= 0.5 for g in gaps.values())
    text = ", ".join(
        f"{m} {-fits[m][0]:.2f} (p={ORDER[m]}, gap {gaps[m]:+.2f}, {len(fits[m][2])} pts)"
        for m in names
        if m in fits
    )
    if missing:
        text += f"; no fit (< 2 points in range) for {', '.join(missing)}"
    outside = {m for m in fits if not fits[m][2].min() <= work <= fits[m][2].max()}
    rank_text = " < ".join(f"{m} {at_work[m]:.1e}" + ("*" * (m in outside)) for m in ranking)
    if outside:
        rank_text += " (*: extrapolated beyond its measured range)"
    status = "borne out" if ok else "NOT borne out at this scale"
    reason = "" if ok else " (criterion |slope − p| ≤ 0.5 for every method)"
    verdict = (
        f"{NAME}: predicted error ∝ evals^-p, p = "
        + ", ".join(f"{ORDER[m]} ({m})" for m in names)
        + f", higher order better at equal work ({' < '.join(predicted_rank)}); "
        f"measured slopes {text}; "
        f"error at {work:.0f} evals (fitted): {rank_text}; reference's own error {ref_err:.1e}"
        f"{smooth_text}: {status}{reason}"
    )
    return _common.finish(fig, out_dir, NAME, verdict)


def _decay(inputs: dict) -> float:
    """λ of the runs (the first point's first run)."""
    return _common.decay(next(iter(next(iter(inputs.values())).runs().values())))
