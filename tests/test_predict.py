"""Tests of gradflow.predict against THEORY 4 (and 3.1, 3.3)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import gradflow as gf
import gradflow.testing as gft
from gradflow import metrics, predict
from gradflow.models import MLP
from gradflow.predict._balanced import LAM, N_SAMPLES, RHO, A, B

N, CLASSES = 12, 3


def _outputs(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    f = jax.random.normal(k1, (N, CLASSES))
    y = jax.nn.one_hot(jax.random.randint(k2, (N,), 0, CLASSES), CLASSES)
    return f, y


# ---- 4.1: ρ for frozen directions ---------------------------------------------------------


def test_rho_relaxation_limits_and_ode():
    f, y = _outputs(0)
    lam, rho0 = 0.05, 3.0
    rho_t = predict.rho_relaxation(rho0, f, y, lam)
    r_eq = predict.rho_eq(f, y, lam)
    assert float(rho_t(0.0)) == pytest.approx(rho0, rel=1e-15, abs=0)
    np.testing.assert_allclose(rho_t(1e4), r_eq, rtol=1e-14)
    ts = jnp.array([0.0, 0.3, 1.0, 4.0])
    assert rho_t(ts).shape == ts.shape

    def rhs(rho):  # LM-last: dρ/dt = s − λρ, s = (2/N) Σ ⟨y_n − ρ f_n, f_n⟩
        return 2.0 / N * jnp.sum((y - rho * f) * f) - lam * rho

    derivative = jax.vmap(jax.grad(rho_t))(ts)
    scale = abs(float(rhs(rho0)))  # the rhs cancels to ~0 near ρ_eq: compare on its own scale
    np.testing.assert_allclose(derivative, jax.vmap(rhs)(rho_t(ts)), rtol=1e-12, atol=1e-14 * scale)
    assert abs(float(rhs(r_eq))) < 1e-14
    np.testing.assert_allclose(
        predict.kappa(f, lam), -jax.grad(rhs)(1.0), rtol=1e-14
    )  # κ = −d(rhs)/dρ


@given(m=st.floats(0.05, 5.0), lam=st.floats(1e-6, 1.0), seed=gft.seeds())
def test_quasi_interpolation_matches_rho_eq_on_equal_margins(m, lam, seed):
    y = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(seed), shape=(N, 1)), 1.0, -1.0)
    f = m * y  # y_n f_n = m for all n
    rho, eps = predict.quasi_interpolation(m, lam)
    np.testing.assert_allclose(rho, predict.rho_eq(f, y, lam), rtol=1e-13)
    np.testing.assert_allclose(y * rho * f, 1 - eps, rtol=1e-13)
    # ε ≈ λρ²/2, with ratio (m² + λ/2)/m² exactly
    np.testing.assert_allclose(eps / (lam * rho**2 / 2), (m**2 + lam / 2) / m**2, rtol=1e-12)


@settings(max_examples=10)
@given(
    problem_state=gft.problem_states(
        "mlp-small", normalizations="lm-last", weight_decay=[0.0, 1e-3, 0.1], targets=gft.TARGETS
    )
)
def test_rho_law_of_lm_last_on_the_vector_field(problem_state):
    """4.1 at any state of LM-last: dρ/dt = s − λρ = κ (ρ_eq(V) − ρ), and ρ = ρ_eq(V) is its
    zero (gft.rho_eq_error vanishes there, and only there)."""
    problem, state = problem_state
    lam = problem.weight_decay
    f = problem.outputs(state) / state["rho"]
    r_eq, k = predict.rho_eq(f, problem.y_train, lam), predict.kappa(f, lam)
    drho = problem.velocity(state)["rho"]
    np.testing.assert_allclose(drho, k * (r_eq - state["rho"]), rtol=1e-10, atol=1e-13 * abs(k))
    at_eq = {**state, "rho": r_eq}
    assert gft.rho_eq_error(problem, at_eq) <= 1e-13
    assert abs(float(problem.velocity(at_eq)["rho"])) <= 1e-13 * float(abs(k * r_eq))
    off = {**state, "rho": 1.5 * r_eq}
    np.testing.assert_allclose(gft.rho_eq_error(problem, off), 0.5, rtol=1e-12)


# ---- 4.2: balanced equilibria -------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("flow", ["plain", "lm-all", "wn"])
def test_symbolic_rhs_is_the_hand_derived_reduced_ode(num_layers, flow):
    L = num_layers
    expected = L * (2 / N_SAMPLES * RHO ** (2 - sp.Rational(2, L)) * (A - RHO * B) - LAM * RHO)
    assert sp.simplify(predict.balanced_rhs_symbolic(L, flow) - expected) == 0


def _integrate_layers(rho_layers0, a, b, n, lam, t1):
    """THEORY 3.1's per-layer scale ODE dρ_k/dt = (ρ/ρ_k) s − λρ_k, unreduced."""

    def rhs(_, r):
        rho = np.prod(r)
        s = 2 / n * (a - rho * b)
        return rho / r * s - lam * r

    sol = scipy.integrate.solve_ivp(rhs, (0, t1), rho_layers0, rtol=1e-10, atol=1e-14)
    return float(np.prod(sol.y[:, -1]))


