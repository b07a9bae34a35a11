"""Tests of gradflow.bounds against THEORY 6."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradflow import bounds, data
from gradflow.models import MLP, LocalCNN

CNNS = {  # overlapping windows (kernel > stride) in 1-D and, anisotropically, in 2-D
    "1d-dense-last": dict(in_shape=(2, 13), channels=(3, 2), kernel_sizes=(3, 2), strides=(1, 2)),
    "2d-conv-last": dict(
        in_shape=(2, 9, 8),
        channels=(3,),
        kernel_sizes=((3, 2), (4, 7)),
        strides=((2, 1), (1, 1)),
        last="conv",
    ),
}


@functools.cache
def _cnn(name, out_dim=2, seed=0):
    return LocalCNN(out_dim=out_dim, key=jax.random.PRNGKey(seed), **CNNS[name])


@pytest.mark.parametrize("name", sorted(CNNS))
def test_toeplitz_matrices_are_the_layers_and_give_the_ratio(name):
    model = _cnn(name)
    mats = bounds.toeplitz_matrices(model)
    x = jax.random.normal(jax.random.PRNGKey(1), model.in_shape)
    h = x.reshape(-1)
    for t in mats[:-1]:
        h = jax.nn.relu(t @ h)
    np.testing.assert_allclose(mats[-1] @ h, model(x), rtol=1e-12)
    for t, w, d in zip(mats, model.weights, model.output_positions, strict=True):
        assert t.shape[0] == w.shape[0] * d
        np.testing.assert_allclose(jnp.linalg.norm(t), math.sqrt(d) * jnp.linalg.norm(w), 1e-13)
    ratio = math.prod(float(jnp.linalg.norm(t)) for t in mats) / math.prod(
        float(jnp.linalg.norm(w)) for w in model.weights
    )
    np.testing.assert_allclose(bounds.dense_to_kernel_ratio(model), ratio, rtol=1e-12)


def test_ratio_is_1024_for_five_2x2_stride_2_layers_on_32x32():
    c = 2
    model = LocalCNN(
        (1, 32, 32),
        channels=(c,) * 4,
        kernel_sizes=2,
        strides=2,
        out_dim=3,
        last="conv",
        key=jax.random.PRNGKey(0),
    )
    assert bounds.dense_to_kernel_ratio(model) == 1024  # Π sqrt(d_k) = 16·8·4·2·1
    mats = bounds.toeplitz_matrices(model)
    ratio = math.prod(float(jnp.linalg.norm(t)) for t in mats) / math.prod(
        float(jnp.linalg.norm(w)) for w in model.weights
    )
    np.testing.assert_allclose(ratio, 1024, rtol=1e-12)


def test_dense_rademacher_is_golowich_and_uses_toeplitz_norms():
    net = MLP(4, (5, 6), 1, key=jax.random.PRNGKey(0))
    norms = math.prod(float(jnp.linalg.norm(w)) for w in net.weights)
    expected = 2.5 * (math.sqrt(2 * 3 * math.log(2)) + 1) * norms / math.sqrt(100)
    np.testing.assert_allclose(bounds.dense_rademacher(net, 2.5, 100), expected, rtol=1e-13)
    np.testing.assert_allclose(bounds.dense_rademacher(net.weights, 2.5, 100), expected, 1e-13)
    cnn = _cnn("2d-conv-last")
    np.testing.assert_allclose(
        bounds.dense_rademacher(cnn, 1.0, 10),
        bounds.dense_rademacher(bounds.toeplitz_matrices(cnn), 1.0, 10),
        rtol=1e-12,
    )


def test_kernel_rademacher_reduces_to_dense_for_dense_nets_and_uses_kernel_norms():
    net = MLP(4, (5,), 2, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(
        bounds.kernel_rademacher(net, 2.0, 50), bounds.dense_rademacher(net, 2.0, 50), 1e-14
    )
    cnn = _cnn("1d-dense-last")
    assert bounds.kernel_degrees(cnn) == (3, 2, 5)  # kernels 3, 2; dense last reads 5 positions
    scaled = (2.0 * cnn.weights[0], *cnn.weights[1:])
    np.testing.assert_allclose(
        bounds.kernel_rademacher(cnn, 1.0, 10, scaled),
        2 * bounds.kernel_rademacher(cnn, 1.0, 10),
        rtol=1e-14,
    )
    # the documented form on the CNN, by hand: P (sqrt(2 ln(2^L Π deg_k)) + 1) Π ||w_k|| / sqrt(N)
    kernels = np.prod([np.linalg.norm(np.asarray(w)) for w in cnn.weights])
    by_hand = 1.5 * (np.sqrt(2 * np.log(2**3 * 3 * 2 * 5)) + 1) * kernels / np.sqrt(10)
    np.testing.assert_allclose(bounds.kernel_rademacher(cnn, 1.5, 10), by_hand, rtol=1e-13)


def test_patch_bound():
    cnn = LocalCNN((1, 6, 6), (2,), 3, 3, 1, key=jax.random.PRNGKey(0))
    x = jnp.zeros((2, 1, 6, 6)).at[1, 0, 4, 2].set(-5.0)
    assert float(bounds.patch_bound(cnn, x)) == 5.0
    assert float(bounds.patch_bound(cnn, jnp.ones((1, 1, 6, 6)))) == 3.0  # sqrt(3·3)
    net = MLP(3, (2,), 1, key=jax.random.PRNGKey(0))
    assert float(bounds.patch_bound(net, jnp.array([[3.0, 4.0, 0.0], [1.0, 0, 0]]))) == 5.0


def test_margin_bound_terms():
    conf = 3 * math.sqrt(math.log(2 / 0.1) / (2 * 4))
    m = jnp.array([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(bounds.margin_bound(m, 0.5, 0.1, 4, 0.1), 0.4 + conf, rtol=1e-14)
    np.testing.assert_allclose(
        bounds.margin_bound(m, 2.5, 0.1, 4, 0.1), 0.75 + 0.08 + conf, rtol=1e-14
    )
    gammas = jnp.array([0.5, 2.5])
    np.testing.assert_allclose(
        bounds.margin_bound(m, gammas, 0.1, 4, 0.1), [0.4 + conf, 0.83 + conf], rtol=1e-14
    )


@pytest.fixture(scope="module")
def mixture():
    return data.load("gaussian-mixture", n_train=40, n_test=40, dim=8, classes=3, seed=1)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_all_bounds_on_a_network(mixture, kind):
    key = jax.random.PRNGKey(0)
    if kind == "mlp":
        model = MLP(8, (16,), 3, key=key)
    else:
        model = LocalCNN((1, 8), (4,), 3, 1, 3, key=key)
    out = bounds.all_bounds(model, model.weights, mixture, gamma=0.1)
    rho = math.prod(float(jnp.linalg.norm(w)) for w in model.weights)
    assert out["rho"] == pytest.approx(rho, rel=1e-14, abs=0)
    logits = np.asarray(jax.vmap(model)(jnp.asarray(mixture.x_train)))
    assert out["train_error"] == pytest.approx(
        np.mean(np.argmax(logits, 1) != mixture.labels()), abs=1e-15
    )
    assert out["dense_to_kernel_ratio"] == math.prod(math.sqrt(d) for d in model.output_positions)
    conf = 3 * math.sqrt(math.log(2 / 0.05) / (2 * 40))
    assert out["confidence"] == pytest.approx(conf, rel=1e-14, abs=0)
    # at unit layer norms R_dense = B_x (sqrt(2L ln 2) + 1) Π sqrt(d_k) / sqrt(N)
    r_dense = (
        mixture.input_bound
        * (math.sqrt(2 * 2 * math.log(2)) + 1)
        * out["dense_to_kernel_ratio"]
        / math.sqrt(40)
    )
    assert out["rademacher_dense"] == pytest.approx(r_dense, rel=1e-13, abs=0)
    # the bound is invariant under rescaling the layers (margins are of f/ρ)
    scaled = tuple(s * w for s, w in zip((3.0, 0.2), model.weights, strict=True))
    again = bounds.all_bounds(model, scaled, mixture)
    best = bounds.all_bounds(model, model.weights, mixture)
    for k in ("train_error", "test_error", "bound_dense", "bound_kernel", "gamma_dense"):
        assert again[k] == pytest.approx(best[k], rel=1e-10, abs=0)
    assert best["bound_dense"] <= out["bound_dense"] + 1e-12  # γ=None minimizes over margins
    if kind == "mlp":
        assert out["bound_kernel"] == pytest.approx(out["bound_dense"], rel=1e-14, abs=0)


def test_best_gamma_is_a_positive_margin_even_when_some_are_not():
    """A misclassified point must not make γ = +inf (the trivial bound) the minimizer."""
    from gradflow.bounds._all import _best_gamma
    from gradflow.bounds._margin import confidence_term

    m = jnp.array([-0.2, 0.0, 0.3, 0.5, 0.9])
    gamma, value = _best_gamma(m, 1.0, 5, 0.05)
    brute = min((float(bounds.margin_bound(m, g, 1.0, 5, 0.05)), g) for g in (0.3, 0.5, 0.9))
    assert float(gamma) == brute[1] == 0.9
    assert float(value) == pytest.approx(brute[0], rel=1e-14, abs=0)
    assert float(value) > 1 + float(confidence_term(5, 0.05))  # vacuous, but honest
    gamma, value = _best_gamma(-jnp.abs(m), 1.0, 5, 0.05)  # nothing fitted: trivial bound
    assert math.isinf(float(gamma))
    assert float(value) == pytest.approx(1 + float(confidence_term(5, 0.05)), rel=1e-14, abs=0)
