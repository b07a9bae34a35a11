"""Full-batch evaluation at scale (docs/scale.md): batch-native networks, chunked evaluation,
precision, the paper's CNN and preprocessing, and the paper-scale scenario."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_config import BASE, cifar_shaped_npz

import gradflow as gf
from gradflow import _loss
from gradflow._cli import main
from gradflow._observables import observe
from gradflow.data import Dataset
from gradflow.diffrax_ext._noise import diffusion
from gradflow.models import MLP, DeepLinear, LocalCNN, paper_cnn
from gradflow.models._cnn import conv_path
from gradflow.scenario import ConfigError, validate

ROOT = Path(__file__).resolve().parent.parent

# ---- batch-native networks ------------------------------------------------------------------

NETS = {
    "mlp": (lambda k: MLP(6, (9, 7), 3, key=k), (6,)),
    "deep-linear": (lambda k: DeepLinear(4, (5,), 2, key=k), (4,)),
    "cnn1d-conv": (
        lambda k: LocalCNN((1, 12), (3,), (3, 6), (2, 1), 2, padding=(1, 0), last="conv", key=k),
        (1, 12),
    ),
    "cnn2d-pad": (
        lambda k: LocalCNN((2, 7, 6), (3,), ((3, 2),), ((2, 1),), 2, padding=((1, 0),), key=k),
        (2, 7, 6),
    ),
    "paper-small": (lambda k: paper_cnn((2, 5, 5), 2, channels=(2, 3), key=k), (2, 5, 5)),
}


#: The convolution paths of ``LocalCNN(conv=...)`` besides ``"auto"``.
CONV_PATHS = ("xla", "im2col", "im2col-cl")


def _rel(a, b, floor: float = 1e-300) -> float:
    """``max |a − b| / max(max |b|, floor)`` over a pytree (a norm-relative difference)."""
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    num = max(float(jnp.max(jnp.abs(x - y))) if x.size else 0.0 for x, y in zip(a, b))
    den = max(float(jnp.max(jnp.abs(y))) if y.size else 0.0 for y in b)
    return num / max(den, floor)


@eqx.filter_jit
def _applications(net, x):
    out = {
        "per_sample": jax.vmap(net.apply, (None, 0))(net.weights, x),
        "batch": net.apply_batch(net.weights, x),
        "features": jax.vmap(net.apply_features, (None, 0))(net.weights, x),
        "features_batch": net.apply_features_batch(net.weights, x),
    }
    out["losses"] = _loss.sample_losses(net, net.weights, x, out["per_sample"] + 1.0)
    if isinstance(net, LocalCNN):  # every convolution path computes the same network
        for path in CONV_PATHS:
            out[path] = eqx.tree_at(lambda m: m.conv, net, path).apply_batch(net.weights, x)
    return out


@pytest.mark.parametrize("name", list(NETS))
def test_apply_batch_is_the_per_sample_network(name):
    make, shape = NETS[name]
    net = make(jax.random.PRNGKey(0))
    out = _applications(net, jax.random.normal(jax.random.PRNGKey(1), (5, *shape)))
    assert _rel(out["batch"], out["per_sample"]) < 1e-13
    assert _rel(out["features_batch"], out["features"]) < 1e-13
    np.testing.assert_allclose(out["losses"], out["per_sample"].shape[1], rtol=1e-12)
    for path in CONV_PATHS:
        if path in out:
            assert _rel(out[path], out["per_sample"]) < 1e-13


@pytest.mark.parametrize(
    "name", ["cnn1d-conv", "cnn2d-pad", pytest.param("paper-small", marks=pytest.mark.long)]
)
def test_conv_paths_have_the_same_gradient(name):
    """The loss's gradient (reverse mode) and a Hessian-vector product (forward over reverse)
    agree across the convolution paths, in float64 and float32 (to its rounding)."""
    make, shape = NETS[name]
    net = make(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, *shape))
    y = jax.random.normal(jax.random.PRNGKey(2), (6, net.weights[-1].shape[0]))
    for dtype, tol in ((jnp.float64, 1e-12), (jnp.float32, 1e-5)):
        ws = tuple(w.astype(dtype) for w in net.weights)
        xs, ys = x.astype(dtype), y.astype(dtype)
        out = {}
        for path in CONV_PATHS:
            model = eqx.tree_at(lambda m: m.conv, net, path)

            def loss(w, model=model, xs=xs, ys=ys):
                return _loss.data_loss(model, w, xs, ys)

            def grad_and_hvp(w, loss=loss):
                return jax.grad(loss)(w), jax.jvp(jax.grad(loss), (w,), (w,))[1]

            # one compiled program per path and dtype (op by op, each primitive of the
            # backward passes was dispatched and compiled on its own: slower)
            out[path] = jax.jit(grad_and_hvp)(ws)
        for path in CONV_PATHS[1:]:
            assert _rel(out[path], out["xla"]) < tol, (dtype, path)
    auto = "im2col-cl" if jax.default_backend() == "cpu" else "xla"  # as measured (docs/scale.md)
    assert net.conv == "auto" and conv_path(jnp.float32) == conv_path(jnp.float64) == auto


def test_paper_cnn_geometry():
    net = eqx.filter_eval_shape(lambda k: paper_cnn((3, 32, 32), 1, key=k), jax.random.PRNGKey(0))
    assert [w.shape for w in net.weights] == [
        (32, 3, 3, 3),
        (64, 32, 3, 3),
        (128, 64, 3, 3),
        (1, 2048),
    ]
    assert sum(np.prod(w.shape) for w in net.weights) == 95_072 and net.degree == 4
    assert net.spatial[:3] == ((16, 16), (8, 8), (4, 4)) and net.paddings == ((1, 1),) * 3
    ten = eqx.filter_eval_shape(lambda k: paper_cnn((3, 32, 32), 10, key=k), jax.random.PRNGKey(0))
    assert ten.weights[-1].shape == (10, 2048)


def test_zero_padding_is_a_convolution_of_the_padded_input():
    """padding=p equals VALID on the input padded by p zeros (so it stays homogeneous)."""
    k = jax.random.PRNGKey(2)
    pad = LocalCNN((2, 6, 5), (3,), 3, 1, 1, padding=1, key=k)
    valid = LocalCNN((2, 8, 7), (3,), 3, 1, 1, key=k)
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 2, 6, 5))
    xp = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert pad.spatial[0] == (6, 5)
    np.testing.assert_allclose(
        pad.apply_features_batch(pad.weights, x), valid.apply_features_batch(pad.weights, xp)
    )


# ---- chunked == unchunked -------------------------------------------------------------------

SHAPES = {  # network, input shape, C, normalization
    "mlp-lm-last": (lambda k: MLP(5, (7,), 3, key=k), (5,), 3, "lm-last"),
    "cnn1d-pad-none": (
        lambda k: LocalCNN((2, 9), (3,), 3, 2, 1, padding=1, key=k),
        (2, 9),
        1,
        "none",
    ),
}
PAPER_LIKE = (lambda k: paper_cnn((1, 6, 6), 3, channels=(2, 3), key=k), (1, 6, 6), 3, "wn")
#: Under Hypothesis: the standard observables (train and test) and the per-sample margins.
#: ``nc`` reads the data through ``problem.features`` (checked below for a 2-D CNN, with
#: ``rank`` and ``weights``, which read the weights only).
DATA_GROUPS = ("margins",)
ALL_GROUPS = ("nc", "rank", "margins", "weights")


def _data(n, shape, c, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % max(c, 2)
    y = np.where(labels[:, None] == 1, 1.0, -1.0) if c == 1 else np.eye(c)[labels]
    x = rng.standard_normal((n, *shape))
    xt = rng.standard_normal((max(2, n // 2), *shape))
    return Dataset("t", x, y, xt, y[: len(xt)])


@eqx.filter_jit
def _everything(problem, state, xi, groups):
    """Every full-data quantity: loss, velocity, the SDE's VJP, observables (standard + groups)."""
    return {
        "loss": problem.loss(state),
        "velocity": problem.velocity(state),
        "vjp": diffusion(problem, state, xi, 0.3),
        "observe": observe(problem, state, groups),
    }


