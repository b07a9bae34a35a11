"""The margins figure's own mathematics: THEORY 4.9's kernel written out for a ReLU MLP, the
slopes on the entries held at zero, and the fitted log-log slope with its interval."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.models import MLP

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from paper_figs import _common, fig_margins  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    x = np.random.default_rng(0).normal(size=(3, 5))
    y = np.array([[1.0], [-1.0], [1.0]])
    net = MLP(5, (4, 3), 1, key=jax.random.PRNGKey(0))  # features of rank 3
    return gf.Problem(net, gf.data.Dataset("hand", x, y), weight_decay=0.1)


def test_jacobians_are_the_networks_and_obey_euler(problem):
    """With the pattern's slopes, ``F`` is the network's output; with any slopes (α ∈ [0, 1]
    on some entries) ``F`` is linear in each layer: ``J^k_n · W_k = F_n`` (THEORY 2.2)."""
    weights = problem.to_weights(problem.to_state(problem.model.weights))
    x = np.asarray(problem.x_train)
    d = fig_margins.slopes(problem, weights)
    f, jac = fig_margins.jacobians(weights, x, d)
    np.testing.assert_allclose(
        f, np.asarray(problem.outputs(problem.to_state(weights)))[:, 0], rtol=1e-13, atol=1e-15
    )
    d[0][2, 1], d[1][1, 0] = 0.3, 0.8
    f, jac = fig_margins.jacobians(weights, x, d)
    for w, j in zip(weights, jac):
        np.testing.assert_allclose(j @ np.ravel(np.asarray(w)), f, rtol=1e-12, atol=1e-14)


def test_slopes_put_alpha_on_the_entries_held_at_zero(problem):
    weights = problem.to_weights(problem.to_state(problem.model.weights))
    base = fig_margins.slopes(problem, weights)
    # flat unit index over the hidden layers: 0..3 the first (width 4), 4..6 the second
    d = fig_margins.slopes(problem, weights, [[2, 1], [1, 6]], [0.25, 0.75])
    assert d[0][2, 1] == 0.25 and d[1][1, 2] == 0.75
    d[0][2, 1], d[1][1, 2] = base[0][2, 1], base[1][1, 2]
    for a, b in zip(d, base):
        np.testing.assert_array_equal(a, b)


def test_predicted_residuals_recover_the_residuals_where_4_9_holds(problem):
    """A last-layer kernel of full rank (3 samples, 3 features): set the last layer so that
    ``(2/N) K r = λ F`` holds exactly (it is linear in ``W_L`` given the features); then the
    prediction equals ``r``. Perturb ``W_L`` and the gap and the defect grow."""
    weights = list(problem.to_weights(problem.to_state(problem.model.weights)))
    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)[:, 0]
    lam, n = problem.weight_decay, len(y)
    d = fig_margins.slopes(problem, tuple(weights))
    h = d[1] * (x @ np.asarray(weights[0]).T * d[0] @ np.asarray(weights[1]).T)  # features (N, 3)
    # ∇_{W_L} L = 0: (2/N) Hᵀ (y − H w) = λ w  ⇒  w = (Hᵀ H + (Nλ/2) I)⁻¹ Hᵀ y
    w = np.linalg.solve(h.T @ h + n * lam / 2 * np.eye(3), h.T @ y)
    weights[-1] = w[None, :]
    out = fig_margins.predicted_residuals(problem, tuple(weights), lam)
    last = out["layers"][-1]
    assert last["rank"] == 3 and last["defect"] < 1e-13
    assert last["gap"] < 1e-10
    weights[-1] = (w * 1.01)[None, :]
    bad = fig_margins.predicted_residuals(problem, tuple(weights), lam)["layers"][-1]
    assert bad["defect"] > 1e-3 and bad["gap"] > 1e-3


def test_slope_interval_of_a_power_law_and_of_noise():
    """The fitted log-log slope and its 95% Student-t half-width: zero for an exact power law;
    with scatter, the slope's standard error of an independent implementation
    (``scipy.stats.linregress``) times ``t_{0.975, 2} = 4.302652729749464`` (tables)."""
    from scipy import stats

    lam = np.array([0.03, 0.01, 0.003, 0.001])
    slope, half = _common.slope_interval(lam, 2.0 * lam**1.5)
    assert slope == pytest.approx(1.5, rel=1e-12, abs=0) and half < 1e-10
    ly = 1.0 * np.log(lam) + np.array([0.1, -0.1, -0.1, 0.1])
    slope, half = _common.slope_interval(lam, np.exp(ly))
    ref = stats.linregress(np.log(lam), ly)
    assert slope == pytest.approx(ref.slope, rel=1e-12, abs=0)
    assert half == pytest.approx(4.302652729749464 * ref.stderr, rel=1e-10, abs=0)
    assert _common.slope_interval(lam[:2], lam[:2])[1] == np.inf
    assert _common.slope(lam, np.exp(ly)) == slope


class _Run(dict):
    """A flow's saved observables, as ``fig_margins._end`` reads them."""

    def __init__(self, normalization, lam, **obs):
        super().__init__(obs)
        self.config = {"problem": {"weight_decay": lam, "normalization": normalization}}


