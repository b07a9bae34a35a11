"""``gf.ensemble_summary`` and ``gf.compare`` against hand computations in NumPy.

The SDE-vs-SGD criterion rests on ``ensemble_summary``'s standard errors and z-scores, and every
flow-vs-SGD figure on ``compare``'s differences; both are recomputed here from their definitions.
"""

import numpy as np
import pytest
import xarray as xr

import gradflow as gf


def _ensembles(seeds=40, times=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, seeds, times)
    a = rng.normal(1.0, 0.3, size=shape) + np.array([0.0, 0.05])[:, None, None]
    b = rng.gamma(2.0, 1.5, size=shape) * np.array([1.0, 1.3])[:, None, None]  # skewed
    return xr.Dataset(
        {"loss": (("dynamics", "seed", "t"), a), "rho": (("dynamics", "seed", "t"), b)},
        coords={"dynamics": ["sde", "sgd"], "seed": np.arange(seeds), "t": [0.5, 1.0, 2.0]},
    )


def test_ensemble_summary_matches_hand_computation():
    ds = _ensembles()
    out = gf.ensemble_summary(ds)
    for name in ("loss", "rho"):
        x = ds[name].values  # (dynamics, seed, t)
        s = x.shape[1]
        mean = x.mean(axis=1)
        std = np.sqrt(np.sum((x - mean[:, None]) ** 2, axis=1) / (s - 1))
        m4 = np.mean((x - mean[:, None]) ** 4, axis=1)
        sem = std / np.sqrt(s)
        sem_std = np.sqrt((m4 - std**4) / (4 * std**2 * s))
        z_mean = (mean[0] - mean[1]) / np.sqrt(sem[0] ** 2 + sem[1] ** 2)
        z_std = (std[0] - std[1]) / np.sqrt(sem_std[0] ** 2 + sem_std[1] ** 2)
        expected = {
            "mean": mean,
            "std": std,
            "sem": sem,
            "sem_std": sem_std,
        }
        for stat, value in expected.items():
            np.testing.assert_allclose(out[f"{name}_{stat}"].values, value, rtol=1e-12)
        np.testing.assert_allclose(out[f"{name}_z_mean"].values, z_mean, rtol=1e-12)
        np.testing.assert_allclose(out[f"{name}_z_std"].values, z_std, rtol=1e-12)
    # the delta-method SE of the std is the Gaussian sqrt(1/(2(S−1)))·std only roughly
    assert np.all(out["loss_sem_std"].values > 0)


def test_ensemble_summary_z_scores_detect_a_shift():
    """Equal laws give |z| of order 1; a 10-SE shift of the mean gives z ≈ −10."""
    ds = _ensembles(seeds=400, seed=1)
    x = ds["loss"].values.copy()
    x[1] = x[0][np.random.default_rng(2).permutation(400)]  # same values, other seeds' order
    same = gf.ensemble_summary(ds.assign(loss=(ds["loss"].dims, x)))
    np.testing.assert_allclose(same["loss_z_mean"].values, 0.0, atol=1e-9)
    np.testing.assert_allclose(same["loss_z_std"].values, 0.0, atol=1e-9)
    sem = x[0].std(axis=0, ddof=1) / np.sqrt(400)
    x[1] = x[0] + 10 * np.sqrt(2) * sem  # a shift only: the std, and so the SEs, are equal
    shifted = gf.ensemble_summary(ds.assign(loss=(ds["loss"].dims, x)))
    np.testing.assert_allclose(shifted["loss_z_mean"].values, -10.0, rtol=1e-9)


def _trajectory(kind, t, obs, params, seeds=None):
    return gf.Trajectory(
        kind=kind,
        t=np.asarray(t, float),
        observables={k: np.asarray(v, float) for k, v in obs.items()},
        dims={"rho_k": ("layer",)},
        final_params=tuple(np.asarray(p, float) for p in params),
        stats={},
        config={},
        seeds=seeds,
    )


def test_compare_differences_per_observable():
    """``a − b`` on a's times inside b's span, b interpolated linearly; seeds averaged first."""
    ta = np.linspace(0.0, 3.0, 7)  # 0, 0.5, ..., 3: the last two lie beyond b's span
    tb = np.array([0.0, 0.3, 1.1, 1.6, 2.0])
    rng = np.random.default_rng(0)
    a = _trajectory(
        "flow",
        ta,
        {"loss": np.exp(-ta), "rho_k": np.stack([ta, 2 * ta], 1), "only_a": ta},
        [np.ones((2, 3)), np.full((1, 2), 2.0)],
    )
    seeds_loss = rng.normal(size=(3, len(tb)))
    seeds_rho = rng.normal(size=(3, len(tb), 2))
    b = _trajectory(
        "sgd",
        tb,
        {"loss": seeds_loss, "rho_k": seeds_rho},
        [np.zeros((3, 2, 3)), np.stack([np.full((1, 2), k) for k in (1.0, 2.0, 3.0)])],
        seeds=np.arange(3),
    )
    out = gf.compare(a, b)
    inside = ta[ta <= 2.0]
    np.testing.assert_allclose(out["t"].values, inside)
    compared = {v for v in out.data_vars if not v.startswith("param_distance")}
    assert compared == {"loss", "rho_k"}  # only the shared observables (and the distances)
    np.testing.assert_allclose(
        out["loss"].values, np.exp(-inside) - np.interp(inside, tb, seeds_loss.mean(0))
    )
    for j in range(2):
        ref = (j + 1) * inside - np.interp(inside, tb, seeds_rho.mean(0)[:, j])
        np.testing.assert_allclose(out["rho_k"].values[:, j], ref)
    # final weights: a = (ones(2, 3), 2·ones(1, 2)); b's seed means = (zeros, 2·ones)
    # of the seed means: ||(ones(2, 3), 0)|| = √6 against ||W_b mean|| = √8
    assert out.attrs["param_distance_of_means"] == pytest.approx(np.sqrt(6.0))
    assert out.attrs["param_distance_of_means_rel"] == pytest.approx(np.sqrt(6.0) / np.sqrt(8.0))
    # per seed k = 1, 2, 3 (W_2 = k·ones(1, 2)): distances √8, √6, √8, norms √2, √8, √18
    per_seed, norms = np.sqrt([8.0, 6.0, 8.0]), np.sqrt([2.0, 8.0, 18.0])
    assert out.attrs["param_distance"] == pytest.approx(per_seed.mean())
    assert out.attrs["param_distance_rel"] == pytest.approx(np.mean(per_seed / norms))
    assert (out.attrs["a"], out.attrs["b"]) == ("flow", "sgd")
