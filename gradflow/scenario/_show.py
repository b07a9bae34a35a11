"""``gradflow show PATH``: a table of the results in a run file, a sweep file or a folder.

One row per run (a scenario's ``<name>__<run>.nc``, or its ``<name>.nc`` when the run files
are gone) and per run of every sweep point (``<name>.sweep.nc``): scenario, run, dynamics,
status, the time reached, the wall time (where the file records it; ``—`` otherwise), the
final loss, ρ, minimal normalized margin and test accuracy, and the gaps of the predictions
that the recorded observables allow (LM-last, THEORY 4.1 and 4.4):
``|ρ/ρ_eq − 1|`` and ``|ρ · min margin − 1|`` at the end. Ensembles are averaged over seeds.
``plot=True`` also draws each scenario's and each sweep's summary PNG next to its file.

Files are read with xarray as they are: a variable or attribute that a file lacks is shown
as ``—``, never an error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .._validate import ConfigError

COLUMNS = (
    ("scenario", "scenario"),
    ("run", "run"),
    ("dynamics", "dynamics"),
    ("status", "status"),
    ("t", "t reached"),
    ("wall", "wall time"),
    ("loss", "loss"),
    ("rho", "ρ"),
    ("margin_min", "margin"),
    ("test_acc", "test acc"),
    ("gap_rho_eq", "gap 4.1"),
    ("gap_margin", "gap 4.4"),
)
NUMBERS = {"t", "loss", "rho", "margin_min", "test_acc", "gap_rho_eq", "gap_margin"}
FOOTER = (
    "gap 4.1 = |ρ/ρ_eq(V) − 1|, gap 4.4 = |ρ · min margin − 1| at the end (THEORY 4.1, 4.4; "
    "LM-last runs only); wall time where the file records it"
)


def show(path, *, plot: bool = False) -> list[str]:
    """The lines of the table of ``path`` (and, with ``plot``, the PNGs drawn)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"PATH={str(path)!r} is not allowed; it does not exist (give a results folder, "
            "a <name>.nc, <name>__<run>.nc or <name>.sweep.nc file)"
        )
    scenarios, sweeps = _sources(path)
    if not scenarios and not sweeps:
        raise ConfigError(
            f"PATH={str(path)!r} is not allowed; it holds no gradflow results (no <name>.nc, "
            "<name>__<run>.nc or <name>.sweep.nc file)"
        )
    rows, notes, drawn = [], [], []
    for name, (combined, runs) in sorted(scenarios.items()):
        try:
            rows += _scenario_rows(name, combined, runs)
            if plot:
                drawn.append(_draw_scenario(name, combined, runs))
        except (KeyError, ValueError, TypeError, IndexError) as err:  # not a gradflow file
            notes.append(f"{combined or runs[0]}: not shown ({type(err).__name__}: {err})")
    for sweep in sorted(sweeps):
        try:
            with _open(sweep) as ds:
                ds = ds.load()
            rows += _sweep_rows(ds, sweep)
            notes.append(_sweep_note(ds, sweep))
            if plot:
                drawn.append(_draw_sweep(ds, sweep))
        except (KeyError, ValueError, TypeError, IndexError) as err:
            notes.append(f"{sweep}: not shown ({type(err).__name__}: {err})")
    lines = _table(rows)
    lines.append(FOOTER)
    lines += notes
    lines += [f"drew {p}" for p in drawn if p is not None]
    return lines


# ---- what is in PATH ----------------------------------------------------------------------


def _sources(path: Path):
    """``({scenario: (combined file or None, [run files])}, [sweep files])``."""
    files = [path] if path.is_file() else sorted(path.glob("*.nc"))
    scenarios: dict = {}
    sweeps = []
    for f in files:
        name = f.name
        if name.endswith(".sweep.nc"):
            sweeps.append(f)
        elif "__" in name:
            scen = name.split("__", 1)[0]
            scenarios.setdefault(scen, [None, []])[1].append(f)
        elif name.endswith(".nc"):
            scen = name[: -len(".nc")]
            scenarios.setdefault(scen, [None, []])[0] = f
    if path.is_file() and not sweeps:  # a single file: its scenario's other files too
        for scen, entry in scenarios.items():
            if entry[0] is not None and not entry[1]:  # <name>.nc: its runs beside it
                entry[1] = sorted(path.parent.glob(f"{scen}__*.nc"))
    return {k: tuple(v) for k, v in scenarios.items()}, sweeps