def test_the_regime_is_read_where_the_claim_is_judged():
    """At a certified point every number of the regime (train accuracy, ε, the largest residual)
    is the certified point's, not the flow end's: here the flow ends with one sample on the
    wrong side, the certified point fits all of them."""
    lam = 0.02
    run = _Run(
        "lm-last",
        lam,
        margins=np.array([[0.1, 0.2, 0.3], [-0.05, 0.4, 0.5]]),
        rho=np.array([1.0, 2.0]),
        rho_k=np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 2.0]]),
    )
    end = fig_margins._end(run, None)
    assert end["where"] == "flow end" and end["train_acc"] == pytest.approx(2 / 3)
    assert end["eps"] == pytest.approx(0.5 * lam * 2.0**2)  # LM-last: the last layer's scale
    assert end["residual"] == pytest.approx(1.0 + 0.05 * 2.0)
    record = {
        "certified": True,
        "fixed": {"margins": [0.2, 0.25, 0.3], "rho": 4.0, "rho_k": [1.0, 1.0, 4.0]},
    }
    there = fig_margins._end(run, record)
    assert there["where"] == "certified" and there["train_acc"] == 1.0
    assert there["eps"] == pytest.approx(0.5 * lam * 16.0)
    assert there["residual"] == pytest.approx(0.2)  # max |1 − m ρ| = |1 − 1.2|
    assert there["gap"] == pytest.approx(1.0 - 0.8)
    # an uncertified record leaves every number at the flow's end
    assert fig_margins._end(run, dict(record, certified=False)) == end
    # plain + decay: ε from the mean squared layer norm
    plain = fig_margins._end(_Run("none", lam, **dict(run)), record)
    assert plain["eps"] == pytest.approx(0.5 * lam * np.mean([1.0, 1.0, 16.0]))


