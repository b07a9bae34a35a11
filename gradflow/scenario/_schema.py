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
from .._validate import BOOLEAN, FILE_NAME, POSITIVE, REQUIRED, TEXT, Check, choice, integer, number
from ._registry import DYNAMICS, MODELS, SEED

__all__ = ["SCHEMA", "REQUIRED", "DYNAMICS", "KIND_KEYS", "NEEDS", "PLOTTABLE", "FREEZABLE"]

#: kind -> its own [model] keys (from :data:`gradflow.scenario._registry.MODELS`).
KIND_KEYS = {kind: tuple(entry.keys) for kind, entry in MODELS.items()}
#: The geometry of ``kind = "paper-cnn"`` (gradflow.models.paper_cnn), for the checks.
PAPER_CNN = MODELS["paper-cnn"].geometry

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
#: an init scale beyond 1e4 overflows deep networks' weights (ρ grows like scale^L)
INIT_SCALE = number(gt=0, lt=1e4)


def _model_keys() -> dict[str, tuple[Check, Any]]:
    """``[model]``: the keys of every kind, each once, in the registry's order."""
    keys: dict[str, tuple[Check, Any]] = {
        "kind": (choice(tuple(MODELS)), REQUIRED),
        "init_scale": (INIT_SCALE, 1.0),
        "seed": (SEED, 0),
    }
    for entry in MODELS.values():
        for key, spec in entry.keys.items():
            keys.setdefault(key, spec)
    return keys


#: section -> key -> (check, default). ``[data]`` takes its loader's options besides ``name``;
#: ``sgd.batch_size`` and ``output.*`` are checked against the data and the problem. The
#: ``[model]`` keys and the sections of the dynamics come from the registries (:mod:`._registry`).
SCHEMA: dict[str, dict[str, tuple[Check, Any]]] = {
    "scenario": {
        "name": (FILE_NAME, None),
        "description": (TEXT, ""),
        "question": (TEXT, ""),
        "look_at": (TEXT, ""),  # what to look at in the outputs (the scenario tables)
        "cost": (TEXT, ""),  # the measured wall time (the scenario tables)
    },
    "data": {"name": (TEXT, REQUIRED)},
    "model": _model_keys(),
    "problem": {
        "weight_decay": (number(ge=0), 0.0),
        "normalization": (choice(NORMALIZATIONS), "none"),
        "freeze_directions": (BOOLEAN, False),
        "chunk_size": (CHUNK_SIZE, None),
        "precision": (PRECISION, None),
    },
    "time": {"t1": (POSITIVE, None), "save_every": (POSITIVE, None)},
    **{section: dict(entry.keys) for section, entry in DYNAMICS.items()},
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
