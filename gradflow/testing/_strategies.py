"""Hypothesis strategies for gradflow's objects, at a few fixed shapes.

Hypothesis draws *values* — seeds, initialization scales, ``λ``, parametrizations, targets —
never shapes: every architecture of :data:`ARCHITECTURES` has one input shape and one set of
layer shapes, so a property drawn over them compiles a bounded number of JAX programs (one per
architecture and parametrization, not one per example). Keys are drawn as integers, so that a
falsifying example is printed and replayable.

A drawn problem is built from a :class:`ProblemSpec` — architecture, seeds, initialization
scale, ``λ``, parametrization, targets — so that Hypothesis prints a falsifying example as
``build_problem(ProblemSpec(arch='mlp-small', seed=3, ...))``, one line that rebuilds the same
problem when pasted, rather than the problem's arrays.
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

    def __repr__(self) -> str:
        if ARCHITECTURES.get(self.name) is self:
            return repr(self.name)  # a registered architecture: its name rebuilds it
        shape = f"input_shape={self.input_shape}, outputs={self.outputs}"
        return f"Architecture({self.name!r}, {shape})"


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
    # builds: a falsifying example prints as the call build_network(arch, seed, init_scale)
    return st.builds(build_network, st.sampled_from(archs), seeds(), scales)


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
    # builds: a falsifying example prints as the call make_dataset(arch, ..., seed=...)
    return st.builds(
        make_dataset,
        st.just(_resolve(arch)),
        n_train=st.just(n_train),
        n_test=st.just(n_test),
        targets=kinds,
        seed=seeds(),
    )


# ---- problems and states --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """Everything that determines a drawn :class:`gradflow.Problem`; :meth:`build` makes it.

    Its ``repr`` is one line that rebuilds the problem when pasted (a registered
    architecture prints as its name), so a falsifying example of :func:`problems` reads
    ``build_problem(ProblemSpec(arch='mlp-small', seed=3, init_scale=0.5, weight_decay=0.1,
    normalization='wn', targets='labels', data_seed=7, n_train=16, n_test=0))``.

    Attributes:
        arch: an architecture's name in :data:`ARCHITECTURES`, or an :class:`Architecture`.
        seed: the seed of the network's weights (:func:`build_network`).
        init_scale: the multiplier of the He-normal initialization.
        weight_decay: ``λ``.
        normalization: the parametrization's shorthand (:data:`PARAMETRIZATIONS`).
        targets: the target kind of :func:`make_dataset` (:data:`TARGETS`).
        data_seed: the seed of the data set (:func:`make_dataset`).
        n_train, n_test: the data set's sizes.
    """

    arch: str | Architecture = "mlp-small"
    seed: int = 0
    init_scale: float = 1.0
    weight_decay: float = 0.0
    normalization: str = "none"
    targets: str = "labels"
    data_seed: int = 0
    n_train: int = 16
    n_test: int = 0

    def build(self) -> Problem:
        """The problem (deterministic: the same spec gives equal arrays)."""
        arch = _resolve(self.arch)
        data = make_dataset(
            arch,
            n_train=self.n_train,
            n_test=self.n_test,
            targets=self.targets,
            seed=self.data_seed,
        )
        net = build_network(arch, self.seed, self.init_scale)
        return Problem(net, data, weight_decay=self.weight_decay, normalization=self.normalization)


def build_problem(spec: ProblemSpec) -> Problem:
    """``spec.build()``: the function a falsifying example of :func:`problems` prints."""
    return spec.build()


def _arch_key(arch) -> str | Architecture:
    """What a spec stores: the name of a registered architecture, else the object."""
    arch = _resolve(arch)
    return arch.name if ARCHITECTURES.get(arch.name) is arch else arch


def problem_specs(
    arch="mlp-small",
    *,
    normalizations=None,
    weight_decay=None,
    init_scale=None,
    targets=None,
    n_train: int = 16,
    n_test: int = 0,
) -> st.SearchStrategy[ProblemSpec]:
    """:class:`ProblemSpec` s with the options of :func:`problems` (``data`` aside): short,
    printable, replayable descriptions of the problems it draws."""
    return st.builds(
        ProblemSpec,
        arch=_values(arch, st.just("mlp-small")).map(_arch_key),
        seed=seeds(),
        init_scale=_values(init_scale, init_scales()),
        weight_decay=_values(weight_decay, weight_decays()),
        normalization=_values(normalizations, parametrizations()),
        targets=_values(targets, st.just("labels")),
        data_seed=seeds(),
        n_train=st.just(n_train),
        n_test=st.just(n_test),
    )


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
    list to sample or a fixed value.

    Without ``data`` the problems are built from :func:`problem_specs`, and a falsifying
    example prints as ``build_problem(ProblemSpec(...))`` (:class:`ProblemSpec`)."""
    options = dict(
        normalizations=normalizations,
        weight_decay=weight_decay,
        init_scale=init_scale,
        targets=targets,
        n_train=n_train,
        n_test=n_test,
    )
    if data is None:
        return problem_specs(arch, **options).map(build_problem)
    archs = _values(arch, st.just("mlp-small"))
    norms = _values(normalizations, parametrizations())
    lams = _values(weight_decay, weight_decays())
    scales = _values(init_scale, init_scales())

    @st.composite
    def draw(draw_):
        a = _resolve(draw_(archs))
        net = build_network(a, draw_(seeds()), draw_(scales))
        return Problem(net, draw_(data), weight_decay=draw_(lams), normalization=draw_(norms))

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


@dataclasses.dataclass(frozen=True)
class ProblemStateSpec:
    """A :class:`ProblemSpec` and the seed and scale of a state of it (:func:`random_state`);
    :meth:`build` gives the pair ``(problem, state)``."""

    problem: ProblemSpec
    seed: int = 0
    scale: float = 1.0

    def build(self) -> tuple:
        problem = self.problem.build()
        return problem, random_state(problem, self.seed, self.scale)


def build_problem_state(spec: ProblemStateSpec) -> tuple:
    """``spec.build()``: the function a falsifying example of :func:`problem_states` prints."""
    return spec.build()


def problem_states(arch="mlp-small", *, scale=None, **problem_options) -> st.SearchStrategy:
    """Pairs ``(problem, state)``: a problem of :func:`problems` (same options) and a state of
    it (:func:`states`). Without ``data`` a falsifying example prints as
    ``build_problem_state(ProblemStateSpec(problem=ProblemSpec(...), seed=..., scale=...))``."""
    if problem_options.get("data") is None:
        problem_options.pop("data", None)
        return st.builds(
            ProblemStateSpec,
            problem_specs(arch, **problem_options),
            seeds(),
            _values(scale, st.floats(0.5, 2.0)),
        ).map(build_problem_state)
    return problems(arch, **problem_options).flatmap(
        lambda p: st.tuples(st.just(p), states(p, scale))
    )
