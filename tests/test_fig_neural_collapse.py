"""The neural_collapse figure's grid and its per-state record (THEORY 4.8, 5), without runs."""

from __future__ import annotations

import json
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
            assert lam * sets["time.t1"] == pytest.approx(fig.EXPOSURE, rel=1e-12, abs=0)
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
    assert rec["eps_bar"] == pytest.approx(eps_bar, rel=1e-13, abs=0)
    assert rec["delta"] == pytest.approx(delta, rel=1e-13, abs=0) and delta > 0.1
    assert rec["nc3"] > 1e-3  # W_L is no longer ∝ M̃ᵀ; the features still collapse
    assert rec["nc1"] < 1e-14 and rec["nc2"] < 1e-14


def _certificate(**changes):
    """A certificate with every field set (the numbers are placeholders for the text)."""
    from gradflow.analysis import Certificate

    fields = dict(
        certified=False,
        verdict="not settled",
        reasons=("the flow had not settled",),
        relative_residual=3.1e-3,
        filippov_residual=2e-3,
        alpha_range=(-8.25, 9.9),
        sign_flips=np.int64(2),
        identity_defects=(8.3e-2, 1e-3),
        dying_ratio=None,
        flow_drift=1.6e-4,
        flow_sign_changes=0,
        hessian_range=None,
        hessian_kind=None,
        n_switching=30,
        n_dying=10,
        n_flat=None,
        joins=30,
        drops=0,
        distance=1.9e-4,
        start_residual=3.6e-3,
        thresholds={"tol": 1e-12},
        switching=np.zeros((30, 2), int),
        alpha=np.zeros(30),
        dying=((0, 1),),
    )
    fields.update(changes)
    return Certificate(**fields)


def test_the_equilibrium_words_come_from_the_certificate_record():
    """The side record is ``Certificate.record()`` plus whether the point is certified; the
    figure's words read it (here a failed certificate: the first reason is quoted)."""
    from types import SimpleNamespace

    from paper_figs import _common

    c = _certificate()
    fp = SimpleNamespace(certificate=c, certified=False, relative_residual=9.9)
    rec = json.loads(json.dumps(_common.certificate_record(fp)))
    assert rec["relative_residual"] == 3.1e-3  # the certificate's, not the solve's
    assert rec["certified"] is False and rec["sign_flips"] == 2
    words = fig._eq_words(rec)
    assert words == (
        "gf.equilibrium not settled (relative residual 3.6e-03 -> 3.1e-03, |S| 30, dying units "
        "10, α in [-8.2, 9.9], THEORY 4.9 defect ≤ 8.3e-02, short-flow drift 1.6e-04, "
        "1.9e-04 from the end) — the flow had not settled"
    )
    # without a certificate (no switching surfaces): the keys are there, empty
    bare = _common.certificate_record(
        SimpleNamespace(certificate=None, certified=True, relative_residual=1e-14)
    )
    assert bare["certified"] is True and bare["relative_residual"] == 1e-14
    assert bare["identity_defects"] == [] and bare["verdict"] is None
    assert set(bare) <= set(rec)
