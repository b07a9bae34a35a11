"""gf.compare: what its distances measure, against a hand computation."""

import numpy as np
import pytest

import gradflow as gf


def _traj(kind, weights, seeds=None, t1=1.0):
    t = np.linspace(0.0, t1, 5)
    lead = (seeds, 5) if seeds else (5,)
    return gf.Trajectory(
        kind=kind,
        t=t,
        observables={"loss": np.ones(lead), "rho": np.full(lead, 2.0)},
        dims={},
        final_params=tuple(weights),
        stats={"status": "success"},
        config={},
        seeds=None if seeds is None else np.arange(seeds),
    )


def _layers(rng, lead=()):
    return [rng.standard_normal((*lead, 3, 2)), rng.standard_normal((*lead, 1, 3))]


def _dist(x, y):
    return np.sqrt(sum(((u - v) ** 2).sum() for u, v in zip(x, y)))


def test_compare_flow_against_an_ensemble_per_seed_and_of_the_means():
    rng = np.random.default_rng(0)
    flow = _traj("flow", _layers(rng))
    sgd = _traj("sgd", _layers(rng, (4,)), seeds=4)
    cmp = gf.compare(flow, sgd)
    w, ws = flow.final_params, sgd.final_params
    # by hand: seed s of the ensemble against the flow's weights, then the mean
    per_seed = [_dist(w, [x[s] for x in ws]) for s in range(4)]
    rel = [per_seed[s] / np.sqrt(sum((x[s] ** 2).sum() for x in ws)) for s in range(4)]
    np.testing.assert_allclose(cmp["param_distance_seed"].values, per_seed, rtol=1e-12)
    np.testing.assert_allclose(cmp["param_distance_seed_rel"].values, rel, rtol=1e-12)
    assert cmp.attrs["param_distance"] == pytest.approx(np.mean(per_seed), rel=1e-12, abs=0)
    assert cmp.attrs["param_distance_rel"] == pytest.approx(np.mean(rel), rel=1e-12, abs=0)
    assert cmp.attrs["param_distance_std"] == pytest.approx(np.std(per_seed), rel=1e-12, abs=0)
    means = [x.mean(0) for x in ws]
    of_means = _dist(w, means)
    assert cmp.attrs["param_distance_of_means"] == pytest.approx(of_means, rel=1e-12, abs=0)
    norm = np.sqrt(sum((x**2).sum() for x in means))
    assert cmp.attrs["param_distance_of_means_rel"] == pytest.approx(
        of_means / norm, rel=1e-12, abs=0
    )
    # the two differ (the 0.031 vs 0.042): averaging the seeds first shrinks it
    assert cmp.attrs["param_distance_of_means"] < 0.9 * cmp.attrs["param_distance"]
    assert "per seed" in cmp.attrs["param_distance_measures"]
    assert cmp.attrs["observables_compared"] == "seed means"
    # the same the other way round
    back = gf.compare(sgd, flow)
    np.testing.assert_allclose(back["param_distance_seed"].values, per_seed, rtol=1e-12)


def test_compare_two_ensembles_averages_over_every_pair():
    rng = np.random.default_rng(1)
    sde = _traj("sde", _layers(rng, (2,)), seeds=2)
    sgd = _traj("sgd", _layers(rng, (3,)), seeds=3)
    cmp = gf.compare(sde, sgd)
    a, b = sde.final_params, sgd.final_params
    pairs = [_dist([x[i] for x in a], [y[j] for y in b]) for i in range(2) for j in range(3)]
    assert cmp.attrs["param_distance"] == pytest.approx(np.mean(pairs), rel=1e-12, abs=0)
    assert "every pair" in cmp.attrs["param_distance_measures"]
    assert "param_distance_seed" not in cmp


def test_compare_single_runs_one_distance():
    rng = np.random.default_rng(2)
    a, b = _traj("flow", _layers(rng)), _traj("gd", _layers(rng))
    cmp = gf.compare(a, b)
    d = _dist(a.final_params, b.final_params)
    assert cmp.attrs["param_distance"] == pytest.approx(d, rel=1e-12, abs=0)
    assert cmp.attrs["param_distance_of_means"] == pytest.approx(d, rel=1e-12, abs=0)
    assert cmp.attrs["param_distance_std"] == 0.0 and cmp.attrs["observables_compared"] == "runs"
    np.testing.assert_allclose(cmp["rho"].values, 0.0)


def test_the_scenario_summary_says_which_distance_it_prints():
    from types import SimpleNamespace

    from gradflow.scenario._run import summary

    rng = np.random.default_rng(3)
    flow, sgd = _traj("flow", _layers(rng)), _traj("sgd", _layers(rng, (4,)), seeds=4)
    config = SimpleNamespace(name="s", question="")
    lines = summary(config, {"flow": flow, "sgd_b4": sgd}, {})
    cmp = gf.compare(flow, sgd)
    line = next(x for x in lines if x.startswith("  sgd_b4:"))
    assert f"final ||ΔW||/||W|| = {cmp.attrs['param_distance_rel']:.3g} (mean over seeds; " in line
    assert f"{cmp.attrs['param_distance_of_means_rel']:.3g} between the seed-averaged" in line