CASES = [  # (a, b, n, λ, L)
    (8.0, 10.0, 10, 0.05, 3),
    (8.0, 10.0, 10, 0.05, 2),
    (8.0, 10.0, 10, 0.05, 1),
    (3.0, 4.0, 6, 0.2, 4),
    (5.0, 2.0, 20, 0.01, 5),
    (8.0, 10.0, 10, 2.0, 3),
]


@pytest.mark.parametrize("a,b,n,lam,L", CASES)
def test_balanced_equilibria_are_roots_with_the_integrated_stability(a, b, n, lam, L):
    expr = predict.balanced_rhs_symbolic(L)
    equilibria = predict.balanced_equilibria(a, b, n, lam, L)
    assert equilibria
    for eq in equilibria:
        value = expr.subs({RHO: eq.rho, A: a, B: b, N_SAMPLES: n, LAM: lam})
        assert abs(float(value)) < 1e-10
        if eq.rho == 0:
            assert eq.stable == (L >= 3)  # g'(0) = −Lλ for L ≥ 3, 2a/n − λ > 0 here for L = 2
            continue
        t1 = 5.0 / abs(eq.slope)
        for sign in (-1, 1):
            start = eq.rho * (1 + sign * 1e-3)
            end = _integrate_layers(np.full(L, start ** (1 / L)), a, b, n, lam, t1)
            assert (abs(end - eq.rho) < abs(start - eq.rho)) == eq.stable, (eq, sign)


def test_balanced_equilibria_closed_forms():
    a, b, n, lam = 8.0, 10.0, 10, 0.05
    (one,) = predict.balanced_equilibria(a, b, n, lam, 1)  # L = 1 is 4.1's ρ_eq
    np.testing.assert_allclose(one.rho, a / (b + n * lam / 2), rtol=1e-13)
    zero, two = predict.balanced_equilibria(a, b, n, lam, 2)  # linear: ρ = (a − nλ/2)/b
    assert zero.rho == 0 and not zero.stable and two.stable
    np.testing.assert_allclose(two.rho, (a - n * lam / 2) / b, rtol=1e-13)
    zero, top = predict.balanced_equilibria(a, b, n, 0.0, 3)  # λ = 0: ρ = a/b; 0 repels
    np.testing.assert_allclose(top.rho, a / b, rtol=1e-13)
    assert zero.stability == "unstable" and zero.slope == 0
    # L ≥ 3: h = (2/n)ρ^{1−2/L}(a − ρb) − λ peaks at ρ* = (1−2/L)a/((2−2/L)b); λ above the peak
    # leaves only ρ = 0
    L = 3
    peak_rho = (1 - 2 / L) * a / ((2 - 2 / L) * b)
    peak = 2 / n * peak_rho ** (1 - 2 / L) * (a - peak_rho * b)
    assert len(predict.balanced_equilibria(a, b, n, 0.99 * peak, L)) == 3
    assert [e.rho for e in predict.balanced_equilibria(a, b, n, 1.01 * peak, L)] == [0.0]


