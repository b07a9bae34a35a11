"""The registries a scenario is built from: model kinds and dynamics.

A scenario names its network by ``model.kind`` and its runs by their sections (``[flow]``,
``[sde]``, ``[gd]``, ``[sgd]``); each name resolves here, once, to an object:

* :data:`MODELS`: kind -> :class:`ModelKind`, its own ``[model]`` keys (check, default) and the
  builder of the network;
* :data:`DYNAMICS`: section -> :class:`DynamicsKind`, its section's keys (check, default; the
  defaults read from the tables of :mod:`gradflow.dynamics`) and the builder of the call of
  ``gf.flow`` / ``gf.sgd`` that makes one run (:func:`call`).

The schema (:mod:`._schema`) is derived from these tables; the data sets' registry is
:mod:`gradflow.data` (``gf.data.names()``, ``gf.data.options(name)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import jax

from .._validate import (
    BOOLEAN,
    DTMIN,
    KERNEL,
    POSITIVE,
    REQUIRED,
    WIDTHS,
    Check,
    choice,
    integer,
    number,
    one_or_many,
)
from ..diffrax_ext import SAMPLING, SGDNoise
from ..dynamics import ODE_DEFAULTS, SDE_DEFAULTS, SDE_SOLVERS, SGD_DEFAULTS, SOLVERS, flow, sgd
from ..models import MLP, DeepLinear, LocalCNN, paper_cnn

__all__ = ["MODELS", "DYNAMICS", "ModelKind", "DynamicsKind", "call"]

Keys = dict[str, tuple[Check | None, Any]]

# ---- models -----------------------------------------------------------------------------


def _is_int(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _padding(v) -> bool:
    return _is_int(v, 0) or (
        isinstance(v, list)
        and bool(v)
        and all(
            _is_int(e, 0) or (isinstance(e, list) and bool(e) and all(_is_int(i, 0) for i in e))
            for e in v
        )
    )


PADDING = Check(
    _padding,
    "use an integer >= 0, or a list with one integer >= 0 (or per-axis list of them) per "
    "convolutional layer",
)
_WIDTHS = (WIDTHS, REQUIRED)


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One ``model.kind``: its own keys (``key -> (check, default)``, besides ``kind``,
    ``init_scale`` and ``seed``), ``build(model, dataset, key) -> network`` and, for a fixed
    convolutional geometry, that geometry (checked against the data before building)."""

    keys: Keys
    build: Callable
    geometry: dict | None = None


def _mlp(m, data, key):
    n_in = math.prod(data.input_shape)
    return MLP(
        n_in,
        m["widths"],
        data.num_outputs,
        activation=m["activation"],
        init_scale=m["init_scale"],
        key=key,
    )


def _deep_linear(m, data, key):
    n_in = math.prod(data.input_shape)
    return DeepLinear(n_in, m["widths"], data.num_outputs, init_scale=m["init_scale"], key=key)


def _cnn(m, data, key):
    return LocalCNN(
        data.input_shape,
        m["channels"],
        m["kernel_sizes"],
        m["strides"],
        data.num_outputs,
        padding=m["padding"],
        last=m["last"],
        init_scale=m["init_scale"],
        key=key,
    )


def _paper_cnn(m, data, key):
    return paper_cnn(data.input_shape, data.num_outputs, init_scale=m["init_scale"], key=key)


#: kind -> :class:`ModelKind`. ``paper-cnn`` is gradflow.models.paper_cnn (no further keys).
MODELS = MappingProxyType(
    {
        "mlp": ModelKind(
            {"widths": _WIDTHS, "activation": (choice(("relu", "linear")), "relu")}, _mlp
        ),
        "deep-linear": ModelKind({"widths": _WIDTHS}, _deep_linear),
        "cnn": ModelKind(
            {
                "channels": (WIDTHS, REQUIRED),
                "kernel_sizes": (KERNEL, REQUIRED),
                "strides": (KERNEL, 1),
                "padding": (PADDING, 0),
                "last": (choice(("dense", "conv")), "dense"),
            },
            _cnn,
        ),
        "paper-cnn": ModelKind(
            {},
            _paper_cnn,
            {
                "channels": (32, 64, 128),
                "kernel_sizes": 3,
                "strides": 2,
                "padding": 1,
                "last": "dense",
            },
        ),
    }
)


def build_network(model: dict, dataset):
    """The network of a validated ``[model]`` table on ``dataset``."""
    return MODELS[model["kind"]].build(model, dataset, jax.random.PRNGKey(model["seed"]))


# ---- dynamics ---------------------------------------------------------------------------

