"""The neural_collapse figure's grid and its per-state record (THEORY 4.8, 5), without runs."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.data import Dataset
from gradflow.models import MLP

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from paper_figs import fig_neural_collapse as fig  # noqa: E402


@pytest.mark.parametrize("profile", ["full", "paper"])
def test_the_grid_is_the_fair_check_of_theory_4_8(profile):
    """C = 4 and C = 10 rows of 3-4 layers, ≥ 2 values of λ > 0 and λ = 0, every λ > 0 to
    λ·t = 20; the deep row has 9 layers; every point trains on centred targets."""
    rows = fig.ROWS[profile]
    shallow = {r.classes for r in rows.values() if not r.deep}
    assert shallow == {4, 10}
    for name, row in rows.items():
        layers = len(row.widths) + 1
        assert layers == 9 if row.deep else 3 <= layers <= 4, name
        if not row.deep:
            assert 0.0 in row.decays and sum(lam > 0 for lam in row.decays) >= 2, name
    for (name, lam), sets in fig.points(profile).items():
        assert len(sets["data.classes"]) == rows[name].classes
        if lam > 0:
            assert lam * sets["time.t1"] == pytest.approx(fig.EXPOSURE, rel=1e-12)
    table = tomllib.loads((fig._common.SCENARIOS / "neural_collapse.toml").read_text())
    assert table["data"]["centre_targets"] is True


def test_the_fast_grid_is_told_apart_and_stays_short():
    for profile in fig.ROWS:
        keys = {(n, lam) for n, r in fig.ROWS[profile].items() for lam in r.decays}
        assert fig._profile(dict.fromkeys(keys)) == profile
    assert all(s["time.t1"] == fig.FAST_T1 for s in fig.points("fast").values())


@pytest.fixture(scope="module")
def simplex():
    """Inputs e_c (3 classes, 2 samples each) and a hidden layer that is the identity, so the
    features are h_n = e_c(n): their centred class means form a simplex ETF; centred targets.
    Returns the problem, its targets and ``state(W_L)``."""
    c = 3
    labels = np.repeat(np.arange(c), 2)
    x = np.eye(c)[labels]
    y = np.eye(c)[labels] - 1.0 / c
    net = MLP(in_dim=c, widths=(c,), out_dim=c, key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, Dataset("simplex", x, y), weight_decay=0.01)
    return problem, y, lambda w: problem.to_state((np.eye(c), np.asarray(w, dtype=float)))


def test_state_record_at_exact_symmetric_quasi_interpolation(simplex):
    """W_L = κ(I − 11ᵀ/3) on simplex features: every output is κ ỹ_n, so δ = 0, ε̄ = 1 − κ,
    NC1 = NC2 = NC3 = 0 and M̃ has two equal singular values (rank C − 1 = 2)."""
    problem, _, state = simplex
    kappa = 0.8
    rec = fig.state_record(problem, state(kappa * (np.eye(3) - 1.0 / 3)))
    assert rec["delta"] < 1e-15 and rec["eps_bar"] == pytest.approx(1 - kappa, abs=1e-15)
    for key in ("nc1", "nc2", "nc3", "nc4"):
        assert rec[key] < 1e-14, key
    np.testing.assert_allclose(rec["sigma_means"], [1.0, 1.0, 0.0], atol=1e-15)
    assert rec["train_acc"] == 1.0 and fig._rank(rec["sigma_means"], 3) == 2


def test_state_record_measures_the_sqi_defect(simplex):
    """Scaling class 0's output row by s: F_n = κ diag(s, 1, 1) ỹ_n. With ε̄ from
    Σ⟨F, ỹ⟩/Σ||ỹ||², δ is the largest ||F_n − (1 − ε̄)ỹ_n|| / ||ỹ_n|| (by hand below)."""
    problem, y, state = simplex
    kappa, s = 0.8, 1.5
    d = np.diag([s, 1.0, 1.0])
    rec = fig.state_record(problem, state(kappa * d @ (np.eye(3) - 1.0 / 3)))
    f = kappa * y @ d  # by hand: row n of F is κ D ỹ_n
    eps_bar = 1 - np.sum(f * y) / np.sum(y * y)
    delta = max(
        np.linalg.norm(fn - (1 - eps_bar) * yn) / np.linalg.norm(yn) for fn, yn in zip(f, y)
    )
    assert rec["eps_bar"] == pytest.approx(eps_bar, rel=1e-13)
    assert rec["delta"] == pytest.approx(delta, rel=1e-13) and delta > 0.1
    assert rec["nc3"] > 1e-3  # W_L is no longer ∝ M̃ᵀ; the features still collapse
    assert rec["nc1"] < 1e-14 and rec["nc2"] < 1e-14