@functools.cache
def _lambdified_rhs(num_layers):
    return sp.lambdify((RHO, A, B, N_SAMPLES, LAM), predict.balanced_rhs_symbolic(num_layers))


@given(a=st.floats(0.1, 10), b=st.floats(0.1, 10), lam=st.floats(1e-4, 1), L=st.integers(3, 5))
def test_balanced_equilibria_roots_vanish(a, b, lam, L):
    g = _lambdified_rhs(L)
    for eq in predict.balanced_equilibria(a, b, N, lam, L):
        assert abs(g(eq.rho, a, b, N, lam)) < 1e-10
    assert len(predict.balanced_equilibria(a, b, N, lam, L)) in (1, 3)


def test_balanced_equilibria_errors():
    with pytest.raises(ValueError, match="flow='lm-last'.*rho_relaxation"):
        predict.balanced_rhs_symbolic(3, "lm-last")
    with pytest.raises(ValueError, match="L=0 is not allowed"):
        predict.balanced_equilibria(1.0, 1.0, 4, 0.1, 0)
    with pytest.raises(ValueError, match="got b=0.0"):
        predict.balanced_equilibria(1.0, 0.0, 4, 0.1, 3)


# ---- 3.1 / 4.5 balancedness and 3.3 WN norm growth ----------------------------------------


def test_balance_law_along_the_plain_flow():
    net = MLP(3, (4,), 1, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 3))
    y = jnp.sign(x[:, :1])
    lam = 0.3
    shapes = [w.shape for w in net.weights]
    sizes = [math.prod(s) for s in shapes]

    def unflatten(theta):
        parts = jnp.split(theta, np.cumsum(sizes)[:-1])
        return tuple(p.reshape(s) for p, s in zip(parts, shapes, strict=True))

    def loss(theta):  # THEORY 1: (1/N)Σ||f − y||² + (λ/2)Σ||W_k||²
        ws = unflatten(theta)
        f = jax.vmap(net.apply, in_axes=(None, 0))(ws, x)
        return jnp.mean(jnp.sum((f - y) ** 2, 1)) + lam / 2 * sum(jnp.sum(w**2) for w in ws)

    grad = jax.jit(jax.grad(loss))
    theta0 = jnp.concatenate([w.ravel() for w in net.weights])
    ts = np.array([0.5, 1.0, 2.0])
    sol = scipy.integrate.solve_ivp(
        lambda t, th: -np.asarray(grad(th)), (0, 2.0), theta0, t_eval=ts, rtol=1e-10, atol=1e-12
    )

    def gap(theta):
        w1, w2 = unflatten(jnp.asarray(theta))
        return float(jnp.sum(w1**2) - jnp.sum(w2**2))

    gaps = [gap(sol.y[:, i]) for i in range(len(ts))]
    np.testing.assert_allclose(gaps, predict.balance_law(gap(theta0), lam, ts), rtol=1e-6)
    # the same law on the vector field of gf.Problem, at the states the ODE passed through
    data = gf.data.Dataset("signs", np.asarray(x), np.asarray(y))
    problem = gf.Problem(net, data, weight_decay=lam)
    for i in range(len(ts)):
        state = {"w": unflatten(jnp.asarray(sol.y[:, i]))}
        assert gft.balance_rate_error(problem, state) <= 1e-12