def _open(path):
    import xarray as xr

    try:
        return xr.open_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"PATH={str(path)!r} is not allowed; it is not a readable NetCDF file ({err})"
        ) from None


def _json(text, default):
    try:
        return json.loads(text) if isinstance(text, str) else default
    except ValueError:
        return default


# ---- rows -----------------------------------------------------------------------------------


def _final(ds, prefix: str, name: str, index=None):
    """``prefix + name`` at the last save with a finite loss (seeds averaged; per-layer: the
    largest |component|), or None."""
    var = prefix + name
    if var not in ds:
        return None
    da = ds[var] if index is None else ds[var].isel(index)
    loss = ds.get(prefix + "loss", da)
    loss = loss if index is None else loss.isel(index)
    if "seed" in da.dims:
        da = da.mean("seed")
    if "seed" in loss.dims:
        loss = loss.mean("seed")
    if "t" in da.dims and "t" in loss.dims:
        flat = np.asarray(loss.values, dtype=float).reshape(loss.sizes["t"], -1)
        ok = np.flatnonzero(np.isfinite(flat).all(axis=1))
        if ok.size == 0:
            return None
        da = da.isel(t=int(ok[-1]))
    v = np.asarray(da.values, dtype=float)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return None
    return float(v) if v.ndim == 0 else float(np.max(np.abs(v)))


def _t_reached(ds, prefix: str, index=None):
    var = prefix + "loss"
    if var not in ds or "t" not in ds[var].dims:
        return None
    loss = ds[var] if index is None else ds[var].isel(index)
    if "seed" in loss.dims:
        loss = loss.mean("seed")
    ok = np.flatnonzero(np.isfinite(np.asarray(loss.values, dtype=float)))
    return float(ds["t"].values[ok[-1]]) if ok.size else None


def _observables(ds, prefix: str = "", index=None) -> dict:
    row = {k: _final(ds, prefix, k, index) for k in ("loss", "rho", "margin_min", "test_acc")}
    rho, rho_eq = row["rho"], _final(ds, prefix, "rho_eq", index)
    lm_last = rho_eq is not None
    row["gap_rho_eq"] = abs(rho / rho_eq - 1) if lm_last and rho and rho_eq else None
    margin = row["margin_min"]
    row["gap_margin"] = abs(rho * margin - 1) if lm_last and rho and margin is not None else None
    return row


def _wall(value) -> str:
    """A wall time in seconds (a number or its text) as ``12.3 s`` / ``4 min 05 s``."""
    if isinstance(value, (list, tuple)) and value:
        value = max(value)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return str(value) if value not in (None, "") else "—"
    if not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.3g} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _wall_of(attrs: dict, stats: dict) -> str:
    for value in (attrs.get("wall_time"), stats.get("wall_time"), stats.get("wall_seconds")):
        if value is not None:
            return _wall(value)
    return "—"


def _scenario_rows(name: str, combined, runs) -> list[dict]:
    rows = []
    for f in runs:
        with _open(f) as ds:
            ds = ds.load()
        stats = _json(ds.attrs.get("stats"), {})
        config = _json(ds.attrs.get("config"), {})
        t = stats.get("t_reached")
        t = max(t) if isinstance(t, list) and t else t
        row = {
            "scenario": name,
            "run": config.get("run", f.name[len(name) + 2 : -3]),
            "dynamics": ds.attrs.get("kind", config.get("dynamics", "—")),
            "status": stats.get("status", "—"),
            "t": t if t is not None else _t_reached(ds, ""),
            "wall": _wall_of(ds.attrs, stats),
        }
        rows.append(row | _observables(ds))
    if rows or combined is None:
        return rows
    with _open(combined) as ds:  # the run files are gone: the combined file's runs
        ds = ds.load()
    for i, label in enumerate(ds["run"].values if "run" in ds.dims else []):
        index = {"run": i}
        coord = lambda c: str(ds[c].values[i]) if c in ds.coords else "—"  # noqa: E731
        row = {
            "scenario": name,
            "run": str(label),
            "dynamics": coord("dynamics"),
            "status": coord("status"),
            "t": _t_reached(ds, "", index),
            "wall": _wall_of(ds.attrs, {}),
        }
        rows.append(row | _observables(ds, "", index))
    return rows


