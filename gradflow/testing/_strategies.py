"""Hypothesis strategies for gradflow's objects, at a few fixed shapes.

Hypothesis draws *values* — seeds, initialization scales, ``λ``, parametrizations, targets —
never shapes: every architecture of :data:`ARCHITECTURES` has one input shape and one set of
layer shapes, so a property drawn over them compiles a bounded number of JAX programs (one per
architecture and parametrization, not one per example). Keys are drawn as integers, so that a
falsifying example is printed and replayable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from .._parametrization import NORMALIZATIONS
from .._problem import Problem
from ..data import Dataset
from ..data import load as load_data
from ..models import MLP, DeepLinear, LocalCNN

#: The parametrizations' shorthands (THEORY 3): "none", "lm-all", "lm-last", "wn".
PARAMETRIZATIONS = NORMALIZATIONS
#: Target kinds that :func:`datasets` makes (THEORY 1, 4.8).
TARGETS = ("labels", "centred", "regression")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network of fixed shapes: ``build(key, init_scale)`` makes one, with inputs of shape
    ``input_shape`` (one sample) and ``outputs`` outputs."""

    name: str
    build: Callable
    input_shape: tuple[int, ...]
    outputs: int

    def __call__(self, key, init_scale: float = 1.0):
        return self.build(key, init_scale)


def _arch(name, build, input_shape, outputs) -> Architecture:
    return Architecture(name, build, tuple(input_shape), outputs)


#: The architectures the strategies draw from, by name: MLPs (ReLU and linear activation),
#: deep linear networks and 1-D/2-D local CNNs with dense and convolutional last layers.
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        _arch("mlp", lambda k, s: MLP(6, (9, 7), 3, init_scale=s, key=k), (6,), 3),
        _arch("mlp-binary", lambda k, s: MLP(5, (8,), 1, init_scale=s, key=k), (5,), 1),
        _arch("mlp-small", lambda k, s: MLP(5, (6, 6), 1, init_scale=s, key=k), (5,), 1),
        _arch(
            "mlp-linear",
            lambda k, s: MLP(5, (6, 4), 1, activation="linear", init_scale=s, key=k),
            (5,),
            1,
        ),
        _arch("deep-linear", lambda k, s: DeepLinear(4, (5, 6), 2, init_scale=s, key=k), (4,), 2),
        _arch(
            "cnn1d-dense",
            lambda k, s: LocalCNN((2, 17), (3, 4), (3, 2), (2, 2), 2, init_scale=s, key=k),
            (2, 17),
            2,
        ),
        _arch(
            "cnn1d-overlap-conv",
            lambda k, s: LocalCNN(
                (1, 12), (3,), (4, 5), (2, 1), 3, last="conv", init_scale=s, key=k
            ),
            (1, 12),
            3,
        ),
        _arch(
            "cnn2d-conv",
            lambda k, s: LocalCNN((1, 8, 8), (3, 3), 2, 2, 2, last="conv", init_scale=s, key=k),
            (1, 8, 8),
            2,
        ),
        _arch(
            "cnn2d-dense",
            lambda k, s: LocalCNN((2, 7, 6), (3,), ((3, 2),), ((2, 1),), 1, init_scale=s, key=k),
            (2, 7, 6),
            1,
        ),
    )
}


@functools.cache
def _template(arch: Architecture):
    """The network's structure (shapes only: nothing is drawn or compiled)."""
    return eqx.filter_eval_shape(arch.build, jax.random.PRNGKey(0), 1.0)


def build_network(arch, seed: int, init_scale: float = 1.0):
    """A network of ``arch`` whose weights are He-normal, ``N(0, 2 init_scale² / fan_in)``,
    drawn with NumPy from ``seed``: no JAX random number generation, so drawing networks of
    a new shape compiles nothing. (``arch(key, init_scale)`` is the model's own
    initialization.)"""
    template = _template(_resolve(arch))
    rng = np.random.default_rng(seed)
    dtype = jnp.result_type(float)
    weights = tuple(
        jnp.asarray(
            init_scale * math.sqrt(2.0 / math.prod(w.shape[1:])) * rng.standard_normal(w.shape),
            dtype,
        )
        for w in template.weights
    )
    return eqx.tree_at(lambda m: m.weights, template, weights)


def architecture(
    name: str,
    build: Callable,
    input_shape: Sequence[int],
    outputs: int,
) -> Architecture:
    """A user architecture for the strategies: ``build(key, init_scale) -> network``."""
    return _arch(name, build, input_shape, outputs)


