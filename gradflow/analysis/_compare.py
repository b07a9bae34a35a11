"""``gf.compare``: two trajectories on one time axis."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._trajectory import Trajectory


def _mean_over_seeds(ds: xr.Dataset) -> xr.Dataset:
    return ds.mean("seed") if "seed" in ds.dims else ds


def _members(traj: Trajectory) -> list[list[np.ndarray]]:
    """The final weights of each member: one list of layers per seed (one member without)."""
    weights = [np.asarray(w) for w in traj.final_params]
    if traj.seeds is None:
        return [weights]
    return [[w[s] for w in weights] for s in range(len(traj.seeds))]


def _norm(layers) -> float:
    return float(np.sqrt(sum(np.sum(np.square(w)) for w in layers)))


def _distance(x, y) -> float:
    return float(np.sqrt(sum(np.sum((u - v) ** 2) for u, v in zip(x, y, strict=True))))


def _relative(dist: float, norm: float) -> float:
    return dist / norm if norm > 0 else float("nan")


def compare(a: Trajectory, b: Trajectory) -> xr.Dataset:
    """Differences ``a − b`` of every shared observable on a common time grid, and the
    distance of the final weights.

    The grid is the times of ``a`` inside the span of ``b``; ``b`` is linearly
    interpolated onto it (SGD's ``t = η·step`` against the flow's save times). The
    observables of an ensemble are averaged over its seeds first (attribute
    ``observables_compared``: ``"seed means"`` then, else ``"runs"``).

    The final weights, ``||W_a − W_b||`` over all layers (attribute ``param_distance_measures``
    says which of the following applies, in words):

    * ``param_distance``: per member, then averaged: without seeds the one distance; with one
      ensemble, ``mean_s ||W_a − W_b^s||`` (or ``W_a^s``); with two, the mean over every pair
      ``(s, s')`` of ``||W_a^s − W_b^{s'}||`` (the seeds of two ensembles are not coupled).
      ``param_distance_std``: the spread of those distances (0 without seeds).
      ``param_distance_rel``: the mean of each distance divided by its ``||W_b||``.
    * ``param_distance_of_means``, ``param_distance_of_means_rel``: the distance between the
      seed-averaged weights (equal to ``param_distance`` without seeds; smaller with seeds,
      the members' independent noise averaging out).
    * with exactly one ensemble, the data variables ``param_distance_seed`` and
      ``param_distance_seed_rel`` (dimension ``seed``): each member's distance.
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
    ma, mb = _members(a), _members(b)
    pairs = [(x, y) for x in ma for y in mb]
    dists = np.array([_distance(x, y) for x, y in pairs])
    rels = np.array([_relative(_distance(x, y), _norm(y)) for x, y in pairs])
    mean_a = [np.mean(ws, axis=0) for ws in zip(*ma, strict=True)]
    mean_b = [np.mean(ws, axis=0) for ws in zip(*mb, strict=True)]
    of_means = _distance(mean_a, mean_b)
    ensembles = (a.seeds is not None) + (b.seeds is not None)
    coords = {"t": t}
    if ensembles == 1:
        coords["seed"] = np.asarray(a.seeds if a.seeds is not None else b.seeds)
        out["param_distance_seed"] = ("seed", dists)
        out["param_distance_seed_rel"] = ("seed", rels)
    measures = {
        0: "||W_a - W_b|| over all layers at the final states",
        1: "||W_a - W_b|| over all layers at the final states, per seed of the ensemble, "
        "averaged over its seeds (param_distance_of_means: of the seed-averaged weights)",
        2: "||W_a - W_b|| over all layers at the final states, averaged over every pair of "
        "a seed of a and a seed of b (param_distance_of_means: of the seed-averaged weights)",
    }[ensembles]
    ds = xr.Dataset(out, coords=coords)
    ds.attrs.update(
        param_distance=float(np.mean(dists)),
        param_distance_rel=float(np.mean(rels)),
        param_distance_std=float(np.std(dists)),
        param_distance_of_means=of_means,
        param_distance_of_means_rel=_relative(of_means, _norm(mean_b)),
        param_distance_measures=measures,
        observables_compared="seed means" if ensembles else "runs",
        a=a.kind,
        b=b.kind,
    )
    return ds