def _check_chunked(spec, n, k, groups=DATA_GROUPS):
    make, shape, c, norm = spec
    net = make(jax.random.PRNGKey(n))
    ds = _data(n, shape, c, seed=k)
    whole = gf.Problem(net, ds, weight_decay=0.05, normalization=norm, chunk_size=10 * n)
    parts = gf.Problem(net, ds, weight_decay=0.05, normalization=norm, chunk_size=k)
    assert parts.chunk_size == k and n % k != 0
    state = whole.initial_state()
    xi = jax.random.normal(jax.random.PRNGKey(k), (n,))
    a, b = _everything(parts, state, xi, groups), _everything(whole, state, xi, groups)
    assert "test_acc" in b["observe"] and "margins" in b["observe"]
    for key in ("loss", "velocity", "vjp"):
        assert _rel(a[key], b[key]) < 1e-12, key
    assert set(a["observe"]) == set(b["observe"])
    for key, value in b["observe"].items():
        # relative to max(|value|, 1): the observables are O(1), and some vanish exactly
        # (two classes' equiangularity |cos + 1|), where a relative error means nothing
        assert _rel(a["observe"][key], value, floor=1.0) < 1e-12, key


@pytest.mark.parametrize("name", list(SHAPES))
@settings(max_examples=3, deadline=None)
@given(n=st.sampled_from([7, 11]), data=st.data())
def test_chunked_equals_unchunked(name, n, data):
    """Loss, velocity, the SDE's VJP and the observables (the standard ones, train and test, and
    the margins), chunked, equal the unchunked values to 1e-12 (relative), for chunk sizes that
    do not divide N (N prime, 2 <= k < N: the last chunk overlaps the one before)."""
    _check_chunked(SHAPES[name], n, data.draw(st.integers(2, n - 1), label="chunk_size"))


