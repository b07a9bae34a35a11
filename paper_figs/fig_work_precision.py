"""Figure work_precision: error at t1 against gradient evaluations for gf.flow's ODE solvers.

Prediction [classical ODE theory, for a smooth right-hand side]: a method of order p has global
error ∝ h^p, i.e. ∝ evals^(−p): Euler 1 (fixed step = gradient descent), Heun 2, Bosh3 3,
Tsit5 5 (adaptive, on an rtol ladder with atol = rtol·1e-2 and no step floor). The claim needs
a smooth right-hand side, so it is judged on a *smooth control* — the same network and data
with a linear activation (a deep linear net: a polynomial vector field) — with ladders spanning
≥ 2 decades (:data:`MIN_DECADES`) and a one-sided criterion: every fitted slope ≥ p − 0.5 (an
error falling faster than h^p is not against the claim; adaptive ladders often overshoot). The
ReLU flow's right-hand side is only piecewise smooth (THEORY 1, and section 3.6 on sliding: it
jumps across switching surfaces): it is outside the claim's hypotheses, and the figure reports
what it measures there — the effective order (fitted slope), the steps forced by the step floor
and the rejected steps.

Error: relative L2 error of the concatenated final weights against the scenario's tight
reference (Tsit5, rtol 1e-11); the reference's own error is its distance to the same at rtol
1e-10, and only errors above 10x that (and below 1e-2, past the pre-asymptotic Euler steps)
enter the fits. Gradient evaluations: steps taken (accepted + rejected, ``stats["num_steps"]``)
times new stages per step, plus the FSAL first stage (:data:`EVALS_PER_STEP`, read from each
solver's Butcher tableau by ``gf.ODE(solver).evaluations_per_step``): Euler 1, Heun 2,
Bosh3 3 + 1, Tsit5 6 + 1.
Reads ``work_precision.toml``'s cached runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import gradflow as gf
from paper_figs import _common, _verdict

NAME = "work_precision"
ORDER = {"euler": 1, "heun": 2, "bosh3": 3, "tsit5": 5}
REF_CHECK_RTOL = 1e-10
MAX_ERROR = 1e-2  # above: pre-asymptotic (Euler's largest steps), left out of the fits
REF_MARGIN = 10.0  # errors must exceed this multiple of the reference's own error
#: Gradient evaluations per step of each named solver (new stages, FSAL first stage), as the
#: dynamics object reads them from the solver's own Butcher tableau; RKC2's vary per step.
EVALS_PER_STEP = {
    name: gf.ODE(cls()).evaluations_per_step
    for name, cls in gf.SOLVERS.items()
    if gf.ODE(cls()).evaluations_per_step is not None
}
SLACK = 0.5  # one-sided: a slope >= p - SLACK bears the order out
MIN_DECADES = 2.0  # the ladder of a judged method spans at least this many decades


def _ladders(fast: bool) -> dict:
    if fast:
        # tolerances and dt0 are traced (one compilation per solver): three points per method,
        # two decades each
        return {
            "euler": (0.01, 0.001, 0.0001),
            "heun": (1e-3, 1e-4, 1e-5),
            "bosh3": (1e-4, 1e-5, 1e-6),
            "tsit5": (1e-5, 1e-6, 1e-7),
        }
    return {
        "euler": (0.01, 0.003, 0.001, 0.0001),
        "heun": (1e-3, 1e-4, 1e-5, 1e-6),
        "bosh3": (1e-4, 1e-5, 1e-6, 1e-7),
        "tsit5": (1e-5, 1e-6, 1e-7, 1e-8),
    }


def _sets(method: str, x: float) -> dict:
    if method == "euler":
        return {"flow.solver": "euler", "flow.dt0": x}
    atol = float(f"{x * 1e-2:.6g}")
    return {"flow.solver": method, "flow.rtol": x, "flow.atol": atol, "flow.dtmin": False}


#: The smooth control, at every profile: the same network and data with a linear activation (a
#: deep linear net: a polynomial, smooth right-hand side), keys ``("smooth", method, x)``.
SMOOTH = {"model.activation": "linear"}
#: The ReLU ladders the fast profile runs: the ReLU net is outside the claim's hypotheses
#: (reported, not judged), so ``--fast`` reports today's default (Heun) and Tsit5 only.
RELU_FAST = ("heun", "tsit5")


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    profile = _common.profile_of(profile)
    fast = profile == "fast"
    points = {
        ("reference", None): {},
        ("ref-check", REF_CHECK_RTOL): _sets("tsit5", REF_CHECK_RTOL),
    }
    smooth = dict(points)
    for method, ladder in _ladders(fast).items():
        for x in ladder:
            smooth[(method, x)] = _sets(method, x)
            if not fast or method in RELU_FAST:
                points[(method, x)] = _sets(method, x)
    points.update({("smooth", *key): {**SMOOTH, **sets} for key, sets in smooth.items()})
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
    """t1, the reference's own error, and per method the (x, evals, error, floor steps,
    rejected steps) of every run that reached t1."""
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
        err = float(np.linalg.norm(w - ref) / np.linalg.norm(ref))
        floor = int(np.sum(traj.stats.get("num_floor_steps", 0)))
        rejected = int(np.sum(traj.stats.get("num_rejected_steps", 0)))
        points[method].append((x, evals, err, floor, rejected))
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


def _decades(pts, evals=None) -> float:
    """How many decades a method's ladder spans (its tolerances, or Euler's steps), over the
    points that entered the fit (``evals``: their evaluation counts) when given."""
    if evals is not None:
        pts = [p for p in pts if p[1] in set(np.asarray(evals).tolist())]
    xs = np.array([p[0] for p in pts], float)
    return float(np.log10(xs.max() / xs.min())) if xs.size > 1 else 0.0


def _regimes(points: dict, fits: dict, ref_err: float, outside: tuple) -> list:
    """One :class:`_verdict.Regime` per method: its slope, fitted points, ladder span, and the
    step floor's and the controller's work (steps forced by the floor, rejected steps)."""
    regimes = []
    for m, pts in points.items():
        reasons = list(outside)
        span = _decades(pts, fits[m][2] if m in fits else None)
        if span < MIN_DECADES:
            reasons.append(f"ladder spans {span:.1f} < {MIN_DECADES:g} decades")
        if m not in fits:
            reasons.append("< 2 points above 10x the reference's error")
        extra = (
            ("slope", f"{-fits[m][0]:.2f}" if m in fits else "none"),
            ("points fitted", len(fits[m][2]) if m in fits else 0),
            ("fitted ladder decades", f"{span:.1f}"),
            ("floor steps", sum(p[3] for p in pts)),
            ("rejected steps", sum(p[4] for p in pts)),
        )
        regimes.append(_verdict.Regime(m, extra=extra, outside=tuple(reasons)))
    return regimes


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    smooth = {k[1:]: r for k, r in inputs.items() if k[0] == "smooth"}
    inputs = {k: r for k, r in inputs.items() if k[0] != "smooth"}
    t1, ref_err, points = _measure(inputs)
    s_t1, s_ref_err, s_points = _measure(smooth)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [2, 1]})
    s_fits = _fits(ax0, s_points, s_ref_err, "--", " (linear: smooth)")
    fits = _fits(ax0, points, ref_err, "-", " (ReLU)")
    ax0.axhline(ref_err, color="0.5", lw=0.8, ls="--", label="ReLU reference's own error")
    ax0.axhline(s_ref_err, color="0.5", lw=0.8, ls=":", label="linear reference's own error")
    ax0.set(
        xlabel="gradient evaluations (count, log)",
        ylabel="||W(t1) − W_ref(t1)|| / ||W_ref(t1)|| (log)",
        title=f"MLP flow on [0, {t1:g}], λ = {_decay(inputs):g}; dashed: linear activation "
        "(smooth control), solid: ReLU; x: left out of the fit",
    )
    ax0.grid(True, which="major", alpha=0.3)
    ax0.legend(fontsize=6, loc="lower left")
    names = [m for m in EVALS_PER_STEP if m in s_points or m in points]
    xs = np.arange(len(names))
    ax1.bar(xs - 0.27, [ORDER[m] for m in names], 0.27, color="0.8", label="order p (smooth)")
    for dx, fit, label, hatch in ((0.0, s_fits, "linear (smooth)", ""), (0.27, fits, "ReLU", "//")):
        ax1.bar(
            xs + dx,
            [-fit[m][0] if m in fit else np.nan for m in names],
            0.27,
            color=[COLORS[m] for m in names],
            hatch=hatch,
            edgecolor="w",
            label=f"fitted slope, {label}",
        )
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_xticks(xs, names)
    ax1.set(
        xlabel="solver",
        ylabel="order: −d log error / d log evals",
        title=f"order: predicted p vs measured (criterion: slope ≥ p − {SLACK:g})",
    )
    ax1.legend(fontsize=6)
    for ax in (ax0, ax1):
        ax.title.set_fontsize(8)
    fig.suptitle("Work-precision of gf.flow's solvers: smooth control and ReLU flow", fontsize=9)

    hyp = _verdict.Hypotheses()
    s_regimes = _regimes(s_points, s_fits, s_ref_err, ())
    relu_regimes = _regimes(points, fits, ref_err, ("ReLU: piecewise-smooth right-hand side",))
    s_gaps = {m: -s_fits[m][0] - ORDER[m] for m in s_fits}
    holds = all(s_gaps.get(m, -np.inf) >= -SLACK for m in s_points)
    word = _verdict.judge(holds, s_regimes, hyp)
    low = [m for m, g in s_gaps.items() if g < -SLACK]
    measured = (
        "smooth control (linear activation, reference's own error "
        f"{s_ref_err:.1e}): slopes "
        + ", ".join(
            f"{m} {-s_fits[m][0]:.2f} (p={ORDER[m]}, gap {s_gaps[m]:+.2f})"
            for m in s_points
            if m in s_fits
        )
        + "; ReLU net (reference's own error "
        f"{ref_err:.1e}): effective orders "
        + ", ".join(f"{m} {-fits[m][0]:.2f}" if m in fits else f"{m} none" for m in points)
    )
    predicted = (
        "error ∝ evals^-p for a smooth right-hand side, p = "
        + ", ".join(f"{ORDER[m]} ({m})" for m in names)
        + f"; criterion: every slope ≥ p − {SLACK:g} on ladders of ≥ {MIN_DECADES:g} decades"
    )
    regimes = [dataclasses.replace(r, label=f"linear {r.label}") for r in s_regimes] + [
        dataclasses.replace(r, label=f"ReLU {r.label}") for r in relu_regimes
    ]
    verdict = _verdict.line(
        NAME,
        predicted,
        measured,
        regimes,
        hyp,
        word,
        f"slope below p − {SLACK:g}: {', '.join(low)}" if low else "smooth control",
    )
    verdict += f"; ReLU net: {_verdict.OUTSIDE} (piecewise smooth; reported, not judged)"
    return _common.finish(fig, out_dir, NAME, verdict)


def _decay(inputs: dict) -> float:
    """λ of the runs (the first point's first run)."""
    return _common.decay(next(iter(next(iter(inputs.values())).runs().values())))