def _resolve(arch) -> Architecture:
    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, str) and arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    raise ValueError(
        f"gradflow.testing: architecture={arch!r} is not allowed; use one of "
        + ", ".join(map(repr, ARCHITECTURES))
        + " or a gradflow.testing.Architecture"
    )


def _values(value, default):
    """A strategy from ``value``: a strategy as is, a list/tuple sampled, a scalar fixed."""
    if value is None:
        return default
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (list, tuple)):
        return st.sampled_from(list(value))
    return st.just(value)


# ---- values ---------------------------------------------------------------------------------


def seeds() -> st.SearchStrategy[int]:
    """PRNG seeds (integers, so that a failing example is replayable)."""
    return st.integers(0, 2**16)


def init_scales(low: float = 0.25, high: float = 2.0) -> st.SearchStrategy[float]:
    """Multipliers of the He-normal initialization."""
    return st.floats(low, high)


def weight_decays(values: Sequence[float] = (0.0, 1e-3, 0.1)) -> st.SearchStrategy[float]:
    """``λ``: a few values, 0 included (sampled, so that each is hit with few examples)."""
    return st.sampled_from(list(values))


def parametrizations(names: Sequence[str] = PARAMETRIZATIONS) -> st.SearchStrategy[str]:
    """Parametrization shorthands (THEORY 3)."""
    return st.sampled_from(list(names))


# ---- networks, inputs, data -----------------------------------------------------------------


def networks(architectures=None, init_scale=None) -> st.SearchStrategy:
    """Networks of the given architectures (names or :class:`Architecture`; default all of
    :data:`ARCHITECTURES`), with a drawn seed and initialization scale (a strategy, a list to
    sample or a number; default :func:`init_scales`): :func:`build_network`."""
    archs = [_resolve(a) for a in (architectures or list(ARCHITECTURES))]
    scales = _values(init_scale, init_scales())

    @st.composite
    def draw(draw_):
        return build_network(draw_(st.sampled_from(archs)), draw_(seeds()), draw_(scales))

    return draw()


def input_shape(model) -> tuple[int, ...]:
    """The shape of one input of a gradflow network."""
    if isinstance(model, LocalCNN):
        return tuple(model.in_shape)
    return (int(model.weights[0].shape[1]),)


def inputs(model, n: int | None = None, scale=None) -> st.SearchStrategy:
    """Gaussian inputs for ``model``: one sample (``n=None``) or ``n`` of them, times a drawn
    scale (default 1)."""
    shape = input_shape(model) if n is None else (n, *input_shape(model))
    scales = _values(scale, st.just(1.0))

    @st.composite
    def draw(draw_):
        x = np.random.default_rng(draw_(seeds())).standard_normal(shape)  # NumPy: no compile
        return jnp.asarray(draw_(scales) * x)

    return draw()


@eqx.filter_jit
def _apply_batch(model, x):
    return jax.vmap(model)(x)


def make_dataset(
    arch,
    *,
    n_train: int = 16,
    n_test: int = 0,
    targets: str = "labels",
    seed: int = 0,
) -> Dataset:
    """A Gaussian-mixture data set for ``arch`` (its input shape; two classes for one output,
    ``arch.outputs`` classes otherwise), deterministic in ``seed``.

    ``targets``: ``"labels"`` (±1 for two classes, one-hot otherwise: THEORY 1),
    ``"centred"`` (one-hot − 1/C, THEORY 4.8) or ``"regression"`` (the outputs of a random
    teacher of the same architecture: real targets that the network can fit exactly).

    The data set's ``options`` record neither the seed nor the target kind: they are static
    in a :class:`gradflow.Problem`, so problems that differ only in their drawn data compile
    once.
    """
    arch = _resolve(arch)
    if targets not in TARGETS:
        raise ValueError(
            f"gradflow.testing: targets={targets!r} is not allowed; use one of "
            + ", ".join(map(repr, TARGETS))
        )
    classes = 2 if arch.outputs == 1 else arch.outputs
    data = load_data(
        "gaussian-mixture",
        n_train=n_train,
        n_test=n_test,
        dim=math.prod(arch.input_shape),
        classes=classes,
        centre_targets=targets == "centred" and classes > 2,
        seed=seed,
    )

    def shaped(x):
        return None if x is None else np.reshape(x, (x.shape[0], *arch.input_shape))

    x_train, x_test = shaped(data.x_train), shaped(data.x_test)
    y_train, y_test = data.y_train, data.y_test
    if arch.outputs == 2:  # two classes on two outputs: one-hot rather than ±1
        centre = 0.5 if targets == "centred" else 0.0

        def two(y):
            return None if y is None else np.concatenate([(1 - y) / 2, (1 + y) / 2], 1) - centre

        y_train, y_test = two(y_train), two(y_test)
    if targets == "regression":
        teacher = build_network(arch, seed + 1)
        y_train = np.asarray(_apply_batch(teacher, jnp.asarray(x_train)))
        y_test = None if x_test is None else np.asarray(_apply_batch(teacher, jnp.asarray(x_test)))
    # The options are static in a Problem: leaving the seed out of them lets problems that
    # differ only in their drawn data share one compiled program.
    options = {"generator": "gradflow.testing", "architecture": arch.name}
    options.update(n_train=n_train, n_test=n_test)
    return dataclasses.replace(
        data,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        options=options,
    )