#: PRNG seeds: JAX keys take a signed 64-bit integer.
SEED = integer(0, 2**63 - 1)
#: the SDE's one solver; the message names the removed adaptive one
SDE_SOLVER = Check(
    lambda v: isinstance(v, str) and v in SDE_SOLVERS,
    "use one of "
    + ", ".join(map(repr, SDE_SOLVERS))
    + " (fixed-step Euler–Maruyama, step dt0): 'euler-adaptive' was removed, its stationary "
    "covariance was ~10% too large (benchmarks/README.md, 'SDE solvers')",
    options=SDE_SOLVERS,
)
_ON_MAX_STEPS = (choice(("raise", "truncate")), "raise")
_RUN: Keys = {"enabled": (BOOLEAN, True), "t1": (POSITIVE, None), "save_every": (POSITIVE, None)}
_LR = (one_or_many(POSITIVE), REQUIRED)
_STEPS: Keys = {
    "lr": _LR,
    "momentum": (number(ge=0, lt=1), SGD_DEFAULTS["momentum"]),
    "nesterov": (BOOLEAN, SGD_DEFAULTS["nesterov"]),
}
_SAMPLES: Keys = {
    "sampling": (choice(SAMPLING), SGD_DEFAULTS["sampling"]),
    "seeds": (integer(1), 1),
    "seed": (SEED, 0),
}


@dataclasses.dataclass(frozen=True)
class DynamicsKind:
    """One dynamics of a scenario: its section's keys (``key -> (check, default)``) and
    ``arguments(options, key) -> (entry, kwargs)``, the call ``entry(problem, **kwargs)`` of
    one run (``options``: the run's validated options, ``key``: its PRNG key). ``solved``: the
    run is integrated by a differential-equation solver (``diffeqsolve``: a vmapped solve steps
    until its slowest member is done); ``metered``: its batched plan reports progress;
    ``checkpointable(options)``: whether the run may keep a checkpoint."""

    keys: Keys
    arguments: Callable[[dict, Any], tuple[Callable, dict]]
    solved: bool = False
    metered: bool = False
    checkpointable: Callable[[dict], bool] = lambda options: True


def _flow_arguments(options, key):
    return flow, dict(options)


def _sde_arguments(options, key):
    opts = dict(options)
    noise = SGDNoise(opts.pop("lr"), opts.pop("batch_size"), opts.pop("sampling"))
    return flow, {"noise": noise, "key": key, **opts}


def _sde_checkpointable(options) -> bool:
    """A fixed-step SDE checkpoints only with save times at least one step apart
    (gradflow/dynamics/_sde.py); such a run then runs without a checkpoint."""
    dt0 = options.get("dt0") or options["lr"] / SDE_DEFAULTS["steps_per_lr"]
    return options.get("save_every") is None or options["save_every"] >= dt0


def _sgd_arguments(options, key):
    return sgd, {"key": key, **options}


#: section -> :class:`DynamicsKind`, in the order a scenario's runs are made.
DYNAMICS = MappingProxyType(
    {
        "flow": DynamicsKind(
            {
                **_RUN,
                "solver": (choice(SOLVERS), ODE_DEFAULTS["solver"]),
                "rtol": (POSITIVE, ODE_DEFAULTS["rtol"]),
                "atol": (POSITIVE, ODE_DEFAULTS["atol"]),
                "dtmin": (DTMIN, ODE_DEFAULTS["dtmin"]),
                "dt0": (POSITIVE, None),
                "max_steps": (integer(1), ODE_DEFAULTS["max_steps"]),
                "on_max_steps": _ON_MAX_STEPS,
            },
            _flow_arguments,
            solved=True,
            metered=True,
        ),
        "sde": DynamicsKind(
            {
                **_RUN,
                "lr": _LR,
                "batch_size": (None, REQUIRED),
                **_SAMPLES,
                "solver": (SDE_SOLVER, SDE_DEFAULTS["solver"]),
                "dt0": (POSITIVE, None),
                "max_steps": (integer(1), SDE_DEFAULTS["max_steps"]),
                "on_max_steps": _ON_MAX_STEPS,
            },
            _sde_arguments,
            solved=True,
            checkpointable=_sde_checkpointable,
        ),
        "gd": DynamicsKind({**_RUN, **_STEPS}, _sgd_arguments),
        "sgd": DynamicsKind(
            {**_RUN, **_STEPS, "batch_size": (None, REQUIRED), **_SAMPLES},
            _sgd_arguments,
        ),
    }
)


def call(spec) -> tuple[Callable, dict]:
    """``(entry, kwargs)``: run ``spec`` (a :class:`gradflow.scenario.RunSpec`) is
    ``entry(problem, **kwargs)``, with ``entry`` ``gf.flow`` or ``gf.sgd``. The one place where a
    run's dynamics is resolved (``gradflow run``, sweeps and the figures all call this)."""
    entry, kwargs = DYNAMICS[spec.dynamics].arguments(spec.options, jax.random.PRNGKey(spec.seed))
    if "on_max_steps" in kwargs:  # the scenario key; the dynamics' one switch is ``throw``
        kwargs["throw"] = kwargs.pop("on_max_steps") == "raise"
    return entry, kwargs
