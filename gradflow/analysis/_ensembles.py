"""Seed ensembles of different dynamics side by side: SDE of SGD against SGD (THEORY 3.4).

:func:`sde_vs_sgd` runs both with the same settings, ``seeds`` seeds each; :func:`ensembles`
puts any seeded runs on one time axis, dims ``(dynamics, seed, t)``; :func:`ensemble_summary`
reduces such a data set to means, standard deviations, their standard errors and z-scores.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import xarray as xr

from .._problem import Problem
from .._validate import bad_value
from ..diffrax_ext import SGDNoise
from ..dynamics import sde, sgd

#: Observables compared by :func:`sde_vs_sgd` (THEORY 4: loss, ρ, margins).
COMPARED = ("data_loss", "rho", "margin_min", "margin_mean")


def ensembles(runs: dict, names=COMPARED) -> xr.Dataset:
    """Seed ensembles side by side: ``{dynamics: Trajectory}`` -> dims ``(dynamics, seed, t)``.

    The time axis is the first run's; each other run is taken at its nearest saved time
    (SGD saves at ``t = η · round(t/η)``), which must lie within half a step (``lr/2``) or
    ``1e-9``. Runs with fewer seeds are padded with NaN. Every run must have seeds.
    """
    runs = dict(runs)
    first = next(iter(runs.values()))
    t = np.asarray(first.t)
    arrays = {}
    for label, tr in runs.items():
        if tr.seeds is None:
            raise bad_value("ensembles", label, tr.kind, "every run needs seeds=k")
        tol = 0.5 * tr.config.get("lr", 0.0) + 1e-9
        idx = np.clip(np.searchsorted(tr.t, t), 0, len(tr.t) - 1)
        left = (idx > 0) & (np.abs(tr.t[idx - 1] - t) <= np.abs(tr.t[idx] - t))
        idx = np.where(left, idx - 1, idx)
        if np.any(np.abs(tr.t[idx] - t) > tol):
            raise bad_value("ensembles", label, f"t={tr.t}", f"it must contain the times {t}")
        arrays[label] = {
            k: xr.DataArray(
                np.asarray(tr[k])[:, idx],
                dims=("seed", "t"),
                coords={"seed": np.asarray(tr.seeds), "t": t},
            )
            for k in names
        }
    out = {
        k: xr.concat([arrays[label][k] for label in runs], dim="dynamics", join="outer")
        for k in names
    }
    ds = xr.Dataset(out).assign_coords(dynamics=list(runs))
    ds.attrs["configs"] = json.dumps({k: tr.config for k, tr in runs.items()}, default=str)
    return ds


def ensemble_summary(ds: xr.Dataset) -> xr.Dataset:
    """Mean, std and their standard errors over ``seed``, and z-scores of the first two.

    ``sem = std/sqrt(S)``; ``sem_std = sqrt((m4 − std⁴)/(4 std² S))`` (delta method with the
    sample fourth central moment). ``z_mean``/``z_std`` compare ``dynamics[0]`` with
    ``dynamics[1]``: the difference over the root sum of squared standard errors.
    """
    count = ds.count("seed")
    mean, std = ds.mean("seed"), ds.std("seed", ddof=1)
    m4 = ((ds - mean) ** 4).mean("seed")
    sem = std / np.sqrt(count)
    sem_std = np.sqrt(np.maximum(m4 - std**4, 0.0) / (4 * std**2 * count))
    out = xr.concat(
        [mean, std, sem, sem_std], dim=xr.DataArray(["mean", "std", "sem", "sem_std"], dims="stat")
    )
    a, b = ds["dynamics"].values[:2]
    pick = lambda x, d: x.sel(dynamics=d)  # noqa: E731
    z_mean = (pick(mean, a) - pick(mean, b)) / np.hypot(pick(sem, a), pick(sem, b))
    z_std = (pick(std, a) - pick(std, b)) / np.hypot(pick(sem_std, a), pick(sem_std, b))
    return _summary(out, z_mean, z_std)


def _summary(out, z_mean, z_std) -> xr.Dataset:
    data = {}
    for k in out.data_vars:
        for stat in out["stat"].values:
            data[f"{k}_{stat}"] = out[k].sel(stat=stat, drop=True)
        data[f"{k}_z_mean"] = z_mean[k]
        data[f"{k}_z_std"] = z_std[k]
    return xr.Dataset(data)


def sde_vs_sgd(
    problem: Problem,
    *,
    lr: float,
    batch_size: int,
    sampling: str = "with-replacement",
    t1: float,
    ts=None,
    save_every: float | None = None,
    seeds: int,
    key,
    dt0: float | None = None,
    names=COMPARED,
) -> xr.Dataset:
    """Run the SDE (``gf.flow(..., noise=…)``) and ``gf.sgd`` with ``seeds`` seeds each.

    Both use the same problem, ``lr``, ``batch_size`` and ``sampling`` (default
    ``"with-replacement"``, whose independent batches the SDE models exactly; see
    :class:`SGDNoise`). Returns :func:`ensembles` of ``{"sde": …, "sgd": …}``: the
    distributions over seeds of ``names`` at the save times, dims ``(dynamics, seed, t)``,
    ready for a figure; :func:`ensemble_summary` reduces it.
    """
    k_sde, k_sgd = jax.random.split(key)
    noise = SGDNoise(lr, batch_size, sampling)
    run_sde = sde(
        problem, noise, key=k_sde, seeds=seeds, t1=t1, ts=ts, save_every=save_every, dt0=dt0
    )
    run_sgd = sgd(
        problem,
        lr=lr,
        batch_size=batch_size,
        sampling=sampling,
        t1=t1,
        ts=ts,
        save_every=save_every,
        key=k_sgd,
        seeds=seeds,
    )
    return ensembles({"sde": run_sde, "sgd": run_sgd}, names)