def datasets(arch, *, n_train: int = 16, n_test: int = 0, targets=None) -> st.SearchStrategy:
    """Data sets of :func:`make_dataset` for ``arch`` with a drawn seed and target kind
    (``targets``: a kind, a list of kinds or a strategy; default ``"labels"``)."""
    kinds = _values(targets, st.just("labels"))

    @st.composite
    def draw(draw_):
        return make_dataset(
            arch, n_train=n_train, n_test=n_test, targets=draw_(kinds), seed=draw_(seeds())
        )

    return draw()


# ---- problems and states --------------------------------------------------------------------


def problems(
    arch="mlp-small",
    *,
    normalizations=None,
    weight_decay=None,
    init_scale=None,
    targets=None,
    n_train: int = 16,
    n_test: int = 0,
    data=None,
) -> st.SearchStrategy[Problem]:
    """:class:`gradflow.Problem` s: a network of ``arch`` (a name or an
    :class:`Architecture`, a list of them to sample, or a strategy of them) with a drawn seed
    and scale (default :func:`init_scales`), a data set for it (:func:`datasets` with
    ``n_train``, ``n_test``, ``targets``; or the strategy ``data``), ``λ`` (default
    :func:`weight_decays`) and a parametrization (default all four). Each of
    ``normalizations``, ``weight_decay``, ``init_scale`` and ``targets`` takes a strategy, a
    list to sample or a fixed value."""
    archs = _values(arch, st.just("mlp-small"))
    norms = _values(normalizations, parametrizations())
    lams = _values(weight_decay, weight_decays())
    scales = _values(init_scale, init_scales())

    @st.composite
    def draw(draw_):
        a = _resolve(draw_(archs))
        strategy = data or datasets(a, n_train=n_train, n_test=n_test, targets=targets)
        net = build_network(a, draw_(seeds()), draw_(scales))
        return Problem(net, draw_(strategy), weight_decay=draw_(lams), normalization=draw_(norms))

    return draw()


def random_state(problem, seed: int, scale: float = 1.0):
    """A state of ``problem``'s parametrization at random weights: each ``W_k`` Gaussian with
    the Frobenius norm of the model's ``W_k`` times ``scale``; the WN directions ``v_k`` get
    random norms in ``[0.5, 2]`` (the flow keeps them, THEORY 3.3)."""
    rng = np.random.default_rng(seed)  # NumPy draws: no compilation per example
    weights = []
    for w in problem.model.weights:
        z = rng.standard_normal(w.shape)
        weights.append(
            jnp.asarray(scale * float(jnp.linalg.norm(w)) * z / np.linalg.norm(z), w.dtype)
        )
    state = problem.to_state(tuple(weights))
    if problem.normalization == "wn":
        radii = rng.uniform(0.5, 2.0, problem.num_layers)
        state = {**state, "v": tuple(r * v for r, v in zip(radii, state["v"]))}
    return state


def states(problem, scale=None) -> st.SearchStrategy:
    """States of ``problem`` (:func:`random_state` with a drawn seed and scale, default in
    ``[0.5, 2]``)."""
    scales = _values(scale, st.floats(0.5, 2.0))

    @st.composite
    def draw(draw_):
        return random_state(problem, draw_(seeds()), draw_(scales))

    return draw()


def problem_states(arch="mlp-small", *, scale=None, **problem_options) -> st.SearchStrategy:
    """Pairs ``(problem, state)``: a problem of :func:`problems` (same options) and a state of
    it (:func:`states`)."""
    return problems(arch, **problem_options).flatmap(
        lambda p: st.tuples(st.just(p), states(p, scale))
    )
