"""The summary PNG of a scenario: chosen observables of every run against ``t`` (one axis).

One panel per observable, one colour per run (flow solid and thick, SDE dash-dot, GD dashed,
SGD thin). The ``rho`` panel adds ``rho_eq`` (THEORY 4.1) dotted in the run's colour when
recorded.
Per-layer observables (``rho_k``, ``v_norm``, ``balance_gap``) draw one line per component;
``balance_drift`` is ``||balance_gap(t) − balance_gap(0)||`` over layer pairs. Ensembles are
averaged over seeds. Uses Matplotlib's Agg canvas directly (no pyplot, no global backend).
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
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
    "test_loss": "test loss",
}
_STYLE = {
    "flow": dict(lw=2.2, ls="-"),
    "sde": dict(lw=1.2, ls="-."),
    "gd": dict(lw=1.4, ls="--"),
    "sgd": dict(lw=1.0, ls="-"),
}


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
    for ax, name in zip(axes, panels, strict=False):
        drawn = False
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
                    label=label if k == 0 else None,
                    alpha=1.0 if v.shape[1] == 1 else 0.8,
                    **style,
                )
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
        ax.set_xlabel("t  (SGD: t = η·step)")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, Path(path))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fig.savefig(tmp, format="png", dpi=100)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a figure is for everyone to read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