def test_wn_norm_growth_is_exact_for_gd_steps():
    net = MLP(3, (4,), 1, key=jax.random.PRNGKey(2))
    x = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    y = jnp.sign(x[:, :1])
    w1, w2 = net.weights

    def loss(v):  # WN on the first layer, W_1 = g v/||v|| with g = ||w1||: scale-invariant in v
        w = jnp.linalg.norm(w1) * v / jnp.linalg.norm(v)
        f = jax.vmap(net.apply, in_axes=(None, 0))((w, w2), x)
        return jnp.mean(jnp.sum((f - y) ** 2, 1))

    lr, v = 0.4, w1
    norms, grads = [], []
    for _ in range(5):
        g = jax.grad(loss)(v)
        grads.append(float(jnp.sum(g**2)))
        v = v - lr * g
        norms.append(float(jnp.sum(v**2)))
    predicted = predict.wn_norm_growth(float(jnp.sum(w1**2)), lr, jnp.array(grads))
    np.testing.assert_allclose(norms, predicted, rtol=1e-12)
    np.testing.assert_allclose(
        predict.wn_norm_growth(2.0, lr, grads[0]), 2.0 + lr**2 * grads[0], rtol=1e-15
    )


@settings(max_examples=8)
@given(
    problem_state=gft.problem_states(
        "mlp-small", normalizations="wn", weight_decay=[0.0, 0.1], targets=["labels", "regression"]
    ),
    lr=st.floats(0.01, 0.5),
)
def test_wn_norm_growth_of_every_layer(problem_state, lr):
    """3.3 on the full WN parametrization (every layer, with decay on the scales g only): each
    GD step obeys ||v_{j+1}||² = ||v_j||² + η²||∇_v L||², to rounding; five steps accumulate as
    predict.wn_norm_growth says."""
    problem, state = problem_state
    assert gft.wn_norm_growth_error(problem, state, lr) <= 1e-12
    grad = jax.jit(jax.grad(problem.loss))
    norms0 = [float(jnp.sum(v**2)) for v in state["v"]]
    increments = [[] for _ in norms0]
    for _ in range(5):
        g = grad(state)
        for k, gv in enumerate(g["v"]):
            increments[k].append(float(jnp.sum(gv**2)))
        state = jax.tree.map(lambda x, d: x - lr * d, state, g)
    for k, v in enumerate(state["v"]):
        predicted = predict.wn_norm_growth(norms0[k], lr, jnp.array(increments[k]))[-1]
        np.testing.assert_allclose(float(jnp.sum(v**2)), predicted, rtol=1e-12)


# ---- 4.6 low rank -------------------------------------------------------------------------


@given(
    b=st.integers(1, 64),
    lr=st.floats(1e-3, 0.5),
    lam=st.floats(1e-4, 0.5),
    eps=st.floats(1e-3, 0.5),
    ratio=st.floats(1.0, 100.0),
)
def test_rank_bound_definition_and_monotonicity(b, lr, lam, eps, ratio):
    k, bound = predict.rank_bound(b, lr, lam, eps, ratio, positions=3)
    k = float(k)
    # k is the least integer with e^{−ηλk} C/c ≤ ε, so (1 − ηλ)^k C/c ≤ ε as the unrolling needs
    assert k >= math.log(ratio / eps) / (lr * lam) - 1e-9 * k
    assert k - 1 < math.log(ratio / eps) / (lr * lam) * (1 + 1e-12)
    assert (1 - lr * lam) ** k * ratio <= eps * (1 + 1e-12)
    assert float(bound) == b * 3 * k
    # rank falls as B falls, as η rises, as λ rises (THEORY 4.6)
    assert float(predict.rank_bound(b + 1, lr, lam, eps, ratio)[1]) > float(
        predict.rank_bound(b, lr, lam, eps, ratio)[1]
    )
    assert (
        predict.rank_bound(b, 2 * lr, lam, eps, ratio)[1]
        <= predict.rank_bound(b, lr, lam, eps, ratio)[1]
    )
    assert (
        predict.rank_bound(b, lr, 2 * lam, eps, ratio)[1]
        <= predict.rank_bound(b, lr, lam, eps, ratio)[1]
    )


