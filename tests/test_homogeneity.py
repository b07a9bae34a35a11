"""THEORY 2.1–2.3: homogeneity identities, for every model, to relative 1e-10.

The networks and inputs are drawn by gradflow.testing's strategies (every architecture of
``gft.ARCHITECTURES``: MLPs with ReLU and linear activations, deep linear networks, 1-D and
2-D local CNNs with dense and convolutional last layers); the identities are measured by its
checkers, which return the deviation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradflow.testing as gft
from gradflow.models import MLP, LocalCNN, paper_cnn

#: Zero-padded CNNs (LocalCNN(padding=...), gradflow.models.paper_cnn, docs/scale.md): a
#: convolution of a zero-padded input is linear, so the identities hold for them too.
PADDED = {
    a.name: a
    for a in (
        gft.architecture(
            "cnn1d-pad-conv",
            lambda k, s: LocalCNN(
                (1, 12), (3,), (3, 6), (2, 1), 2, padding=(1, 0), last="conv", init_scale=s, key=k
            ),
            (1, 12),
            2,
        ),
        gft.architecture(
            "paper-cnn-small",
            lambda k, s: paper_cnn((2, 5, 5), 2, channels=(2, 3), init_scale=s, key=k),
            (2, 5, 5),
            2,
        ),
    )
}
NAMES = list(gft.ARCHITECTURES) + list(PADDED)
scales = st.floats(0.05, 20.0)
TOL = 1e-10


def _arch(name):
    return PADDED.get(name) or gft.ARCHITECTURES[name]


def _draw(data, name):
    model = data.draw(gft.networks([_arch(name)], init_scale=1.0), label="model")
    return model, data.draw(gft.inputs(model), label="x")


def test_the_architectures_cover_every_model_kind():
    nets = {a.name: gft.build_network(a, 0) for a in gft.ARCHITECTURES.values()}
    assert {type(n).__name__ for n in nets.values()} == {"MLP", "DeepLinear", "LocalCNN"}
    lasts = {n.last for name, n in nets.items() if "cnn" in name}
    assert lasts == {"dense", "conv"}


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), alpha=scales, layer=st.integers(0, 10))
def test_layer_scaling_and_product_of_norms(name, data, alpha, layer):
    """2.1: f(W) = ρ f(V), and scaling one layer by α > 0 scales f by α."""
    model, x = _draw(data, name)
    assert gft.homogeneity_error(model, x, alpha=alpha, layer=layer) <= TOL
    assert model.degree == len(model.weights)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), scale=scales)
def test_euler_identity(name, data, scale):
    """2.2: <W_k, ∇_{W_k} f(W; x)> = f(W; x) for every layer and output; summed: L f."""
    model, x = _draw(data, name)
    w = tuple(scale * wk for wk in model.weights)
    assert gft.euler_identity_error(model, x, weights=w) <= TOL


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), scale=scales)
def test_gradient_scaling(name, data, scale):
    """2.3: ∇_{W_k} f(W) = (ρ/ρ_k) ∇_{V_k} f(V), and <V_k, ∇_{V_k} f(V)> = f(V)."""
    model, x = _draw(data, name)
    w = tuple(scale * (i + 1.0) * wk for i, wk in enumerate(model.weights))
    assert gft.gradient_scaling_error(model, x, weights=w) <= TOL


def test_the_checkers_measure_a_violation():
    """Positive controls: a wrong factor is measured, not hidden."""
    model = gft.build_network("mlp", 0)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(6))
    assert gft.homogeneity_error(model, x) <= TOL
    # an output bias breaks every identity of THEORY 2: the checkers must see it
    bias = lambda ws, x: MLP.apply(model, ws, x) + 1.0  # noqa: E731
    broken = type("Biased", (), {"weights": model.weights, "apply": staticmethod(bias)})()
    assert gft.homogeneity_error(broken, x) > 1e-3
    assert gft.euler_identity_error(broken, x) > 1e-3
    assert gft.gradient_scaling_error(broken, x) > 1e-3


def test_features_are_the_input_of_the_last_layer():
    model = gft.build_network("cnn2d-dense", 3)
    x = jnp.asarray(np.random.default_rng(4).standard_normal(model.in_shape))
    h = model.features(x)
    np.testing.assert_allclose(model.weights[-1] @ h, model(x), rtol=1e-12, atol=1e-12)
    model = gft.build_network("mlp", 5)
    x = jnp.asarray(np.random.default_rng(6).standard_normal(6))
    np.testing.assert_allclose(model.weights[-1] @ model.features(x), model(x), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_pre_activations_are_the_inputs_of_the_relus(name):
    """The activation pattern used by gf.equilibrium: the ReLUs' inputs, layer by layer."""
    model = gft.build_network(_arch(name), 7)
    x = jnp.asarray(np.random.default_rng(8).standard_normal(gft.input_shape(model)))
    pre = model.pre_activations(model.weights, x)
    linear = not isinstance(model, LocalCNN) and getattr(model, "activation", "linear") == "linear"
    assert len(pre) == (0 if linear else len(model.weights) - 1)
    if pre:  # the features are the ReLU of the last pre-activation
        np.testing.assert_allclose(
            jnp.ravel(jax.nn.relu(pre[-1])), model.features(x), rtol=1e-12, atol=1e-14
        )


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
