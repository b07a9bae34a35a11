"""Public behaviours that no other test runs: every explicit solver against a closed form, the
dense Hessian spectrum and an incomplete Lanczos one, the ``rank`` observable group and
``gf.flow(stiffness=True)``.

The closed form: a one-layer linear model ``f(W; x) = W x`` under the plain flow (THEORY 3.1,
λ = 0) obeys ``dW/dt = −(W − W*) H`` with ``H = (2/N) XᵀX`` and ``W* H = (2/N) YᵀX``, so
``W(t) = W* + (W0 − W*) exp(−H t)`` (SciPy's ``expm``).
"""

import diffrax
import equinox as eqx
import jax
import numpy as np
import pytest
import scipy.linalg

import gradflow as gf
from gradflow.models import MLP

D, N, T1 = 3, 10, 1.0


def _linear_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D))
    y = np.sign(rng.normal(size=(N, 1)))
    net = MLP(D, (), 1, activation="linear", key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, gf.data.Dataset("linear", x, y))
    h = 2.0 / N * x.T @ x
    w_star = np.linalg.solve(h, 2.0 / N * x.T @ y).T
    w0 = np.asarray(net.weights[0])
    exact = w_star + (w0 - w_star) @ scipy.linalg.expm(-h * T1)
    return problem, exact


#: solver -> (order, two fixed steps in the asymptotic range above rounding)
ORDERS = {
    "midpoint": (2, (0.1, 0.05)),
    "ralston": (2, (0.1, 0.05)),
    "bosh3": (3, (0.1, 0.05)),
    "dopri5": (5, (0.1, 0.05)),
    "dopri8": (8, (0.25, 0.125)),
}


@pytest.mark.parametrize("name", list(ORDERS))
def test_solver_order_and_evaluations_against_closed_form(name):
    problem, exact = _linear_problem()
    order, steps = ORDERS[name]
    tableau = gf.SOLVERS[name]().tableau  # Diffrax's Butcher tableau: the stages per step
    errors = []
    for dt in steps:
        tr = gf.flow(
            problem,
            t1=T1,
            save_every=T1,
            solver=name,
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=dt,
        )
        errors.append(np.max(np.abs(tr.final_params[0] - exact)))
        n = round(T1 / dt)
        assert tr.stats["num_steps"] == n
        fsal = int(tableau.fsal)
        assert tr.stats["num_gradient_evaluations"] == n * (tableau.num_stages - fsal) + fsal
    fitted = np.log2(errors[0] / errors[1])
    # On a linear ODE a Runge-Kutta step is its stability polynomial, which can match exp(z)
    # beyond the method's (nonlinear) order: Dopri8's measured 9.8 here; the others their p.
    above = 2.5 if name == "dopri8" else 0.5
    assert order - 0.5 <= fitted <= order + above, (name, errors, fitted)


def test_dense_hessian_spectrum_is_the_closed_form_hessian():
    """Plain flow, one linear layer: ∇²L = H = (2/N) XᵀX exactly, at every state."""
    problem, _ = _linear_problem()
    x = np.asarray(problem.x_train)
    spec = gf.hessian_spectrum(problem, method="dense")
    assert spec.complete and spec.dim == D
    np.testing.assert_allclose(spec.eigenvalues, np.linalg.eigvalsh(2.0 / N * x.T @ x), rtol=1e-12)
    assert spec.n_negative == 0 and spec.n_zero == 0 and spec.kind == "minimum"
    lanczos = gf.hessian_spectrum(problem, method="lanczos")
    np.testing.assert_allclose(lanczos.eigenvalues, spec.eigenvalues, rtol=1e-10)


def test_incomplete_lanczos_gives_interlacing_ritz_values():
    """``num_iter < dim``: ``complete`` is False and the ``num_iter`` Ritz values interlace the
    spectrum of H = (2/N) XᵀX (Cauchy: λ_1 ≤ θ_1 ≤ λ_2 ≤ θ_2 ≤ λ_3, whatever the start)."""
    problem, _ = _linear_problem()
    x = np.asarray(problem.x_train)
    lam = np.linalg.eigvalsh(2.0 / N * x.T @ x)
    spec = gf.hessian_spectrum(problem, num_iter=D - 1)
    assert not spec.complete and spec.dim == D and spec.eigenvalues.shape == (D - 1,)
    theta, eps = spec.eigenvalues, 1e-12 * lam[-1]
    assert lam[0] - eps <= theta[0] <= lam[1] + eps <= theta[1] + 2 * eps <= lam[2] + 3 * eps
    assert spec.n_negative + spec.n_zero + spec.n_positive == D - 1


def test_rank_group_matches_numpy_singular_values():
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=4, dim=5, classes=3, seed=0)
    net = MLP(5, (6, 4), 3, init_scale=0.5, key=jax.random.PRNGKey(2))
    w = list(net.weights)
    u = np.asarray(w[1])
    w[1] = np.outer(u[:, 0], u[0]) + 1e-5 * u  # rank 1 up to 1e-5 relative: below 1e-3
    net = eqx.tree_at(lambda m: m.weights, net, tuple(jax.numpy.asarray(a) for a in w))
    # the group's values at the weights, by ``gf.observe`` compiled: what
    # ``gf.flow(observables=("rank",))`` saves at t = 0 (it calls the same function; the scenario
    # tests save the group along runs), without compiling a flow (~10 s of CPU)
    problem = gf.Problem(net, data)
    obs = jax.jit(lambda s: gf.observe(problem, s, ("rank",)))(problem.initial_state())
    for k, wk in enumerate(w):
        s = np.linalg.svd(np.asarray(wk) / np.linalg.norm(wk), compute_uv=False)
        assert obs["rank"][k] == np.sum(s > 1e-3)
        np.testing.assert_allclose(obs["stable_rank"][k], np.sum(s**2) / s[0] ** 2, rtol=1e-10)
    assert obs["rank"][1] == 1 and obs["rank"][0] > 1


def test_stiffness_record_estimates_the_spectral_radius():
    """On the linear model the velocity's Jacobian is −H: its spectral radius is λ_max(H)."""
    problem, _ = _linear_problem()
    x = np.asarray(problem.x_train)
    lam_max = np.linalg.eigvalsh(2.0 / N * x.T @ x)[-1]
    tr = gf.flow(problem, t1=T1, save_every=T1, stiffness=True)
    assert tr.stats["rho_max"] == pytest.approx(lam_max, rel=1e-2, abs=0), tr.stats
    assert tr.stats["num_spectral_evaluations"] > 0
    assert 0 <= tr.stats["hrho_max"] and "stiffness" in tr.stats