def test_rank_bound_strictly_monotone_and_unbounded_without_decay():
    ks = [float(predict.rank_bound(8, lr, 1e-2, 0.1, 10.0)[1]) for lr in (0.01, 0.05, 0.1)]
    assert ks[0] > ks[1] > ks[2]
    ks = [float(predict.rank_bound(8, 0.1, lam, 0.1, 10.0)[1]) for lam in (1e-3, 1e-2, 1e-1)]
    assert ks[0] > ks[1] > ks[2]
    assert math.isinf(float(predict.rank_bound(8, 0.1, 0.0, 0.1, 10.0)[1]))


# ---- 4.8 neural collapse under symmetric quasi-interpolation ------------------------------


@pytest.mark.parametrize("c", [2, 3, 5])
def test_etf_gram_eigenvalues(c):
    g = predict.etf_gram(c)
    eig = np.sort(np.linalg.eigvalsh(np.asarray(g)))
    np.testing.assert_allclose(eig, [0.0] + [c / (c - 1)] * (c - 1), atol=1e-14)
    np.testing.assert_allclose(np.diag(g), 1.0)
    np.testing.assert_allclose(g @ jnp.ones(c), 0.0, atol=1e-14)
    off = np.asarray(g)[~np.eye(c, dtype=bool)]
    np.testing.assert_allclose(off, -1 / (c - 1), rtol=1e-14)


@pytest.mark.parametrize("c", [3, 4])
def test_nc_kappa_makes_the_last_layer_stationary(c):
    lam, eps, p, per_class = 0.01, 0.05, 6, 3
    key1, key2 = jax.random.split(jax.random.PRNGKey(c))
    u, _ = jnp.linalg.qr(jax.random.normal(key1, (p, p)))
    m = u[:, :c] @ (jnp.eye(c) - 1.0 / c) * 2.0  # centred ETF means (p, C)
    mu_g = jax.random.normal(key2, (p,))  # arbitrary global mean: it must drop out
    labels = jnp.repeat(jnp.arange(c), per_class)
    h = mu_g + m.T[labels]
    y = jax.nn.one_hot(labels, c)
    f = (1 - eps) * y + eps / (c - 1) * (1 - y)  # symmetric quasi-interpolation
    residual = y - f
    w = predict.nc_kappa(eps, lam, c) * m.T
    # stationarity of the last layer: ∇_W [(1/N)Σ||r||² + (λ/2)||W||²] = −(2/N)Σ r hᵀ + λW = 0
    np.testing.assert_allclose(lam * w, 2.0 / h.shape[0] * residual.T @ h, atol=1e-14)
    assert float(jax.jit(metrics.neural_collapse)(h, labels, w)["nc3"]) < 1e-12
    with pytest.raises(ValueError, match="num_classes=1 is not allowed"):
        predict.nc_kappa(eps, lam, 1)


def test_predictions_jit_and_vmap_over_a_weight_decay_sweep():
    f, y = _outputs(1)
    lams = jnp.array([0.0, 0.01, 0.1])
    swept = jax.jit(jax.vmap(predict.rho_eq, in_axes=(None, None, 0)))(f, y, lams)
    a, b = float(jnp.sum(y * f)), float(jnp.sum(f * f))
    np.testing.assert_allclose(swept, [a / (b + N * lam / 2) for lam in lams], rtol=1e-14)
    rho_t = jax.jit(lambda lam, t: predict.rho_relaxation(1.0, f, y, lam)(t))
    assert rho_t(0.1, jnp.linspace(0, 1, 5)).shape == (5,)
    k, bound = jax.jit(predict.rank_bound)(jnp.array([4, 8]), 0.1, 0.01, 0.1, 10.0)
    assert bound[1] == 2 * bound[0]
