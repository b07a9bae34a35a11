"""``gf.compare``: two trajectories on one time axis."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._trajectory import Trajectory


def _mean_over_seeds(ds: xr.Dataset) -> xr.Dataset:
    return ds.mean("seed") if "seed" in ds.dims else ds


def compare(a: Trajectory, b: Trajectory) -> xr.Dataset:
    """Differences ``a − b`` of every shared observable on a common time grid.

    The grid is the times of ``a`` inside the span of ``b``; ``b`` is linearly
    interpolated onto it (SGD's ``t = η·step`` against the flow's save times). Ensembles
    are averaged over seeds first. Adds ``param_distance``: ``||W_a − W_b||`` over all
    layers at the final states (seed-averaged weights for ensembles), and the relative
    version ``param_distance_rel``.
    """
    da, db = _mean_over_seeds(a.to_xarray()), _mean_over_seeds(b.to_xarray())
    t = da["t"].values
    t = t[(t >= db["t"].values[0] - 1e-12) & (t <= db["t"].values[-1] + 1e-12)]
    shared = [k for k in a.observables if k in b.observables]
    out = {}
    for name in shared:
        va = da[name].sel(t=t)
        vb = db[name].interp(t=t)
        if va.shape != vb.shape:
            continue
        out[name] = va - vb.values
    wa = [np.asarray(w) for w in a.final_params]
    wb = [np.asarray(w) for w in b.final_params]
    if a.seeds is not None:
        wa = [w.mean(0) for w in wa]
    if b.seeds is not None:
        wb = [w.mean(0) for w in wb]
    dist = float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(wa, wb))))
    norm = float(np.sqrt(sum(np.sum(y**2) for y in wb)))
    ds = xr.Dataset(out, coords={"t": t})
    ds.attrs.update(
        param_distance=dist,
        param_distance_rel=dist / norm if norm > 0 else float("nan"),
        a=a.kind,
        b=b.kind,
    )
    return ds
