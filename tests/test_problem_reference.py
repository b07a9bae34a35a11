"""``gf.Problem`` against the mathematics it promises, called eagerly (no ``jax.jit``).

The loss ``L = (1/N) Σ_n ||f(W; x_n) − y_n||² + (λ/2) D`` (THEORY 1, 3), its velocity, the
outputs and features, recomputed here from the weights with a NumPy ReLU network; the
description and the conversions a ``Problem`` makes; every refusal word for word. Eager on
purpose: benchmarks/mutation/screen.py runs these tests against every mutant of
``gradflow/_problem.py`` (a jitted test would keep its first trace).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_nets import relu_mlp

import gradflow as gf
from gradflow.data import Dataset
from gradflow.models import MLP

#: ``finfo(float64).max ** (1/3)`` and ``finfo(float32).max ** (1/3)``: 1.7977e308^(1/3)
#: and 3.4028e38^(1/3), written out
LIMIT64 = "5.64e+102"
LIMIT32 = "6.98e+12"


def _net(widths=(4,), d=3, c=1, key=0):
    return MLP(d, widths, c, key=jax.random.PRNGKey(key))


def _data(n=7, m=5, d=3, c=1, options=None, seed=0):
    """Train and test splits of different sizes (``m = 0``: no test split)."""
    rng = np.random.default_rng(seed)
    x, xt = rng.standard_normal((n, d)), rng.standard_normal((m, d))
    y = rng.standard_normal((n, c)) if c > 1 else np.sign(x[:, :1] + 0.3)
    yt = rng.standard_normal((m, c)) if c > 1 else np.sign(xt[:, :1] + 0.3)
    return Dataset(
        "toy",
        x,
        y,
        xt if m else None,
        yt if m else None,
        options=dict(options or {"seed": seed}),
    )


_forward = relu_mlp


def _decay(weights, normalization):
    """``D`` of THEORY 3 from the weights: ``Σ||W_k||²`` (none), ``Σρ_k²`` (lm-all, wn:
    ``ρ_k = g_k = ||W_k||``), ``ρ² = (Π||W_k||)²`` (lm-last)."""
    norms2 = [float(np.sum(np.square(np.asarray(w, np.float64)))) for w in weights]
    return float(np.prod(norms2)) if normalization == "lm-last" else sum(norms2)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _raises(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


# ---- refusals, word for word -------------------------------------------------------------------


def test_refusals_name_the_argument_the_value_and_what_is_allowed():
    allowed_decay = "is not allowed; use a finite number >= 0"
    for value, shown in [(-1.0, "-1.0"), (float("nan"), "nan"), (float("inf"), "inf")]:
        message = _raises(lambda v=value: gf.Problem(_net(), _data(), weight_decay=v))
        assert message == f"Problem: weight_decay={shown} {allowed_decay}"
    for value, shown in [(True, "True"), ("0.1", "'0.1'"), (None, "None")]:
        message = _raises(lambda v=value: gf.Problem(_net(), _data(), weight_decay=v))
        assert message == f"Problem: weight_decay={shown} {allowed_decay}"
    allowed_chunk = (
        "is not allowed; use an integer >= 1, or None for the default (activations within "
        "32 MiB on a CPU)"
    )
    for value, shown in [(0, "0"), (-3, "-3"), (2.5, "2.5"), (True, "True"), ("8", "'8'")]:
        message = _raises(lambda v=value: gf.Problem(_net(), _data(), chunk_size=v))
        assert message == f"Problem: chunk_size={shown} {allowed_chunk}"
    message = _raises(lambda: gf.Problem(_net(), _data(), precision="float16"))
    assert message == (
        "Problem: precision='float16' is not allowed; use 'float32', 'float64' or None"
    )
    message = _raises(lambda: gf.Problem(object(), _data()))
    assert message == (
        "Problem: model=<object> is not allowed; pass a network of gradflow.models "
        "(e.g. MLP, DeepLinear, LocalCNN)"
    )
    message = _raises(lambda: gf.Problem(_net(), SimpleNamespace(x_train=1, y_train=1)))
    assert message == (
        "Problem: data=<SimpleNamespace> is not allowed; pass a gradflow.data.Dataset "
        "(gf.data.load(...))"
    )


def test_float64_without_x64_is_refused_and_float32_is_not():
    jax.config.update("jax_enable_x64", False)
    try:
        message = _raises(lambda: gf.Problem(_net(), _data(), precision="float64"))
        p32 = gf.Problem(_net(), _data(), precision="float32")
        default = gf.Problem(_net(), _data())  # JAX's default float without x64
    finally:
        jax.config.update("jax_enable_x64", True)
    assert message == (
        "Problem: precision='float64' is not allowed; it needs jax_enable_x64 "
        "(jax.config.update('jax_enable_x64', True) before building the problem), or use "
        "'float32'"
    )
    assert p32.precision == "float32" and default.precision == "float32"


def test_shapes_that_do_not_fit_the_network_are_refused():
    message = _raises(lambda: gf.Problem(_net(d=4), _data(d=3)))
    with pytest.raises(TypeError) as jax_error:  # JAX's reason, quoted in the refusal
        jax.eval_shape(_net(d=4).apply, _net(d=4).weights, jnp.zeros(3))
    reason = str(jax_error.value).splitlines()[0]
    assert message == (
        f"Problem: data x has sample shape (3,), which model MLP does not accept ({reason})"
    )
    message = _raises(lambda: gf.Problem(_net(c=2), _data(c=3)))
    assert message == (
        "Problem: model MLP has 2 outputs but the data have C=3 target columns; they must match"
    )
    # a network with a scalar output has 0 output columns
    scalar = SimpleNamespace(
        weights=(jnp.ones((1, 3)),), with_weights=None, apply=lambda w, x: jnp.sum(w[0] @ x)
    )
    message = _raises(lambda: gf.Problem(scalar, _data(), chunk_size=1))
    assert message == (
        "Problem: model SimpleNamespace has 0 outputs but the data have C=1 target columns; "
        "they must match"
    )


def _net_of_norm2(value, widths=(4,), d=3):
    """An MLP whose 16 entries all equal ``value`` (``||W||² = 16 value²``)."""
    net = _net(widths, d)
    return net.with_weights(tuple(jnp.full(w.shape, value) for w in net.weights))


def test_inputs_or_decay_that_overflow_the_squared_loss_are_refused_at_the_limit():
    """Inputs beyond ``finfo.max^(1/3)`` (5.64e102 in float64, 6.98e12 in float32) and a decay
    term ``(λ/2)||W||²`` beyond it are refused, naming the split or λ; exactly at the limit
    they are accepted; an empty test split is no input."""
    limit = float(np.finfo(np.float64).max) ** (1 / 3)
    data = _data()
    big = Dataset("toy", np.full((7, 3), 1e120), data.y_train)
    message = _raises(lambda: gf.Problem(_net(), big))
    assert message == (
        "Problem: data=<x_train with entries up to 1e+120> is not allowed; inputs beyond "
        f"{LIMIT64} overflow the squared loss in float64; rescale them (e.g. the loaders' "
        "standardize=True or unit_norm=True)"
    )
    big_test = Dataset("toy", data.x_train, data.y_train, np.full((2, 3), -3e110), data.y_test[:2])
    assert "data=<x_test with entries up to 3e+110>" in _raises(
        lambda: gf.Problem(_net(), big_test)
    )
    for x in (np.full((7, 3), 1e20), np.full((7, 3), 1e20, np.float32)):
        big32 = Dataset("toy", x, data.y_train)
        message = _raises(lambda d=big32: gf.Problem(_net(), d, precision="float32"))
        assert f"inputs beyond {LIMIT32} overflow the squared loss in float32;" in message
    # float32 weights of 1e20: (λ/2)||W||² = 8e40 is measured in float64 (not inf)
    huge = _net().with_weights(tuple(jnp.full(w.shape, 1e20, jnp.float32) for w in _net().weights))
    message = _raises(lambda: gf.Problem(huge, data, weight_decay=1.0, precision="float32"))
    assert message.startswith(
        "Problem: weight_decay=1.0 is not allowed; (λ/2)·||W||² = 8e+40 at the initial weights "
        f"overflows float32 (limit {LIMIT32}); use weight_decay <= 8.73e-29"
    )
    at_limit = Dataset("toy", np.full((7, 3), limit), data.y_train)
    assert gf.Problem(_net(), at_limit).n_train == 7
    empty_test = Dataset("toy", data.x_train, data.y_train, np.zeros((0, 3)), np.zeros((0, 1)))
    assert gf.Problem(_net(), empty_test).describe()["n_test"] == 0
    # ||W||² = 16 · 0.25 = 4 exactly: λ = limit/2 puts (λ/2)||W||² exactly at the limit
    net = _net_of_norm2(0.5)
    assert gf.Problem(net, data, weight_decay=limit / 2).weight_decay == limit / 2
    above = float(np.nextafter(limit / 2, np.inf))
    message = _raises(lambda: gf.Problem(net, data, weight_decay=above))
    assert message.startswith(
        f"Problem: weight_decay={above!r} is not allowed; (λ/2)·||W||² = {LIMIT64} at the "
        f"initial weights overflows float64 (limit {LIMIT64}); use weight_decay <= 2.82e+102"
    )
    # ||W||² = 16 · 0.01 = 0.16 < 1: the suggested bound 2 · limit / 0.16 = 7.05e103
    message = _raises(lambda: gf.Problem(_net_of_norm2(0.1), data, weight_decay=1e305))
    assert message == (
        "Problem: weight_decay=1e+305 is not allowed; (λ/2)·||W||² = 8e+303 at the initial "
        f"weights overflows float64 (limit {LIMIT64}); use weight_decay <= 7.05e+103"
    )


# ---- what a Problem records -------------------------------------------------------------------


def test_describe_and_repr_say_what_the_problem_is():
    data = _data(options={"seed": 3, "path": Path("/data/x.npz")})
    p = gf.Problem(_net((4, 5)), data, weight_decay=0.25, normalization="lm-last", chunk_size=4)
    assert p.describe() == {
        "model": "MLP",
        "layer_shapes": [[4, 3], [5, 4], [1, 5]],
        "normalization": "lm-last",
        "weight_decay": 0.25,
        "freeze_directions": False,
        "data": "toy",
        "data_options": {"path": "/data/x.npz", "seed": 3},
        "n_train": 7,
        "n_test": 5,
        "precision": "float64",
        "chunk_size": 4,
    }
    json.dumps(p.describe())  # serialisable
    assert repr(p) == (
        "Problem: MLP [4×3 5×4 1×5], lm-last, λ=0.25, float64; data 'toy': 7 train, 5 test\n"
        "  37 weights; inputs (3,), targets (7, 1); chunk_size 4"
    )
    frozen = gf.Problem(_net(), _data(m=0), normalization="lm-all", freeze_directions=True)
    d = frozen.describe()
    assert d["freeze_directions"] is True and d["n_test"] == 0 and frozen.x_test is None
    assert frozen.y_test is None and d["weight_decay"] == 0.0 and d["normalization"] == "lm-all"


def test_the_data_options_are_one_canonical_text():
    """The options are stored as sorted JSON, so two problems of the same data given in
    another key order are equal (one compilation); an object without ``name``/``options``
    is ``"custom"`` with no options."""
    a = gf.Problem(_net(), _data(options={"seed": 0, "dim": 3}))
    b = gf.Problem(_net(), _data(options={"dim": 3, "seed": 0}))
    assert a.data_options == b.data_options == '{"dim": 3, "seed": 0}'
    data = _data()
    plain = SimpleNamespace(x_train=data.x_train, y_train=data.y_train, x_test=None, y_test=None)
    p = gf.Problem(_net(), plain)
    assert p.data_name == "custom" and p.describe()["data_options"] == {}
    assert p.describe()["data"] == "custom" and p.describe()["n_test"] == 0


def test_the_defaults_are_no_decay_no_normalization_one_chunk():
    """Defaults: λ = 0, ``"none"``, directions free, float64 under x64, and one chunk of the
    larger split when the data fit (12 train, 20 test: 20; 9 train, 4 test: 9)."""
    p = gf.Problem(_net(), _data(n=12, m=20))
    assert float(p.weight_decay) == 0.0 and p.normalization == "none"
    assert p.freeze_directions is False and p.precision == "float64"
    assert p.chunk_size == 20
    assert gf.Problem(_net(), _data(n=9, m=4)).chunk_size == 9
    assert gf.Problem(_net(), _data(n=9, m=0)).chunk_size == 9
    assert gf.Problem(_net(), _data(n=6, m=6)).chunk_size == 6
    assert gf.Problem(_net(), _data(), chunk_size=np.int64(1)).chunk_size == 1
    assert gf.Problem(_net(), _data(), weight_decay=np.float32(0.5)).describe()[
        "weight_decay"
    ] == pytest.approx(0.5)
    assert float(gf.Problem(_net(), _data(), weight_decay=np.int64(2)).weight_decay) == 2.0
    assert gf.Problem(_net(), _data(), precision=None).precision == "float64"


# ---- the loss, its parts and its velocity -----------------------------------------------------


@pytest.mark.parametrize(
    "normalization, chunk_size",
    [("none", 3), ("lm-all", None), ("lm-last", 3), ("wn", 2), ("lm-last", None)],
)
def test_the_loss_is_the_mean_square_error_plus_half_lambda_d(normalization, chunk_size):
    """``loss = (1/N) Σ ||f − y||² + (λ/2) D`` to rounding, from a NumPy network, for each
    parametrization; on the test split with ``x, y``; with sample weights ``w``
    (``Σ w_n ℓ_n``); with another λ; chunked (k = 2, 3 < N = 7) or not."""
    data = _data()
    lam = 0.37
    p = gf.Problem(
        _net((4, 5)), data, weight_decay=lam, normalization=normalization, chunk_size=chunk_size
    )
    state = p.initial_state()
    weights = p.to_weights(state)
    _, f = _forward(weights, data.x_train)
    _, ft = _forward(weights, data.x_test)
    sq = np.sum((f - data.y_train) ** 2, axis=1)
    sq_test = np.sum((ft - data.y_test) ** 2, axis=1)
    d = _decay(weights, normalization)
    assert _rel(p.data_loss(state), np.mean(sq)) < 1e-13
    assert _rel(p.decay_term(state), lam / 2 * d) < 1e-13
    assert _rel(p.loss(state), np.mean(sq) + lam / 2 * d) < 1e-13
    assert _rel(p.decay_term(state, 2.5), 1.25 * d) < 1e-13
    assert _rel(p.loss(state, weight_decay=2.5), np.mean(sq) + 1.25 * d) < 1e-13
    assert _rel(p.data_loss(state, data.x_test, data.y_test), np.mean(sq_test)) < 1e-13
    w = np.random.default_rng(1).dirichlet(np.ones(7))
    assert _rel(p.data_loss(state, w=list(w)), w @ sq) < 1e-13
    total = np.mean(sq_test) + lam / 2 * d
    assert _rel(p.loss(state, data.x_test, data.y_test), total) < 1e-13
    wt = np.random.default_rng(2).dirichlet(np.ones(5))
    total = wt @ sq_test + 1.25 * d
    assert _rel(p.loss(state, data.x_test, data.y_test, wt, 2.5), total) < 1e-13


def _loss_of_weights(weights, x, y, lam, w=None):
    """The loss of THEORY 1 in jnp from the weights (no gradflow code): for ``jax.grad``."""
    h = x
    for m in weights[:-1]:
        h = jax.nn.relu(h @ m.T)
    sq = jnp.sum((h @ weights[-1].T - y) ** 2, axis=1)
    data = jnp.mean(sq) if w is None else jnp.sum(w * sq)
    return data + lam / 2 * sum(jnp.sum(m**2) for m in weights)


def test_plain_velocity_is_minus_the_gradient_of_the_loss():
    """``normalization="none"``: ``velocity = −∇L`` (THEORY 3.1), against ``jax.grad`` of the
    loss written above from the weights, on the training data, and on other data with sample
    weights and another λ."""
    data = _data()
    p = gf.Problem(_net((4, 5)), data, weight_decay=0.2)
    state = p.initial_state()
    weights = tuple(state["w"])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xt, yt = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    wt = jnp.asarray(np.random.default_rng(3).dirichlet(np.ones(5)))
    cases = [
        (p.velocity(state), jax.grad(_loss_of_weights)(weights, x, y, 0.2)),
        (
            p.velocity(state, xt, yt, wt, 1.5),
            jax.grad(_loss_of_weights)(weights, xt, yt, 1.5, wt),
        ),
    ]
    for vel, grad in cases:
        assert len(vel["w"]) == 3
        for v, g in zip(vel["w"], grad, strict=True):
            assert _rel(v, -g) < 1e-12


def test_lm_last_velocity_projects_and_scales_the_gradient():
    """LM-last (THEORY 3.2): ``dρ/dt = −∂L/∂ρ``, ``dV_k/dt = −(g_k − ⟨V_k, g_k⟩ V_k)`` for
    ``k < L`` and that divided by ``ρ²`` for ``V_L`` (unit ``V_k``), from the gradient of the
    loss of the state written here: ``W = (V_1, ..., V_{L−1}, ρ V_L)``, decay ``(λ/2) ρ²``."""
    data = _data()
    lam = 0.3
    p = gf.Problem(_net((4, 5)), data, weight_decay=lam, normalization="lm-last")
    state = p.initial_state()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def loss(s):
        weights = (*s["v"][:-1], s["rho"] * s["v"][-1])
        return _loss_of_weights(weights, x, y, 0.0) + lam / 2 * s["rho"] ** 2

    g = jax.grad(loss)(state)
    rho = float(state["rho"])
    expected = [-(gk - jnp.sum(v * gk) * v) for v, gk in zip(state["v"], g["v"], strict=True)]
    expected[-1] = expected[-1] / rho**2
    # velocity_from_grad is that map applied to a given gradient
    for vel in (p.velocity(state), p.velocity_from_grad(state, g)):
        assert _rel(vel["rho"], -g["rho"]) < 1e-12
        for a, b in zip(vel["v"], expected, strict=True):
            assert _rel(a, b) < 1e-12


def test_outputs_and_features_are_the_network_on_the_given_rows():
    """``outputs`` and ``features`` on the training rows and on other rows equal the NumPy
    network (three classes, chunks of 2 of 7 rows); the state maps back to the weights."""
    data = _data(c=3)
    net = _net((4, 5), c=3)
    p = gf.Problem(net, data, normalization="wn", chunk_size=2)
    state = p.initial_state()
    weights = p.to_weights(state)
    for a, b in zip(weights, net.weights, strict=True):
        assert _rel(a, b) < 1e-15
    for x in (None, data.x_test):
        h, f = _forward(weights, data.x_train if x is None else x)
        assert p.outputs(state, x).shape == f.shape and _rel(p.outputs(state, x), f) < 1e-14
        assert p.features(state, x).shape == h.shape and _rel(p.features(state, x), h) < 1e-14
    # to_state of the weights is the initial state; project keeps a projected state
    again = p.to_state(net.weights)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(state), strict=True):
        assert _rel(a, b) < 1e-15
    lm = gf.Problem(net, data, normalization="lm-all")
    s = lm.initial_state()
    stretched = {"rho": s["rho"], "v": tuple(3.0 * v for v in s["v"])}
    for a, b in zip(lm.project(stretched)["v"], s["v"], strict=True):
        assert _rel(a, b) < 1e-15


def test_a_float32_problem_computes_in_float32_from_any_state_or_weights():
    """``precision="float32"``: data, weights and λ in float32; a float64 state (Diffrax's
    under x64) or float64 sample weights still give float32 outputs, features and loss."""
    data = _data()
    net = _net()  # float64 weights under x64
    p = gf.Problem(net, data, weight_decay=0.5, precision="float32", chunk_size=3)
    assert p.precision == "float32" and p.dtype == jnp.float32
    for a in (p.x_train, p.y_train, p.x_test, p.y_test, p.weight_decay, *p.model.weights):
        assert a.dtype == jnp.float32
    wide = jax.tree.map(lambda a: a.astype(jnp.float64), p.initial_state())
    assert all(w.dtype == jnp.float32 for w in p.network_weights(wide))
    assert p.outputs(wide).dtype == jnp.float32 and p.features(wide).dtype == jnp.float32
    w64 = np.full(7, 1 / 7)
    assert p.data_loss(p.initial_state(), w=w64).dtype == jnp.float32
    # a float32 network in a float64 problem is computed in float64
    narrow = net.with_weights(tuple(w.astype(jnp.float32) for w in net.weights))
    assert all(w.dtype == jnp.float64 for w in gf.Problem(narrow, data).model.weights)
    # and the values are those of the float64 network to float32 rounding
    _, f = _forward(net.weights, data.x_train)
    assert _rel(p.outputs(wide), f) < 1e-5