def test_chunked_equals_unchunked_2d_padded_wn():
    """The same for a 2-D zero-padded CNN (the paper's kind) under weight normalization, with
    every observable group (nc, rank, margins, weights)."""
    _check_chunked(PAPER_LIKE, 11, 4, ALL_GROUPS)


def test_a_wrong_overlap_would_be_caught():
    """Positive control: counting the samples that the last chunk shares with the one before
    twice (N = 10, k = 4: chunks [0, 4), [4, 8), [6, 10)) moves the loss far beyond 1e-12."""
    make, shape, c, _ = SHAPES["mlp-lm-last"]
    p = gf.Problem(make(jax.random.PRNGKey(0)), _data(10, shape, c, 0), chunk_size=4)
    w = p.network_weights(p.initial_state())
    losses = _loss.sample_losses(p.model, w, p.x_train, p.y_train)
    right = p.data_loss(p.initial_state())
    assert _rel(right, jnp.mean(losses)) < 1e-14
    assert _rel(jnp.mean(losses) + jnp.sum(losses[6:8]) / 10, right) > 1e-3


def test_chunks_bound_the_memory_of_a_gradient():
    """XLA's temporaries of one velocity shrink with the chunk: O(k · activations + P)."""
    x = np.random.default_rng(0).standard_normal((2000, 64))
    ds = Dataset("r", x, np.sign(x[:, :1]))
    net = MLP(64, (256, 256), 1, key=jax.random.PRNGKey(0))

    def temp_bytes(k):
        p = gf.Problem(net, ds, chunk_size=k)
        dyn, static = eqx.partition(p, eqx.is_array)
        fn = jax.jit(lambda d, s: eqx.combine(d, static).velocity(s))
        return fn.lower(dyn, p.initial_state()).compile().memory_analysis().temp_size_in_bytes

    whole, chunked = temp_bytes(2000), temp_bytes(97)
    assert chunked < whole / 5, (whole, chunked)


