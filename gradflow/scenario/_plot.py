"""The summary PNG of a scenario: chosen observables of every run against ``t`` (one axis).

One panel per observable, one colour per run (flow solid and thick, SDE dash-dot, GD dashed,
SGD thin), the legend in words (:func:`describe_run`: "SGD η = 0.05, B = 16", not the run's
label). The ``rho`` panel adds ``rho_eq`` (THEORY 4.1) dotted in the run's colour when
recorded.
Per-layer observables (``rho_k``, ``v_norm``, ``balance_gap``) draw one line per component,
each named at its right end (``k = 1``, ``k = 1|2``); ``balance_drift`` is
``||balance_gap(t) − balance_gap(0)||`` over layer pairs. Ensembles are averaged over seeds.
Every panel has its y label; dpi 150. Uses Matplotlib's Agg canvas directly (no pyplot, no
global backend).
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

LABELS = {
    "loss": "loss L",
    "data_loss": "data loss",
    "rho": "ρ",
    "rho_eq": "ρ_eq",
    "rho_k": "ρ_k",
    "margin_min": "min normalized margin",
    "margin_mean": "mean margin",
    "margin_std": "margin std",
    "balance_gap": "ρ_k² − ρ_{k+1}²",
    "balance_drift": "||gap(t) − gap(0)||",
    "v_norm": "||v_k|| (WN)",
    "unit_norm_error": "| ||V_k|| − 1 |",
    "train_acc": "train accuracy (fraction)",
    "test_acc": "test accuracy (fraction)",
    "test_loss": "test loss",
}
#: What a per-layer observable's component ``k`` is (0-based), in words.
_COMPONENT = {
    "rho_k": lambda k: f"k = {k + 1}",
    "v_norm": lambda k: f"k = {k + 1}",
    "balance_gap": lambda k: f"k = {k + 1}|{k + 2}",
}
_KIND = {"flow": "flow", "sde": "SDE", "gd": "GD", "sgd": "SGD"}
DPI = 150
_STYLE = {
    "flow": dict(lw=2.2, ls="-"),
    "sde": dict(lw=1.2, ls="-."),
    "gd": dict(lw=1.4, ls="--"),
    "sgd": dict(lw=1.0, ls="-"),
}


def describe_run(traj) -> str:
    """A run in words for a legend: its dynamics and settings (η, B, momentum β, seeds), e.g.
    ``"SGD η = 0.05, B = 16"``, ``"SDE η = 0.02, B = 4, 64 seeds"``, ``"flow"``."""
    config = traj.config
    kind = traj.kind
    words = [_KIND.get(kind, kind)]
    settings = config.get("noise") if kind == "sde" else config
    if kind in ("sde", "gd", "sgd") and isinstance(settings, dict):
        if settings.get("lr") is not None:
            words.append(f"η = {float(settings['lr']):g}")
        if kind != "gd" and settings.get("batch_size") is not None:
            words.append(f"B = {int(settings['batch_size'])}")
        if float(config.get("momentum") or 0.0):
            words.append(f"β = {float(config['momentum']):g}")
    text = words[0] + (" " + ", ".join(words[1:]) if len(words) > 1 else "")
    if traj.seeds is not None:
        text += f", {len(np.atleast_1d(traj.seeds))} seeds"
    return text


def _series(traj, name):
    """``(t, values (T, K))`` of observable ``name`` (seed-averaged), or ``None``."""
    if name == "balance_drift":
        gap = _series(traj, "balance_gap")
        if gap is None:
            return None
        t, v = gap
        return t, np.linalg.norm(v - v[:1], axis=1, keepdims=True)
    if name not in traj.observables:
        return None
    v = np.asarray(traj[name], dtype=float)
    if traj.seeds is not None:
        v = np.nanmean(v, axis=0)
    return np.asarray(traj.t), v.reshape(v.shape[0], -1)


@np.errstate(all="ignore")  # a diverged run's inf/NaN are simply not drawn
def summary_plot(trajectories: dict, panels, path, *, logy=(), title: str = "") -> Path:
    """Write the summary figure of ``trajectories`` (label -> Trajectory) to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(panels)
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(6.0 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    colors = [f"C{i % 10}" for i in range(len(trajectories))]
    words = _legend_words(trajectories)
    for ax, name in zip(axes, panels, strict=False):
        drawn = named = False
        for color, (label, traj) in zip(colors, trajectories.items(), strict=True):
            style = dict(_STYLE.get(traj.kind, _STYLE["sgd"]), color=color)
            series = _series(traj, name)
            if series is None:
                continue
            t, v = series
            for k in range(v.shape[1]):
                ax.plot(
                    t,
                    v[:, k],
                    label=words[label] if k == 0 else None,
                    alpha=1.0 if v.shape[1] == 1 else 0.8,
                    **style,
                )
                if v.shape[1] > 1 and not named and np.isfinite(v[-1, k]):
                    # each layer's line named once, at its right end
                    name_of = _COMPONENT.get(name, lambda k: f"#{k + 1}")
                    ax.annotate(
                        name_of(k),
                        (t[-1], v[-1, k]),
                        xytext=(3, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize=7,
                        color=color,
                    )
            named = named or v.shape[1] > 1
            drawn = True
            if name == "rho" and "rho_eq" in traj.observables:
                t_eq, eq = _series(traj, "rho_eq")
                ax.plot(t_eq, eq[:, 0], color=color, ls=":", lw=style["lw"])
        if not drawn:
            ax.text(
                0.5, 0.5, f"{name}: not recorded", ha="center", va="center", transform=ax.transAxes
            )
        if name in logy:
            ax.set_yscale("log")
        with_eq = name == "rho" and any("rho_eq" in t.observables for t in trajectories.values())
        ax.set_title(
            LABELS.get(name, name) + (" (dotted: ρ_eq(V), THEORY 4.1)" if with_eq else ""),
            fontsize=10,
        )
        ax.set_xlabel("flow time t  (GD, SGD: t = η·step)")
        ax.set_ylabel(LABELS.get(name, name) + (" (log scale)" if name in logy else ""))
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, Path(path))


def _legend_words(trajectories: dict) -> dict:
    """Run label -> :func:`describe_run`, the label added where two runs read alike."""
    words = {label: describe_run(traj) for label, traj in trajectories.items()}
    counts = {}
    for text in words.values():
        counts[text] = counts.get(text, 0) + 1
    return {k: text if counts[text] == 1 else f"{text} ({k})" for k, text in words.items()}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fig.savefig(tmp, format="png", dpi=DPI)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a figure is for everyone to read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
