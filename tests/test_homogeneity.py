"""THEORY 2.1–2.3: homogeneity identities, for every model, to relative 1e-10."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradflow.models import MLP, DeepLinear, LocalCNN

MODELS = {
    "mlp": (lambda k: MLP(6, (9, 7), 3, key=k), (6,)),
    "mlp-binary": (lambda k: MLP(5, (8,), 1, key=k), (5,)),
    "deep-linear": (lambda k: DeepLinear(4, (5, 6), 2, key=k), (4,)),
    "cnn1d-dense": (lambda k: LocalCNN((2, 17), (3, 4), (3, 2), (2, 2), 2, key=k), (2, 17)),
    "cnn1d-overlap-conv": (
        lambda k: LocalCNN((1, 12), (3,), (4, 5), (2, 1), 3, last="conv", key=k),
        (1, 12),
    ),
    "cnn2d-conv": (
        lambda k: LocalCNN((1, 8, 8), (3, 3), 2, 2, 2, last="conv", key=k),
        (1, 8, 8),
    ),
    "cnn2d-dense": (lambda k: LocalCNN((2, 7, 6), (3,), ((3, 2),), ((2, 1),), 1, key=k), (2, 7, 6)),
}

seeds = st.integers(0, 2**31 - 1)
scales = st.floats(0.05, 20.0)


def _setup(name, seed):
    make, shape = MODELS[name]
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    model = make(k1)
    x = jax.random.normal(k2, shape)
    return model, x


def _close(a, b, tol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("name", list(MODELS))
@given(seed=seeds, alpha=scales, layer=st.integers(0, 10))
def test_layer_scaling_and_product_of_norms(name, seed, alpha, layer):
    """2.1: f(W) = ρ f(V), and scaling one layer by α > 0 scales f by α."""
    model, x = _setup(name, seed)
    w = model.weights
    norms = [jnp.linalg.norm(wk) for wk in w]
    v = tuple(wk / n for wk, n in zip(w, norms))
    _close(model.apply(w, x), np.prod(norms) * model.apply(v, x))
    k = layer % len(w)
    scaled = tuple(alpha * wk if i == k else wk for i, wk in enumerate(w))
    _close(model.apply(scaled, x), alpha * model.apply(w, x))
    assert model.degree == len(w)


@pytest.mark.parametrize("name", list(MODELS))
@given(seed=seeds, scale=scales)
def test_euler_identity(name, seed, scale):
    """2.2: <W_k, ∇_{W_k} f(W; x)> = f(W; x) for every layer and output; summed: L f."""
    model, x = _setup(name, seed)
    w = tuple(scale * wk for wk in model.weights)
    f = model.apply(w, x)
    jac = jax.jacrev(model.apply)(w, x)  # per layer: (C, *W_k.shape)
    total = 0.0
    for wk, jk in zip(w, jac):
        inner = jnp.tensordot(jk, wk, axes=wk.ndim)
        _close(inner, f)
        total = total + inner
    _close(total, model.degree * f)


@pytest.mark.parametrize("name", list(MODELS))
@given(seed=seeds, scale=scales)
def test_gradient_scaling(name, seed, scale):
    """2.3: ∇_{W_k} f(W) = (ρ/ρ_k) ∇_{V_k} f(V), and <V_k, ∇_{V_k} f(V)> = f(V)."""
    model, x = _setup(name, seed)
    w = tuple(scale * (i + 1.0) * wk for i, wk in enumerate(model.weights))
    norms = [jnp.linalg.norm(wk) for wk in w]
    rho = np.prod(norms)
    v = tuple(wk / n for wk, n in zip(w, norms))
    jw = jax.jacrev(model.apply)(w, x)
    jv = jax.jacrev(model.apply)(v, x)
    fv = model.apply(v, x)
    for k in range(len(w)):
        _close(jw[k], rho / norms[k] * jv[k])
        _close(jnp.tensordot(jv[k], v[k], axes=v[k].ndim), fv)


def test_features_are_the_input_of_the_last_layer():
    model, x = _setup("cnn2d-dense", 3)
    h = model.features(x)
    _close(model.weights[-1] @ h, model(x))
    model, x = _setup("mlp", 4)
    _close(model.weights[-1] @ model.features(x), model(x))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda k: MLP(4, (3,), 1, activation="tanh", key=k), "activation='tanh'"),
        (lambda k: MLP(0, (3,), 1, key=k), "in_dim=0"),
        (lambda k: MLP(4, (3, -1), 1, key=k), "widths="),
        (lambda k: LocalCNN((1, 8), (2,), (3,), (1,), 1, last="pool", key=k), "last='pool'"),
        (lambda k: LocalCNN((1, 8), (2,), (3, 3), (1,), 1, key=k), "kernel_sizes has 2"),
        (lambda k: LocalCNN((1, 8), (2,), (9,), (1,), 1, key=k), "no output positions"),
        (lambda k: LocalCNN((1, 8), (2,), (3, 2), (1, 1), 1, last="conv", key=k), "one output"),
    ],
)
def test_model_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(jax.random.PRNGKey(0))