def _sweep_rows(ds, path: Path) -> list[dict]:
    from ._sweep_plot import points, runs_of

    name = ds.attrs.get("scenario", path.name[: -len(".sweep.nc")])
    rows = []
    for values, sel in points(ds):
        where = ", ".join(f"{a}={_value(v)}" for a, v in values.items())
        status = str(np.asarray(ds["status"].isel(sel).values).item())
        wall = _wall(ds["wall_time"].isel(sel).values.item()) if "wall_time" in ds else "—"
        for run in runs_of(ds):
            prefix = f"{run}__"
            row = {
                "scenario": name,
                "run": f"{run} [{where}]",
                "dynamics": run.split("_")[0],
                "status": status,
                "t": _t_reached(ds, prefix, sel),
                "wall": wall,
            }
            rows.append(row | _observables(ds, prefix, sel))
    return rows


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _sweep_note(ds, path: Path) -> str:
    from ._sweep_plot import axes_of

    status = [str(s) for s in np.ravel(ds["status"].values)]
    counts = ", ".join(f"{status.count(s)} {s}" for s in sorted(set(status)))
    mode = ds.attrs.get("mode", "")
    return (
        f"{path}: sweep {mode} over {' × '.join(axes_of(ds))}, {len(status)} points ({counts})"
        + (f"; wall time {_wall(ds.attrs['wall_time'])}" if "wall_time" in ds.attrs else "")
    )


# ---- the table ------------------------------------------------------------------------------


def _cell(key: str, value) -> str:
    if value is None:
        return "—"
    if key in NUMBERS and isinstance(value, (int, float)):
        return f"{value:.4g}" if not key.startswith("gap") else f"{value:.2e}"
    return str(value)


def _table(rows: list[dict]) -> list[str]:
    cells = [[_cell(k, r.get(k)) for k, _ in COLUMNS] for r in rows]
    heads = [h for _, h in COLUMNS]
    widths = [max([len(h)] + [len(c[j]) for c in cells]) for j, h in enumerate(heads)]

    def line(values):
        out = []
        for (key, _), v, w in zip(COLUMNS, values, widths):
            out.append(v.rjust(w) if key in NUMBERS or key == "wall" else v.ljust(w))
        return "  ".join(out).rstrip()

    return [line(heads)] + [line(c) for c in cells]


# ---- --plot ---------------------------------------------------------------------------------


def _draw_scenario(name: str, combined, runs):
    from .._trajectory import load
    from ._plot import summary_plot

    if not runs:
        return None
    trajectories = {}
    for f in runs:
        traj = load(f)
        trajectories[traj.config.get("run", f.name[len(name) + 2 : -3])] = traj
    output, title = {}, name
    if combined is not None:
        with _open(combined) as ds:
            output = _json(ds.attrs.get("config"), {}).get("output", {})
            title = f"{name}: {ds.attrs.get('description', '')}".rstrip(": ")
    panels = output.get("plot") or ["loss", "rho", "margin_min", "test_acc"]
    folder = (combined or runs[0]).parent
    return summary_plot(
        trajectories, panels, folder / f"{name}.png", logy=output.get("logy", ()), title=title
    )


def _draw_sweep(ds, path: Path):
    from ._sweep_plot import sweep_plot

    output = _json(ds.attrs.get("config"), {}).get("output", {})
    name = ds.attrs.get("scenario", path.name[: -len(".sweep.nc")])
    return sweep_plot(
        ds,
        path.parent / f"{name}.sweep.png",
        panels=output.get("plot", ()),
        logy=output.get("logy", ()),
        title=f"sweep {name}",
    )