def test_default_chunk_size_follows_the_memory_budget():
    net = eqx.filter_eval_shape(lambda k: paper_cnn((3, 32, 32), 1, key=k), jax.random.PRNGKey(0))
    assert net.activation_floats == 32 * 256 + 64 * 64 + 128 * 16 + 1  # the layers' outputs
    budget = 256 * 2**20  # as on a GPU
    k_max = budget // (net.activation_floats * 8)  # 2340 in float64
    k = _loss.default_chunk_size(net, 10**6, 8, budget)
    assert k * net.activation_floats * 8 <= budget
    assert k == -(-(10**6) // -(-(10**6) // k_max)) and k_max - k < 10**6 / k_max
    # balanced: N = 4001 in float64 (k_max = 2340) is two chunks of 2001, not 2340 + 1661
    assert _loss.default_chunk_size(net, 4001, 8, budget) == 2001
    assert _loss.default_chunk_size(net, 2341, 8, budget) == 1171
    # the documented default (docs/scale.md) on a CPU, by hand: 32 MiB / (14,337 floats × 8 B)
    # = 292.6 -> k_max = 292; N = 4,000 takes ⌈4000/292⌉ = 14 chunks of ⌈4000/14⌉ = 286
    # (float32: k_max = 585, 7 chunks of 572); a GPU keeps 256 MiB (the case above)
    if jax.default_backend() == "cpu":
        assert _loss.default_chunk_size(net, 4000, 8) == 286
        assert _loss.default_chunk_size(net, 4000, 4) == 572
    else:
        assert _loss.default_chunk_size(net, 4001, 8) == 2001
    ds = _data(12, (5,), 1, 0)
    assert gf.Problem(MLP(5, (4,), 1, key=jax.random.PRNGKey(0)), ds).chunk_size == 12


# ---- precision ------------------------------------------------------------------------------


@eqx.filter_jit
def _loss_velocity_outputs(problem, state):
    wide = jax.tree.map(lambda a: a.astype(jnp.float64), state)  # Diffrax's state under x64
    return problem.loss(state), problem.velocity(state), problem.outputs(wide)


def test_precision_casts_data_weights_and_computation():
    ds = _data(20, (5,), 1, 0)
    net = MLP(5, (6,), 1, key=jax.random.PRNGKey(0))
    p32 = gf.Problem(net, ds, weight_decay=0.1, precision="float32", chunk_size=7)
    p64 = gf.Problem(net, ds, weight_decay=0.1, precision="float64")
    assert p64.precision == "float64" and gf.Problem(net, ds).precision == "float64"  # x64 on
    assert p32.x_train.dtype == jnp.float32 and p32.model.weights[0].dtype == jnp.float32
    assert p32.describe()["precision"] == "float32" and p32.describe()["chunk_size"] == 7
    loss, v32, f = _loss_velocity_outputs(p32, p32.initial_state())
    assert loss.dtype == jnp.float32 and jax.tree.leaves(v32)[0].dtype == jnp.float32
    # a float64 state (Diffrax's, under x64) still runs the network in float32
    assert f.dtype == jnp.float32
    # float32 agrees with float64 to float32 rounding (docs/scale.md: a 1e-5 relative floor)
    _, v64, _ = _loss_velocity_outputs(p64, p64.initial_state())
    assert 1e-9 < _rel(v32, v64) < 1e-5


def test_float64_needs_x64():
    ds = _data(6, (3,), 1, 0)
    net = MLP(3, (2,), 1, key=jax.random.PRNGKey(0))
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError) as err:
            gf.Problem(net, ds, precision="float64")
    finally:
        jax.config.update("jax_enable_x64", True)
    assert str(err.value).startswith("Problem: precision='float64' is not allowed; it needs")


