"""The scenario schema: its sections, their keys, and each key's check and default.

Sections (:data:`SCHEMA`; scenarios/README.md documents each key)::

    [scenario]  name, description, question, look_at, cost (the last two: the scenario tables)
    [data]      name + the loader's options (gf.data.options(name))
    [model]     kind = "mlp" | "deep-linear" | "cnn" | "paper-cnn", init_scale, seed,
                widths, activation (mlp, deep-linear) / channels, kernel_sizes, strides, padding,
                last (cnn); paper-cnn is gradflow.models.paper_cnn (no further keys)
    [problem]   weight_decay, normalization, freeze_directions, chunk_size, precision
    [time]      t1, save_every: defaults for the dynamics below
    [flow]      t1, save_every, solver, rtol, atol, dtmin, dt0, max_steps, on_max_steps, enabled
    [sde]       the SDE of SGD: lr, batch_size (one run per pair), sampling, seeds, seed, solver
                ("euler": fixed steps, no tolerances), dt0, max_steps, t1, save_every
    [gd]        lr (one or a list: one run each), t1, save_every, momentum, nesterov, enabled
    [sgd]       lr, batch_size (one or lists: one run per pair), t1, save_every, momentum, nesterov,
                sampling, seeds, seed, enabled
    [equilibrium]  the exact fixed point near the end of the [flow] run (gf.equilibrium):
                enabled, tol, max_iter, spectrum; printed with THEORY 4's report
    [output]    plot, logy, observables, predictions (print THEORY 4's report)
    [fast]      sub-tables ([fast.sgd], ...) overriding any of the above under ``--fast``
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .._parametrization import FREEZABLE, NORMALIZATIONS, PARAMETRIZATIONS
from .._validate import (
    BOOLEAN,
    DTMIN,
    FILE_NAME,
    KERNEL,
    POSITIVE,
    REQUIRED,
    TEXT,
    WIDTHS,
    Check,
    choice,
    integer,
    number,
    one_or_many,
)
from ..diffrax_ext import SAMPLING
from ..dynamics import ODE_DEFAULTS, SDE_DEFAULTS, SDE_SOLVERS, SGD_DEFAULTS, SOLVERS

__all__ = ["SCHEMA", "REQUIRED", "DYNAMICS", "KIND_KEYS", "NEEDS", "PLOTTABLE", "FREEZABLE"]

MODEL_KINDS = ("mlp", "deep-linear", "cnn", "paper-cnn")
KIND_KEYS = {
    "mlp": ("widths", "activation"),
    "deep-linear": ("widths",),
    "cnn": ("channels", "kernel_sizes", "strides", "padding", "last"),
    "paper-cnn": (),
}
#: The geometry of ``kind = "paper-cnn"`` (gradflow.models.paper_cnn), for the checks.
PAPER_CNN = {
    "channels": (32, 64, 128),
    "kernel_sizes": 3,
    "strides": 2,
    "padding": 1,
    "last": "dense",
}


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
CHUNK_SIZE = dataclasses.replace(
    integer(1),
    allowed="use an integer >= 1 (absent: the largest chunk of samples whose activations fit "
    "in 32 MiB on a CPU, 256 MiB on a GPU)",
)
PRECISIONS = ("float32", "float64")
PRECISION = dataclasses.replace(
    choice(PRECISIONS),
    allowed="use one of 'float32', 'float64' (absent: float64, as `gradflow run` enables x64)",
)
DYNAMICS = ("flow", "sde", "gd", "sgd")
_RUN = {"enabled": (BOOLEAN, True), "t1": (POSITIVE, None), "save_every": (POSITIVE, None)}
_STEPS = {
    "lr": (one_or_many(POSITIVE), REQUIRED),
    "momentum": (number(ge=0, lt=1), SGD_DEFAULTS["momentum"]),
    "nesterov": (BOOLEAN, SGD_DEFAULTS["nesterov"]),
}

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
#: an init scale beyond 1e4 overflows deep networks' weights (ρ grows like scale^L)
INIT_SCALE = number(gt=0, lt=1e4)

#: section -> key -> (check, default). ``[data]`` takes its loader's options besides ``name``;
#: ``sgd.batch_size`` and ``output.*`` are checked against the data and the problem.
SCHEMA: dict[str, dict[str, tuple[Check, Any]]] = {
    "scenario": {
        "name": (FILE_NAME, None),
        "description": (TEXT, ""),
        "question": (TEXT, ""),
        "look_at": (TEXT, ""),  # what to look at in the outputs (the scenario tables)
        "cost": (TEXT, ""),  # the measured wall time (the scenario tables)
    },
    "data": {"name": (TEXT, REQUIRED)},
    "model": {
        "kind": (choice(MODEL_KINDS), REQUIRED),
        "init_scale": (INIT_SCALE, 1.0),
        "seed": (SEED, 0),
        "widths": (WIDTHS, REQUIRED),
        "activation": (choice(("relu", "linear")), "relu"),
        "channels": (WIDTHS, REQUIRED),
        "kernel_sizes": (KERNEL, REQUIRED),
        "strides": (KERNEL, 1),
        "padding": (PADDING, 0),
        "last": (choice(("dense", "conv")), "dense"),
    },
    "problem": {
        "weight_decay": (number(ge=0), 0.0),
        "normalization": (choice(NORMALIZATIONS), "none"),
        "freeze_directions": (BOOLEAN, False),
        "chunk_size": (CHUNK_SIZE, None),
        "precision": (PRECISION, None),
    },
    "time": {"t1": (POSITIVE, None), "save_every": (POSITIVE, None)},
    "flow": {
        **_RUN,
        "solver": (choice(SOLVERS), ODE_DEFAULTS["solver"]),
        "rtol": (POSITIVE, ODE_DEFAULTS["rtol"]),
        "atol": (POSITIVE, ODE_DEFAULTS["atol"]),
        "dtmin": (DTMIN, ODE_DEFAULTS["dtmin"]),
        "dt0": (POSITIVE, None),
        "max_steps": (integer(1), ODE_DEFAULTS["max_steps"]),
        "on_max_steps": (choice(("raise", "truncate")), "raise"),
    },
    "sde": {
        **_RUN,
        "lr": _STEPS["lr"],
        "batch_size": (None, REQUIRED),
        "sampling": (choice(SAMPLING), SGD_DEFAULTS["sampling"]),
        "seeds": (integer(1), 1),
        "seed": (SEED, 0),
        "solver": (SDE_SOLVER, SDE_DEFAULTS["solver"]),
        "dt0": (POSITIVE, None),
        "max_steps": (integer(1), SDE_DEFAULTS["max_steps"]),
        "on_max_steps": (choice(("raise", "truncate")), "raise"),
    },
    "gd": {**_RUN, **_STEPS},
    "sgd": {
        **_RUN,
        **_STEPS,
        "batch_size": (None, REQUIRED),
        "sampling": (choice(SAMPLING), SGD_DEFAULTS["sampling"]),
        "seeds": (integer(1), 1),
        "seed": (SEED, 0),
    },
    "equilibrium": {
        "enabled": (BOOLEAN, True),
        "tol": (number(gt=0, lt=1), 1e-12),
        "max_iter": (integer(1), 50),
        "spectrum": (BOOLEAN, True),
    },
    "output": {
        "plot": (None, None),
        "logy": (None, ()),
        "observables": (None, ()),
        "predictions": (BOOLEAN, False),
    },
}
#: Observables a scenario may plot (``balance_drift`` is derived by the plot:
#: ``||balance_gap(t) − balance_gap(0)||`` over layer pairs), and what some of them need.
PLOTTABLE = tuple(
    "loss data_loss train_acc test_acc test_loss rho rho_eq rho_k margin_min margin_mean "
    "margin_std balance_gap balance_drift unit_norm_error v_norm".split()
)


def _recorded_by(name: str) -> tuple[str, ...]:
    return tuple(n for n, cls in PARAMETRIZATIONS.items() if name in cls.observables)


def _needs_parametrization(name: str):
    which = _recorded_by(name)
    text = "problem.normalization = " + " or ".join(map(repr, which))
    return (lambda p, n: p in which, text)


#: observable -> (test of (normalization, n_test), what it is recorded with). The
#: parametrization-specific ones come from each parametrization's ``observables``.
NEEDS = {
    **{
        name: _needs_parametrization(name)
        for name in sorted({o for cls in PARAMETRIZATIONS.values() for o in cls.observables})
    },
    "test_acc": (lambda p, n: n > 0, "a test split (data.n_test > 0)"),
    "test_loss": (lambda p, n: n > 0, "a test split (data.n_test > 0)"),
}
