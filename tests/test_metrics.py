"""Tests of gradflow.metrics against THEORY 5's definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradflow import metrics

neural_collapse = jax.jit(metrics.neural_collapse)

C, P, PER_CLASS = 4, 7, 5


def _orthonormal(key, p, k):
    q, _ = jnp.linalg.qr(jax.random.normal(key, (p, p)))
    return q[:, :k]


def _etf_problem(key, num_classes=C, p=P, scale=3.0):
    """Simplex-ETF class means in p dims (unit centred means, cosines −1/(C−1)), a global mean
    orthogonal to them, zero within-class variability, balanced classes."""
    u = _orthonormal(key, p, num_classes + 1)
    centring = jnp.eye(num_classes) - jnp.ones((num_classes, num_classes)) / num_classes
    m = scale * math.sqrt(num_classes / (num_classes - 1)) * u[:, :num_classes] @ centring
    mu_g = 2.0 * u[:, num_classes]
    labels = jnp.repeat(jnp.arange(num_classes), PER_CLASS)
    features = mu_g + m.T[labels]
    return features, labels, m


def _noisy_problem(seed, num_classes=C, p=P, noise=0.3):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    means = jax.random.normal(k1, (num_classes, p))
    labels = jnp.repeat(jnp.arange(num_classes), PER_CLASS)
    return means[labels] + noise * jax.random.normal(k2, (labels.size, p)), labels


def test_simplex_etf_has_every_nc_metric_zero():
    features, labels, m = _etf_problem(jax.random.PRNGKey(0))
    out = neural_collapse(features, labels, 0.7 * m.T)
    for key in ("nc1", "nc2", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4"):
        assert abs(float(out[key])) < 1e-10, (key, out[key])


def test_binary_collapse_has_every_nc_metric_zero():
    d = jnp.array([1.0, -2.0, 0.5])
    mu_g = jnp.array([0.3, 0.1, 4.0])
    labels = jnp.array([0, 1] * 6)
    features = mu_g + jnp.where(labels[:, None] == 1, d / 2, -d / 2)
    out = neural_collapse(features, labels, 2.5 * d[None, :])
    assert out["nc1"] < 1e-10 and out["nc2"] < 1e-10 and out["nc3"] < 1e-10
    # ``f = w·h`` with μ_G not orthogonal to w can flip signs; outputs given explicitly here
    outputs = jnp.where(labels == 1, 1.0, -1.0)[:, None]
    assert neural_collapse(features, labels, d[None, :], outputs)["nc4"] == 0
    # w_L = −(μ_+ − μ_−): ||−u − u||² = 4
    assert float(neural_collapse(features, labels, -d[None, :])["nc3"]) == pytest.approx(4)


@given(seed=st.integers(0, 2**16), log_scale=st.floats(-2, 2))
def test_nc1_invariant_under_rotation_and_rescaling(seed, log_scale):
    features, labels = _noisy_problem(seed)
    w = jnp.ones((C, P))
    q = _orthonormal(jax.random.PRNGKey(seed + 1), P, P)
    base = neural_collapse(features, labels, w)["nc1"]
    moved = neural_collapse(10.0**log_scale * features @ q.T, labels, w)["nc1"]
    assert float(base) > 0
    np.testing.assert_allclose(moved, base, rtol=1e-9)


def test_nc1_matches_the_definition_and_ignores_a_large_shift():
    features, labels = _noisy_problem(3)
    f, lab = np.asarray(features), np.asarray(labels)
    means = np.stack([f[lab == c].mean(0) for c in range(C)])
    z = f - means[lab]
    sigma_w = z.T @ z / len(f)
    centred = means - f.mean(0)
    sigma_b = centred.T @ centred / C
    expected = np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10)) / C
    got = neural_collapse(features, labels, jnp.ones((C, P)))["nc1"]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    shifted = neural_collapse(features + 1e4, labels, jnp.ones((C, P)))["nc1"]
    np.testing.assert_allclose(shifted, expected, rtol=1e-6)


def test_nc2_parts_on_hand_made_means():
    centred = np.array([[2.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])  # sums to zero
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    features = jnp.asarray(centred)[labels] + jnp.array([5.0, -3.0])
    out = neural_collapse(features, labels, jnp.ones((3, 2)))
    norms = np.array([2.0, math.sqrt(2), math.sqrt(2)])
    equinorm = math.sqrt(np.mean(norms**2) - np.mean(norms) ** 2) / np.mean(norms)
    # cosines: −1/√2 (twice, both orders) and 0 (both orders); mean of |cos + 1/2| over 6 pairs
    equiangular = (4 * (1 / math.sqrt(2) - 0.5) + 2 * 0.5) / 6
    np.testing.assert_allclose(out["nc2_equinorm"], equinorm, rtol=1e-12)
    np.testing.assert_allclose(out["nc2_equiangular"], equiangular, rtol=1e-12)
    np.testing.assert_allclose(out["nc2"], equinorm + equiangular, rtol=1e-12)
    assert float(out["nc1"]) == 0


def test_nc4_counts_disagreements_with_nearest_mean():
    features, labels, m = _etf_problem(jax.random.PRNGKey(1))
    outputs = jax.nn.one_hot(labels, C)
    outputs = outputs.at[:3].set(jax.nn.one_hot((labels[:3] + 1) % C, C))
    out = neural_collapse(features, labels, m.T, outputs)
    assert float(out["nc4"]) == pytest.approx(3 / labels.size)


def test_neural_collapse_jits_and_rejects_a_bad_last_layer():
    features, labels, m = _etf_problem(jax.random.PRNGKey(2))
    out = jax.jit(metrics.neural_collapse)(features, labels, m.T)
    assert float(out["nc3"]) < 1e-10
    with pytest.raises(ValueError, match=r"last_layer has shape \(4, 3\).*p = 7"):
        neural_collapse(features, labels, jnp.ones((4, 3)))


def test_margins_binary_and_multiclass():
    np.testing.assert_array_equal(
        metrics.margins(jnp.array([[0.5], [-0.2]]), jnp.array([[1.0], [1.0]])), [0.5, -0.2]
    )
    f = jnp.array([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    y = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(metrics.margins(f, y), [1.0, -2.0])
    with pytest.raises(ValueError, match="must both be"):
        metrics.margins(f, y[:, :2])


def test_margin_summary():
    s = metrics.margin_summary(jnp.array([1.0, 2.0, 3.0]))
    assert (float(s["min"]), float(s["mean"])) == (1.0, 2.0)
    np.testing.assert_allclose(s["std"], math.sqrt(2 / 3), rtol=1e-14)
    np.testing.assert_allclose(s["spread"], math.sqrt(2 / 3) / 2, rtol=1e-14)


@given(rank=st.integers(1, 6), seed=st.integers(0, 2**16), log_scale=st.floats(-6, 3))
def test_numerical_rank_of_constructed_rank_r_matrix(rank, seed, log_scale):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    s = jnp.where(jnp.arange(6) < rank, jax.random.uniform(k3, (6,), minval=0.5, maxval=2), 0)
    w = _orthonormal(k1, 8, 6) @ jnp.diag(s) @ _orthonormal(k2, 10, 6).T
    assert int(metrics.numerical_rank(10.0**log_scale * w)) == rank


def test_numerical_rank_tolerance_is_absolute_on_the_normalized_matrix():
    w = jnp.diag(jnp.array([1.0, 1e-4, 0.0]))
    assert int(metrics.numerical_rank(w)) == 1
    assert int(metrics.numerical_rank(w, tol=1e-5)) == 2
    assert int(metrics.numerical_rank(1e6 * w)) == 1


def test_kernels_are_reshaped_to_output_channels():
    k1, k2 = jax.random.split(jax.random.PRNGKey(4))
    matrix = jax.random.normal(k1, (3, 2)) @ jax.random.normal(k2, (2, 8))
    kernel = matrix.reshape(3, 2, 2, 2)
    assert int(metrics.numerical_rank(kernel)) == 2
    np.testing.assert_allclose(metrics.singular_values(kernel), metrics.singular_values(matrix))


def test_stable_and_effective_rank_formulas():
    u, v = _orthonormal(jax.random.PRNGKey(5), 5, 3), _orthonormal(jax.random.PRNGKey(6), 4, 3)
    w = u @ jnp.diag(jnp.array([3.0, 2.0, 1.0])) @ v.T
    np.testing.assert_allclose(metrics.stable_rank(w), 14 / 9, rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(metrics.singular_values(w) ** 2), 1, rtol=1e-12)
    p = np.array([3, 2, 1]) / 6
    np.testing.assert_allclose(metrics.effective_rank(w), np.exp(-np.sum(p * np.log(p))), 1e-12)
    for n in (1, 4, 9):
        np.testing.assert_allclose(metrics.effective_rank(jnp.eye(n)), n, rtol=1e-12)
    np.testing.assert_allclose(metrics.effective_rank(jnp.diag(jnp.array([1.0, 1, 0, 0]))), 2)


def test_sgd_noise_relative_change_per_layer():
    prev = (jnp.ones((2, 2)), jnp.ones(3), jnp.array([[3.0, 4.0]]))
    cur = (2 * jnp.ones((2, 2)), jnp.ones(3), jnp.array([[3.0, 4.0 + 5.0]]))
    np.testing.assert_allclose(metrics.sgd_noise(prev, cur), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="2 previous and 3 current"):
        metrics.sgd_noise(prev[:2], cur)


def test_rank_metrics_jit():
    w = jnp.diag(jnp.array([2.0, 1.0, 0.0]))
    fns = jax.jit(lambda w: (metrics.numerical_rank(w), metrics.stable_rank(w)))
    rank, stable = fns(w)
    assert int(rank) == 2
    np.testing.assert_allclose(stable, 5 / 4, rtol=1e-14)