# ---- bad values: one line naming them ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"chunk_size": 0}, "Problem: chunk_size=0 is not allowed; use an integer >= 1"),
        ({"chunk_size": -3}, "Problem: chunk_size=-3 is not allowed"),
        ({"chunk_size": 2.5}, "Problem: chunk_size=2.5 is not allowed"),
        ({"chunk_size": True}, "Problem: chunk_size=True is not allowed"),
        ({"chunk_size": "8"}, "Problem: chunk_size='8' is not allowed"),
        ({"precision": "float16"}, "Problem: precision='float16' is not allowed; use 'float32'"),
        ({"precision": "double"}, "Problem: precision='double' is not allowed"),
    ],
)
def test_problem_bad_values(kwargs, start):
    ds = _data(6, (3,), 1, 0)
    with pytest.raises(ValueError) as err:
        gf.Problem(MLP(3, (2,), 1, key=jax.random.PRNGKey(0)), ds, **kwargs)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"padding": -1}, "LocalCNN: padding=[-1] is not allowed; use integers >= 0"),
        ({"padding": [1, 2]}, "LocalCNN: padding has 2 entries; it needs one per"),
        ({"padding": [(1, 0)]}, "LocalCNN: padding=[(1, 0)] is not allowed; use integers >= 0"),
        ({"padding": 1.5}, "LocalCNN: padding=1.5 is not allowed"),
        ({"conv": "fft"}, "LocalCNN: conv='fft' is not allowed; use one of 'auto', 'xla'"),
    ],
)
def test_model_bad_padding(kwargs, start):
    with pytest.raises((ValueError, TypeError)) as err:
        LocalCNN((1, 8), (2,), (3,), (1,), 1, key=jax.random.PRNGKey(0), **kwargs)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


def _scenario(**problem_or_model):
    table = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for dotted, value in problem_or_model.items():
        section, key = dotted.split("__")
        table[section] = {**table[section], key: value}
    return table


@pytest.mark.parametrize(
    ("change", "start"),
    [
        ({"problem__chunk_size": 0}, "problem.chunk_size=0 is not allowed; use an integer >= 1"),
        ({"problem__chunk_size": 1.5}, "problem.chunk_size=1.5 is not allowed"),
        ({"problem__precision": "half"}, "problem.precision='half' is not allowed; use one of"),
        (
            {"model__kind": "cnn", "model__padding": -1},
            "model.padding=-1 is not allowed; use an integer >= 0",
        ),
    ],
)
def test_scenario_bad_values(change, start):
    table = _scenario(**change)
    if table["model"]["kind"] == "cnn":
        table["model"] = {"kind": "cnn", "channels": [2], "kernel_sizes": 3, **table["model"]}
        table["model"].pop("widths")
        table["data"] = {"name": "digits", "image": True, "n_train": 20, "n_test": 0}
    with pytest.raises(ConfigError) as err:
        validate(table)
    assert str(err.value).startswith(start) and "\n" not in str(err.value)


def test_scenario_keys_reach_the_problem():
    from gradflow.scenario._run import build_problem

    table = _scenario(problem__chunk_size=5, problem__precision="float32")
    table["model"] = {"kind": "cnn", "channels": [3], "kernel_sizes": 3, "padding": 1}
    table["data"] = {"name": "digits", "image": True, "n_train": 20, "n_test": 0}
    problem = build_problem(validate(table))
    assert problem.chunk_size == 5 and problem.precision == "float32"
    assert problem.model.paddings == ((1, 1),) and problem.model.spatial[0] == (8, 8)


# ---- the paper's preprocessing and scenario -------------------------------------------------


@pytest.mark.long
def test_paper_scenario_runs_on_a_cifar_shaped_npz(tmp_path):
    path = cifar_shaped_npz(tmp_path / "cifar.npz")
    out = tmp_path / "out"
    scenario = str(ROOT / "scenarios" / "paper_cifar_binary.toml")
    args = ["run", scenario, "--fast", "--quiet", "--out", str(out), "--set", f"data.path={path}"]
    assert main(args) == 0
    flow = gf.load(out / "paper_cifar_binary__flow.nc")
    sgd = gf.load(out / "paper_cifar_binary__sgd_lr0.01_b8.nc")
    assert flow.config["problem"]["precision"] == "float32"
    assert flow.config["problem"]["model"] == "LocalCNN"
    for traj in (flow, sgd):
        assert np.all(np.isfinite(traj["loss"])) and np.isclose(traj.t[-1], 0.04)
