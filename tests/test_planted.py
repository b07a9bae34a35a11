"""Planted violations: diagnostics that must report a problem when there is one.

``pattern_changed`` was only ever asserted False, and the step floor's descent guard could be
deleted without a failure; here each meets a case built to trigger it.
"""

import dataclasses

import jax
import numpy as np

import gradflow as gf
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
    tr = gf.flow(problem, t1=200 * dtmin, save_every=20 * dtmin, dtmin=dtmin, on_failure="return")
    assert tr.stats["status"] == "success", tr.stats
    assert tr.stats["num_floor_rejections"] > 0, tr.stats
    loss = tr["loss"]
    assert np.all(np.isfinite(loss)) and np.all(np.diff(loss) <= 1e-2 * loss[:-1]), loss
    assert loss[-1] < 0.5 * loss[0], loss
