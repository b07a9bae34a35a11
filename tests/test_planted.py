"""Planted violations: diagnostics that must report a problem when there is one.

``pattern_changed`` was only ever asserted False, and the step floor's descent guard could be
deleted without a failure; here each meets a case built to trigger it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
import gradflow.testing as gft
from gradflow.models import MLP


def test_pattern_changed_is_reported_when_newton_flips_relu_units():
    """From a He initialization far from any fixed point, Newton's first steps move the weights
    by O(1) and flip some ReLU units: the record must say so."""
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=4, dim=4, classes=2, seed=0)
    net = MLP(4, (6,), 1, key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, data, weight_decay=0.1)
    fp = gf.equilibrium(problem, spectrum=False, max_iter=4)
    assert fp.pattern_flips is not None and fp.pattern_flips[0] == 0
    assert np.max(fp.pattern_flips) > 0, fp.pattern_flips
    assert fp.pattern_changed


def test_floor_guard_refuses_unstable_forced_steps():
    """A step floor 30x beyond the stability limit 2/λ_max of a stiff smooth flow: every step
    at the floor fails the tolerance, and forcing it would make Heun blow up (|1 − h λ| > 1).
    The descent guard refuses those steps and halves the floor until the steps are stable;
    without the guard the loss rises and the run diverges."""
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=4, dim=4, classes=2, seed=1)
    data = dataclasses.replace(data, x_train=10.0 * np.asarray(data.x_train))  # λ_max ∝ ||x||²
    net = MLP(4, (5,), 1, activation="linear", init_scale=0.5, key=jax.random.PRNGKey(1))
    problem = gf.Problem(net, data)
    lam_max = float(gf.top_hessian_eigenvalue(problem, problem.initial_state()))
    dtmin = 30 * 2 / lam_max
    tr = gf.flow(problem, t1=200 * dtmin, save_every=20 * dtmin, dtmin=dtmin, throw=False)
    assert tr.stats["status"] == "success", tr.stats
    assert tr.stats["num_floor_rejections"] > 0, tr.stats
    loss = tr["loss"]
    assert np.all(np.isfinite(loss)) and np.all(np.diff(loss) <= 1e-2 * loss[:-1]), loss
    assert loss[-1] < 0.5 * loss[0], loss


# ---- every checker of gradflow.testing flags a planted violation ----------------------------


class _Softplus(MLP):
    """Not positively homogeneous: softplus(0) = log 2."""

    def apply_features(self, weights, x):
        h = jnp.reshape(x, (-1,))
        for w in weights[:-1]:
            h = jax.nn.softplus(w @ h)
        return h

    def apply_features_batch(self, weights, x):
        h = jnp.reshape(x, (x.shape[0], -1))
        for w in weights[:-1]:
            h = jax.nn.softplus(h @ w.T)
        return h


class _Unprojected(gf.LMAll):
    """A broken LM-all: the directions' velocity is not projected onto the spheres."""

    def velocity(self, state, grad):
        return {"rho": -grad["rho"], "v": tuple(-g for g in grad["v"])}


class _UnnormalizedWN(gf.WeightNorm):
    """A broken WN: ``W_k = g_k v_k`` (v not divided by its norm), so the loss is not
    scale-invariant in ``v`` and ``∇_v L`` is not orthogonal to ``v``."""

    def to_weights(self, state):
        return tuple(g * v for g, v in zip(state["g"], state["v"]))


def _small_data():
    return gf.data.load("gaussian-mixture", n_train=8, n_test=4, dim=4, classes=2, seed=3)


def test_homogeneity_checkers_flag_a_non_homogeneous_net():
    data = _small_data()
    x = np.asarray(data.x_train)
    good = MLP(4, (5,), 1, key=jax.random.PRNGKey(3))
    bad = _Softplus(4, (5,), 1, key=jax.random.PRNGKey(3))
    for check in (gft.homogeneity_error, gft.euler_identity_error, gft.gradient_scaling_error):
        assert check(good, x[0]) <= 1e-12, check.__name__
        assert check(bad, x[0]) >= 1e-2, check.__name__
    problem = gf.Problem(bad, data, weight_decay=0.0)
    assert gft.balance_rate_error(problem, problem.initial_state()) >= 1e-2


def test_state_checkers_flag_planted_violations():
    data = _small_data()
    net = MLP(4, (5,), 1, key=jax.random.PRNGKey(3))
    problem = gf.Problem(net, data, weight_decay=0.1, normalization="lm-last")
    state = problem.initial_state()
    off = {"rho": state["rho"], "v": (1.01 * state["v"][0],) + tuple(state["v"][1:])}
    assert gft.unit_norm_error(state) <= 1e-14
    assert gft.unit_norm_error(off) == pytest.approx(0.01, rel=1e-9, abs=0)
    # THEORY 4.1: ρ_eq = (2/N) Σ ⟨y_n, f_n⟩ / ((2/N) Σ ||f_n||² + λ), f_n = f(V; x_n) (NumPy)
    v1, v2 = (np.asarray(v) for v in state["v"])
    f = np.maximum(np.asarray(data.x_train) @ v1.T, 0.0) @ v2.T
    y = np.asarray(data.y_train)
    rho_eq = np.mean(2 * np.sum(y * f, 1)) / (np.mean(2 * np.sum(f * f, 1)) + 0.1)
    assert gft.rho_eq_error(problem, {"rho": rho_eq, "v": state["v"]}) <= 1e-12
    assert gft.rho_eq_error(problem, {"rho": 2 * rho_eq, "v": state["v"]}) == pytest.approx(1.0)
    broken = gf.Problem(net, data, weight_decay=0.1, normalization=_Unprojected())
    good = gf.Problem(net, data, weight_decay=0.1, normalization="lm-all")
    assert gft.tangency_error(good, good.initial_state()) <= 1e-12
    assert gft.tangency_error(broken, broken.initial_state()) >= 1e-2
    # THEORY 3.3: ||v − η∇_v L||² = ||v||² + η²||∇_v L||² needs ∇_v L ⟂ v
    wn = gf.Problem(net, data, weight_decay=0.1, normalization="wn")
    unnormalized = gf.Problem(net, data, weight_decay=0.1, normalization=_UnnormalizedWN())
    assert gft.wn_norm_growth_error(wn, wn.initial_state(), 0.5) <= 1e-12
    assert gft.wn_norm_growth_error(unnormalized, unnormalized.initial_state(), 0.5) >= 1e-2


def test_trajectory_checkers_flag_planted_violations():
    t = np.linspace(0.0, 2.0, 5)

    def traj(**obs):
        return gf.Trajectory("flow", t, obs, {"balance_gap": ("layer_pair",)}, (), {}, {})

    assert gft.loss_increase(traj(loss=np.exp(-t))) < 0
    rising = np.exp(-t)
    rising[3] = 1.1 * rising[2]
    assert gft.loss_increase(traj(loss=rising)) == pytest.approx(0.1)
    law = np.stack([np.exp(-2 * 0.3 * t), -2 * np.exp(-2 * 0.3 * t)], 1)
    assert gft.balance_law_error(traj(balance_gap=law), 0.3) <= 1e-15
    assert gft.balance_law_error(traj(balance_gap=law), 0.0) >= 0.5  # not conserved
