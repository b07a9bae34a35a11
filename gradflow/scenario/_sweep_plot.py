"""The summary PNG of a sweep, ``<name>.sweep.png``: final observables against its axes.

One panel per observable (the scenario's ``[output] plot``); x is the first axis, one line per
value of the other axes (all combinations) and per run of the point (flow solid and thick,
SDE dash-dot, GD dashed, SGD thin, as in the run's summary PNG). A point's value is the
observable at the last save time where its loss is finite, averaged over seeds (per-layer
observables: the largest component in absolute value). Points that did not succeed are drawn
as open markers. Uses Matplotlib's Agg canvas directly (no pyplot).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: Observables drawn when the scenario names none (or none that the sweep recorded).
DEFAULT_PANELS = ("loss", "rho", "margin_min", "test_acc")


def runs_of(ds) -> list[str]:
    """The run names of a sweep Dataset (``flow``, ``sgd``, ``sde_1``, ...), in order."""
    names = []
    for var in ds.data_vars:
        if "__" in var:
            run = var.split("__", 1)[0]
            if run not in names:
                names.append(run)
    return names


def point_dims(ds) -> list[str]:
    """The dimensions that index the sweep's points (those of its ``status``)."""
    return list(ds["status"].dims)


def axes_of(ds) -> list[str]:
    """The sweep's axes as coordinate names (grid: the point dimensions; zip: the
    coordinates along ``point``), whatever they are called in the file."""
    dims = point_dims(ds)
    if dims == ["point"]:
        axes = [c for c in ds.coords if ds[c].dims == ("point",) and c != "point"]
        return axes or ["point"]
    return dims


def points(ds):
    """Yield ``(label values, selection)`` per point: ``{axis: value}`` and the ``isel``
    dictionary of the point in ``ds``."""
    dims = point_dims(ds)
    axes = axes_of(ds)
    shape = [ds.sizes[d] for d in dims]
    for index in np.ndindex(*shape):
        sel = dict(zip(dims, index))
        values = {
            a: _scalar(ds[a].isel({d: i for d, i in sel.items() if d in ds[a].dims})) for a in axes
        }
        yield values, sel


def _scalar(da):
    v = da.values
    v = v.item() if hasattr(v, "item") else v
    return v.decode() if isinstance(v, bytes) else v


def final_value(ds, run: str, name: str, sel: dict):
    """The observable ``name`` of ``run`` at the point ``sel`` at its last save time with a
    finite loss (seed-averaged; per-layer: the largest |component|), or None."""
    var = f"{run}__{name}"
    if var not in ds:
        return None
    da = ds[var].isel(sel)
    loss = ds[f"{run}__loss"].isel(sel) if f"{run}__loss" in ds else da
    if "seed" in da.dims:
        da, loss = da.mean("seed"), loss.mean("seed")
    if "t" in da.dims:
        ok = np.isfinite(loss.values.reshape(loss.sizes.get("t", 1), -1)).all(axis=1)
        if not ok.any():
            return None
        da = da.isel(t=int(np.flatnonzero(ok)[-1]))
    v = np.asarray(da.values, dtype=float)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return None
    return float(v) if v.ndim == 0 else float(np.max(np.abs(v)))


def t_reached(ds, run: str, sel: dict):
    """The last save time of ``run`` at the point ``sel`` with a finite loss, or None."""
    var = f"{run}__loss"
    if var not in ds or "t" not in ds[var].dims:
        return None
    loss = ds[var].isel(sel)
    if "seed" in loss.dims:
        loss = loss.mean("seed")
    ok = np.isfinite(loss.values)
    return float(ds["t"].values[np.flatnonzero(ok)[-1]]) if ok.any() else None


def _panels(ds, panels) -> list[str]:
    if not panels:
        try:
            panels = json.loads(ds.attrs.get("config", "{}")).get("output", {}).get("plot")
        except (TypeError, ValueError):
            panels = None
    panels = list(panels or DEFAULT_PANELS)
    runs = runs_of(ds)
    recorded = [p for p in panels if any(f"{r}__{p}" in ds for r in runs)]
    return recorded or [p for p in DEFAULT_PANELS if any(f"{r}__{p}" in ds for r in runs)]


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


@np.errstate(all="ignore")
def sweep_plot(ds, path, *, panels=(), logy=(), title: str = "") -> Path:
    """Write the summary figure of the sweep Dataset ``ds`` to ``path`` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ._plot import _STYLE, LABELS, _save

    panels = _panels(ds, panels)
    axes_names = axes_of(ds)
    x_name, others = axes_names[0], axes_names[1:]
    runs = runs_of(ds)
    rows = list(points(ds))
    xs = [v[x_name] for v, _ in rows]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    categories = list(dict.fromkeys(xs))
    pos = (lambda x: float(x)) if numeric else (lambda x: float(categories.index(x)))  # noqa: E731
    groups = list(dict.fromkeys(tuple(v[o] for o in others) for v, _ in rows))
    ncols = min(max(len(panels), 1), 2)
    nrows = max(math.ceil(len(panels) / ncols), 1)
    fig = Figure(figsize=(6.0 * ncols, 3.4 * nrows + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    kinds = {r: r.split("_")[0] for r in runs}
    for ax, name in zip(axes, panels, strict=False):
        for run in runs:
            series = {}
            for group in groups:
                pts = []
                for values, sel in rows:
                    if tuple(values[o] for o in others) != group:
                        continue
                    y = final_value(ds, run, name, sel)
                    ok = str(_scalar(ds["status"].isel(sel))) == "success"
                    if y is not None:
                        pts.append((pos(values[x_name]), y, ok))
                if pts:
                    series[group] = sorted(pts)
            # a run that the other axes do not change (the flow beside an SGD learning rate
            # axis) is one black line
            first = next(iter(series.values()), None)
            same = len(series) > 1 and all(v == first for v in series.values())
            for gi, group in enumerate(groups):
                if group not in series or (same and gi > 0):
                    continue
                color = "k" if same else f"C{gi % 10}"
                x, y, ok = (np.array(c) for c in zip(*series[group]))
                words = ", ".join(f"{o} = {_label(v)}" for o, v in zip(others, group))
                label = run + (f" ({words})" if words and not same else "")
                style = dict(_STYLE.get(kinds[run], _STYLE["sgd"]), color=color)
                ax.plot(x, y, label=label, marker="o", ms=4, **style)
                if (~ok).any():
                    ax.plot(x[~ok], y[~ok], ls="", marker="o", ms=8, mfc="none", color=color)
        if name in logy:
            ax.set_yscale("log")
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(categories)), [_label(c) for c in categories])
        ax.set_title(f"{LABELS.get(name, name)} at the end of each run", fontsize=10)
        ax.set_xlabel(x_name)
        ax.set_ylabel(LABELS.get(name, name))
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(handles, labels, fontsize=7)
    status = [str(s) for s in np.ravel(ds["status"].values)]
    failed = len(status) - status.count("success")
    fig.suptitle(
        (title or f"sweep {ds.attrs.get('scenario', '')}")
        + f": {len(status)} points"
        + (f", {failed} not successful (open markers)" if failed else ""),
        fontsize=11,
    )
    return _save(fig, Path(path))