def test_predicted_residuals_at_a_rank_deficient_kernel_judge_the_range_only():
    """Six samples, three last-layer features: the last layer's kernel ``H Hᵀ`` has rank 3 < N.
    With ``W_L`` at its stationary value 4.9 holds exactly, and determines ``r`` only in the
    kernel's range: the gap there vanishes, while the share of ``r`` outside it (``y``'s part
    orthogonal to the features) is what the old full-space gap reported."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5))
    y = np.where(rng.normal(size=(6, 1)) > 0, 1.0, -1.0)
    net = MLP(5, (4, 3), 1, key=jax.random.PRNGKey(2))
    problem = gf.Problem(net, gf.data.Dataset("hand6", x, y), weight_decay=0.1)
    weights = list(problem.to_weights(problem.to_state(problem.model.weights)))
    lam, n = problem.weight_decay, len(y)
    d = fig_margins.slopes(problem, tuple(weights))
    h = d[1] * (x @ np.asarray(weights[0]).T * d[0] @ np.asarray(weights[1]).T)  # (6, 3)
    w = np.linalg.solve(h.T @ h + n * lam / 2 * np.eye(3), h.T @ y[:, 0])
    weights[-1] = w[None, :]
    last = fig_margins.predicted_residuals(problem, tuple(weights), lam)["layers"][-1]
    assert last["rank"] == 3 and last["defect"] < 1e-13 and last["gap"] < 1e-10
    r = y[:, 0] - h @ w
    q, _ = np.linalg.qr(h)
    expected_outside = np.linalg.norm(r - q @ (q.T @ r)) / np.linalg.norm(r)
    assert expected_outside > 0.1  # y is not in the features' span: the case that matters
    assert last["outside"] == pytest.approx(expected_outside, rel=1e-10, abs=0)
    text = fig_margins._theory49_text({"theory_4_9": {"n": n, "layers": [last]}})
    assert "gap in the kernel's range" in text and "leaves free" in text


def test_predicted_residuals_at_a_certified_lm_last_equilibrium():
    """LM-last, one hidden layer of 4 on 96 Gaussian-mixture points (λ = 0.05), certified from
    the flow's end at t = 100: THEORY 4.9 holds in both layers with the LM-last constants — λρ²
    for the unit-norm layer, λ for the last — and the residuals are predicted in each kernel's
    range. ``ρ² = ||W_L||²`` is far from 1 here, so the constant ``λ`` in the first layer would
    leave a defect of order ``|ρ² − 1|``."""
    from gradflow.scenario import build_problem, validate

    lam = 0.05
    problem = build_problem(
        validate(
            {
                "scenario": {"name": "lm_last_4_9", "question": "does 4.9 hold?"},
                "data": {
                    "name": "gaussian-mixture",
                    "n_train": 96,
                    "n_test": 0,
                    "dim": 4,
                    "seed": 3,
                },
                "model": {"kind": "mlp", "widths": [4], "init_scale": 0.5, "seed": 3},
                "problem": {"weight_decay": lam, "normalization": "lm-last"},
                "flow": {"t1": 100.0, "save_every": 100.0},
                "output": {"plot": ["loss"]},
            }
        )
    )
    fp = gf.equilibrium(problem, gf.flow(problem, t1=100.0, save_every=100.0), spectrum=False)
    assert fp.certified, fp.describe()
    weights = problem.to_weights(fp.state)
    rho2 = float(np.sum(np.asarray(weights[-1]) ** 2))
    assert abs(rho2 - 1) > 0.3
    c = fp.certificate
    out = fig_margins.predicted_residuals(problem, weights, lam, c.switching, c.alpha)
    assert out["n"] == 96 and len(out["layers"]) == 2
    for layer in out["layers"]:
        assert layer["defect"] <= 1e-9 and layer["gap"] <= 1e-9, out
    # the first layer with the plain constant λ instead of λρ²: 4.9 fails by about |ρ² − 1|
    first = out["layers"][0]
    x = np.asarray(problem.x_train)
    y = np.asarray(problem.y_train)[:, 0]
    d = fig_margins.slopes(problem, weights, c.switching, c.alpha)
    f, jac = fig_margins.jacobians(weights, x, d)
    lhs = (2 / len(y)) * jac[0] @ jac[0].T @ (y - f)
    wrong = np.linalg.norm(lhs - lam * f) / (np.linalg.norm(lhs) + np.linalg.norm(lam * f))
    assert wrong > 0.1 > first["defect"]


def test_the_sliding_tail_is_one_fixed_step_heun_run_with_its_last_steps_saved(problem):
    """``_common.sliding_tail``: ``t1/dt`` fixed Heun steps from ``end`` in two runs, the last
    ``evidence`` saved at every step with the weights (what ``gf.equilibrium``'s ``sliding``
    reads); its end is the end of one run of the same steps, ``w <- w + dt/2 (v(w) + v(w +
    dt v(w)))`` (plain parametrization: no projection)."""
    end = problem.initial_state()
    tail_end, last, steps, _ = _common.sliding_tail(problem, end, 0.05, 0.005, 4)
    assert steps == 10 and last.stats["num_steps"] == 4
    assert len(last.t) == 5 and "w0" in last.observables
    np.testing.assert_allclose(np.diff(last.t), 0.005, rtol=1e-9)
    w, velocity = end, jax.jit(lambda s: problem.velocity(s))  # compiled once, not op by op
    for _ in range(10):
        v = velocity(w)
        pred = jax.tree.map(lambda a, b: a + 0.005 * b, w, v)
        w = jax.tree.map(lambda a, b, c: a + 0.0025 * (b + c), w, v, velocity(pred))
    for a, b in zip(jax.tree.leaves(tail_end), jax.tree.leaves(w)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)


def test_a_row_with_fewer_than_three_points_inside_is_outside_not_failed():
    """Two points inside give a slope whose 95% interval is infinite: the row is outside the
    claim's hypotheses (no evidence either way), not "NOT borne out"; three are judged."""
    from paper_figs import _verdict

    hyp = _verdict.QUASI_INTERPOLATION
    inside = _verdict.Regime("λ", train_acc=1.0, eps=0.01, residual=0.1, exposure=40.0)
    out = _verdict.Regime("λ", train_acc=1.0, eps=0.01, residual=0.1, exposure=40.0, outside=("x",))
    assert hyp.inside(inside) and not hyp.inside(out)
    assert _common.slope_interval([1e-3, 2e-3], [0.1, 0.2])[1] == np.inf
    two = fig_margins._judged([inside, inside, out], hyp, 2)
    assert _verdict.judge(False, two) == _verdict.OUTSIDE
    three = fig_margins._judged([inside, inside, inside, out], hyp, 3)
    assert len(three) == 3 and _verdict.judge(False, three) == _verdict.NOT_BORNE_OUT
    assert _verdict.judge(True, three) == _verdict.BORNE_OUT
