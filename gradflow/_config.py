"""Scenario files: the TOML schema, ``--set`` overrides, ``--fast``, and validation.

A scenario is validated completely before anything is computed (DESIGN.md, "Bad input"): every
section and key is known, every value has the right type and an allowed value, and the cross
checks that need the data (``1 <= sgd.batch_size <= N``) are done by loading the data set, which
is cheap. No model is built and no dynamics run here. Each problem is a :class:`ConfigError`
whose message is ONE line naming the dotted key, the value received and what is allowed.

Sections (:data:`SCHEMA`; scenarios/README.md documents each key)::

    [scenario]  name, description, question
    [data]      name + the loader's options (gf.data.options(name))
    [model]     kind = "mlp" | "deep-linear" | "cnn", init_scale, seed,
                widths, activation (mlp, deep-linear) / channels, kernel_sizes, strides, last (cnn)
    [problem]   weight_decay, normalization, freeze_directions
    [time]      t1, save_every: defaults for the dynamics below
    [flow]      t1, save_every, solver, rtol, atol, dtmin, dt0, max_steps, on_max_steps, enabled
    [sde]       the SDE of SGD: lr, batch_size (one run per pair), sampling, seeds, seed, solver
                ("euler" | "euler-adaptive"), dt0, rtol, atol, dtmin, max_steps, t1, save_every
    [gd]        lr (one or a list: one run each), t1, save_every, momentum, enabled
    [sgd]       lr, batch_size (one or lists: one run per pair), t1, save_every, momentum,
                sampling, seeds, seed, enabled
    [output]    plot, logy, observables, predictions (print THEORY 4's report)
    [fast]      sub-tables ([fast.sgd], ...) overriding any of the above under ``--fast``

Order of precedence: the file, then ``[fast]`` (with ``--fast``), then each ``--set``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffrax

from ._flow import (
    DEFAULT_ATOL,
    DEFAULT_DTMIN,
    DEFAULT_MAX_STEPS,
    DEFAULT_RTOL,
    DEFAULT_SOLVER,
    SOLVERS,
)
from ._normalization import LM, NORMALIZATIONS
from ._sde import DEFAULT_STEPS_PER_LR, SDE_SOLVERS
from ._sgd import SAMPLING


class ConfigError(ValueError):
    """A scenario that cannot run; the message is one line naming key, value and what is allowed."""


# ---- value checks -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Check:
    """A test of one value, the text of what it allows, and the conversion of a valid value."""

    test: Callable[[Any], bool]
    allowed: str
    convert: Callable[[Any], Any] = lambda v: v


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def number(gt=None, ge=None, lt=None) -> Check:
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt)) if b is not None]
    return Check(
        lambda v: (
            _is_number(v)
            and (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (lt is None or v < lt)
        ),
        "use a number " + " and ".join(bounds),
        float,
    )


def integer(ge: int, le: int | None = None, note: str = "") -> Check:
    return Check(
        lambda v: _is_int(v) and v >= ge and (le is None or v <= le),
        f"use an integer in [{ge}, {le}]{note}" if le is not None else f"use an integer >= {ge}",
        int,
    )


def choice(options) -> Check:
    options = tuple(options)
    return Check(
        lambda v: isinstance(v, str) and v in options, "use one of " + ", ".join(map(repr, options))
    )


def one_or_many(item: Check) -> Check:
    """One value or a non-empty list of distinct values; converts to a tuple."""

    def test(v):
        items = v if isinstance(v, list) else [v]
        return bool(items) and all(item.test(i) for i in items) and len(set(items)) == len(items)

    return Check(
        test,
        item.allowed + " or a non-empty list of distinct ones",
        lambda v: tuple(item.convert(i) for i in (v if isinstance(v, list) else [v])),
    )


def names(allowed=None, empty_ok: bool = True) -> Check:
    return Check(
        lambda v: (
            isinstance(v, list)
            and (empty_ok or bool(v))
            and all(isinstance(i, str) and (allowed is None or i in allowed) for i in v)
        ),
        "use a list of names" + (" among " + ", ".join(allowed) if allowed else ""),
        tuple,
    )


def _kernel(v) -> bool:
    ok = lambda i: _is_int(i) and i >= 1  # noqa: E731
    return ok(v) or (
        isinstance(v, list)
        and bool(v)
        and all(ok(e) or (isinstance(e, list) and bool(e) and all(ok(i) for i in e)) for e in v)
    )


BOOLEAN = Check(lambda v: isinstance(v, bool), "use true or false")
TEXT = Check(lambda v: isinstance(v, str), "use a string")
FILE_NAME = Check(
    lambda v: isinstance(v, str) and bool(re.fullmatch(r"[\w][\w.-]*", v)),
    "use letters, digits, '_', '-' and '.' (it names the output files)",
)
POSITIVE = number(gt=0)
WIDTHS = Check(
    lambda v: isinstance(v, list) and all(_is_int(i) and i >= 1 for i in v),
    "use a list of positive integers, e.g. [32, 32]",
    tuple,
)
KERNEL = Check(
    _kernel,
    "use a positive integer, or a list with one positive integer (or "
    "per-axis list of them) per convolutional layer",
)
DTMIN = Check(
    lambda v: v is False or (_is_number(v) and v > 0),
    "use a number > 0, or false for no step floor",
    lambda v: None if v is False else float(v),
)
REQUIRED = object()  # a default that means "the key must be given"

MODEL_KINDS = ("mlp", "deep-linear", "cnn")
KIND_KEYS = {
    "mlp": ("widths", "activation"),
    "deep-linear": ("widths",),
    "cnn": ("channels", "kernel_sizes", "strides", "last"),
}
DYNAMICS = ("flow", "sde", "gd", "sgd")
_RUN = {"enabled": (BOOLEAN, True), "t1": (POSITIVE, None), "save_every": (POSITIVE, None)}
_STEPS = {"lr": (one_or_many(POSITIVE), REQUIRED), "momentum": (number(ge=0, lt=1), 0.0)}

#: section -> key -> (check, default). ``[data]`` takes its loader's options besides ``name``;
#: ``sgd.batch_size`` and ``output.*`` are checked against the data and the problem.
SCHEMA: dict[str, dict[str, tuple[Check, Any]]] = {
    "scenario": {"name": (FILE_NAME, None), "description": (TEXT, ""), "question": (TEXT, "")},
    "data": {"name": (TEXT, REQUIRED)},
    "model": {
        "kind": (choice(MODEL_KINDS), REQUIRED),
        "init_scale": (POSITIVE, 1.0),
        "seed": (integer(0), 0),
        "widths": (WIDTHS, REQUIRED),
        "activation": (choice(("relu", "linear")), "relu"),
        "channels": (WIDTHS, REQUIRED),
        "kernel_sizes": (KERNEL, REQUIRED),
        "strides": (KERNEL, 1),
        "last": (choice(("dense", "conv")), "dense"),
    },
    "problem": {
        "weight_decay": (number(ge=0), 0.0),
        "normalization": (choice(NORMALIZATIONS), "none"),
        "freeze_directions": (BOOLEAN, False),
    },
    "time": {"t1": (POSITIVE, None), "save_every": (POSITIVE, None)},
    "flow": {
        **_RUN,
        "solver": (choice(SOLVERS), DEFAULT_SOLVER),
        "rtol": (POSITIVE, DEFAULT_RTOL),
        "atol": (POSITIVE, DEFAULT_ATOL),
        "dtmin": (DTMIN, DEFAULT_DTMIN),
        "dt0": (POSITIVE, None),
        "max_steps": (integer(1), DEFAULT_MAX_STEPS),
        "on_max_steps": (choice(("raise", "truncate")), "raise"),
    },
    "sde": {
        **_RUN,
        "lr": _STEPS["lr"],
        "batch_size": (None, REQUIRED),
        "sampling": (choice(SAMPLING), SAMPLING[0]),
        "seeds": (integer(1), 1),
        "seed": (integer(0), 0),
        "solver": (choice(SDE_SOLVERS), SDE_SOLVERS[0]),
        "dt0": (POSITIVE, None),
        "rtol": (POSITIVE, 1e-2),
        "atol": (POSITIVE, 1e-4),
        "dtmin": (DTMIN, DEFAULT_DTMIN),
        "max_steps": (integer(1), DEFAULT_MAX_STEPS),
        "on_max_steps": (choice(("raise", "truncate")), "raise"),
    },
    "gd": {**_RUN, **_STEPS},
    "sgd": {
        **_RUN,
        **_STEPS,
        "batch_size": (None, REQUIRED),
        "sampling": (choice(SAMPLING), SAMPLING[0]),
        "seeds": (integer(1), 1),
        "seed": (integer(0), 0),
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
_NEEDS = {
    "rho_eq": (lambda p, n: p == "lm-last", "problem.normalization = 'lm-last'"),
    "v_norm": (lambda p, n: p == "wn", "problem.normalization = 'wn'"),
    "unit_norm_error": (lambda p, n: p in LM, "problem.normalization = 'lm-all' or 'lm-last'"),
    "test_acc": (lambda p, n: n > 0, "a test split (data.n_test > 0)"),
    "test_loss": (lambda p, n: n > 0, "a test split (data.n_test > 0)"),
}


# ---- the validated scenario -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: ``dynamics`` ("flow", "gd", "sgd") with the keyword arguments of gf.flow/gf.sgd."""

    label: str
    dynamics: str
    options: dict[str, Any]
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated scenario. ``dataset`` is loaded (validation needs ``N``); nothing else is."""

    name: str
    description: str
    question: str
    source: str
    dataset: Any
    model: dict[str, Any]
    problem: dict[str, Any]
    runs: tuple[RunSpec, ...]
    output: dict[str, Any]
    table: dict[str, Any]  # the merged TOML table that was validated (recorded in results)


def parse_set(item: str) -> tuple[tuple[str, ...], Any]:
    """``"sgd.lr=0.1"`` -> ``(("sgd", "lr"), 0.1)``; a TOML literal, else a bare string."""
    key, sep, text = (part.strip() for part in item.partition("="))
    if not sep or not text or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)+", key):
        raise ConfigError(f"--set {item!r} is not allowed; use --set section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return tuple(key.split(".")), value


def load_config(path, sets=(), fast: bool = False) -> Config:
    """Read, merge (``[fast]`` under ``fast``, then ``--set`` items) and validate a scenario."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scenario file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None
    return validate(table, [parse_set(item) for item in sets], fast=fast, source=path)


def validate(table: dict, overrides=(), *, fast: bool = False, source=None) -> Config:
    """Validate a parsed scenario table (see the module docstring); raises :class:`ConfigError`."""
    return _Validator(table, overrides, fast, Path(source) if source else None).config()


# ---- validation -------------------------------------------------------------------------


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Validator:
    def __init__(self, table, overrides, fast, source):
        self.source = source
        self.origin: dict[str, str] = {}  # dotted key -> "fast" | "--set"
        self.table = copy.deepcopy(table)
        for path, value in overrides:  # --set fast.x.y=... edits the [fast] table itself
            if path[0] == "fast":
                self.put(self.table, path, value, "--set")
        fast_table = self.table.pop("fast", {})
        self.check_fast(fast_table)
        if fast:
            for section, values in fast_table.items():
                for key, value in values.items():
                    self.put(self.table, (section, key), value, "fast")
        for path, value in overrides:
            if path[0] != "fast":
                self.put(self.table, path, value, "--set")

    def bad(self, key: str, value, allowed: str, what: str = "is not allowed") -> ConfigError:
        origin = self.origin.get(key)
        name = "fast." + key if origin == "fast" else key
        note = " (from --set)" if origin == "--set" else ""
        return ConfigError(f"{name}={_show(value)} {what}; {allowed}{note}")

    def put(self, where: dict, path, value, origin):
        for i, part in enumerate(path[:-1]):
            where = where.setdefault(part, {})
            if not isinstance(where, dict):
                raise self.bad(".".join(path[: i + 1]), where, "use a table")
        where[path[-1]] = value
        self.origin[".".join(path)] = origin

    def check_fast(self, fast):
        if not isinstance(fast, dict):
            raise self.bad("fast", fast, "use sub-tables named after sections, e.g. [fast.sgd]")
        for section, values in fast.items():
            if section not in SCHEMA or not isinstance(values, dict):
                raise self.bad(
                    f"fast.{section}",
                    values,
                    "use sub-tables named after sections: " + ", ".join(SCHEMA),
                )
            allowed = (
                self.data_keys(self.table.get("data")) if section == "data" else SCHEMA[section]
            )
            for key, value in values.items():
                if key not in allowed:
                    raise self.bad(
                        f"fast.{section}.{key}",
                        value,
                        f"allowed in [{section}]: {', '.join(allowed)}",
                        "is not a known key",
                    )

    @staticmethod
    def data_keys(table) -> tuple[str, ...]:
        """``name`` and the options of the data set named in ``table`` (all loaders' if unknown)."""
        from . import data as gfdata

        name = table.get("name") if isinstance(table, dict) else None
        names = [name] if name in gfdata.names() else gfdata.names()
        return ("name", *sorted({k for n in names for k in gfdata.options(n)}))

    def section(self, name: str, required: bool = False) -> dict:
        """The table ``[name]``, its keys checked against ``SCHEMA`` (data: by :meth:`data`)."""
        value = self.table.get(name)
        if value is None:
            if required:
                raise ConfigError(f"[{name}] is missing; a scenario needs a [{name}] table")
            return {}
        if not isinstance(value, dict):
            raise self.bad(name, value, f"use a table [{name}]")
        for key, item in value.items():
            if name != "data" and key not in SCHEMA[name]:
                raise self.bad(
                    f"{name}.{key}",
                    item,
                    f"allowed in [{name}]: {', '.join(SCHEMA[name])}",
                    "is not a known key",
                )
        return value

    def get(self, table: dict, section: str, key: str, check: Check | None = None, default=...):
        """``table[key]`` checked (``SCHEMA``'s check and default unless given)."""
        spec_check, spec_default = SCHEMA[section].get(key, (None, REQUIRED))
        check = check or spec_check
        default = spec_default if default is ... else default
        if key not in table:
            if default is REQUIRED:
                raise ConfigError(f"{section}.{key} is missing; {check.allowed}")
            return default
        if not check.test(table[key]):
            raise self.bad(f"{section}.{key}", table[key], check.allowed)
        return check.convert(table[key])

    def read(self, section: str, keys) -> dict:
        table = self.section(section)
        return {key: self.get(table, section, key) for key in keys}

    # -- the sections --
    def config(self) -> Config:
        for name, value in self.table.items():
            if name not in SCHEMA:
                raise self.bad(
                    name, value, f"allowed: {', '.join(SCHEMA)}, fast", "is not a known section"
                )
        scenario = self.read("scenario", SCHEMA["scenario"])
        name = scenario["name"] or (self.source.stem if self.source else None)
        if not FILE_NAME.test(name):
            raise self.bad("scenario.name", name, FILE_NAME.allowed)
        dataset, data = self.data()
        model = self.model(dataset.input_shape)
        problem = self.read("problem", SCHEMA["problem"])
        if problem["freeze_directions"] and problem["normalization"] != "lm-last":
            raise self.bad(
                "problem.freeze_directions",
                True,
                "it applies to problem.normalization = 'lm-last' only",
            )
        output = self.output(problem["normalization"], dataset.n_test)
        runs = self.runs(dataset.n_train, output["observables"])
        table = dict(self.table, data=data)
        return Config(
            name,
            scenario["description"],
            scenario["question"],
            str(self.source or ""),
            dataset,
            model,
            problem,
            runs,
            output,
            table,
        )

    def data(self):
        from . import data as gfdata

        table = self.section("data", required=True)
        name = self.get(table, "data", "name", choice(gfdata.names()))
        opts = {k: v for k, v in table.items() if k != "name"}
        allowed = self.data_keys(table)[1:]
        for key, value in opts.items():
            if key not in allowed:
                raise self.bad(
                    f"data.{key}",
                    value,
                    f"options of dataset {name!r}: {', '.join(allowed)}",
                    "is not a known option",
                )
        if name == "npz" and isinstance(opts.get("path"), str) and self.source is not None:
            path = Path(opts["path"]).expanduser()  # relative to the scenario file
            opts["path"] = str(path if path.is_absolute() else self.source.parent / path)
        try:
            dataset = gfdata.load(name, **opts)
        except (ValueError, TypeError) as err:  # "dataset 'x': option K=V is not allowed; ..."
            text = str(err).splitlines()[0]
            found = re.match(r"dataset '[^']*': option (\w+)=.*? is not allowed; (.*)$", text)
            if found and found[1] in opts:
                raise self.bad(
                    f"data.{found[1]}", table[found[1]], f"{found[2]} (dataset {name!r})"
                ) from None
            raise ConfigError(f"[data] {text}") from None
        return dataset, {"name": name, **opts}

    def model(self, in_shape) -> dict:
        table = self.section("model", required=True)
        kind = self.get(table, "model", "kind")
        for key, value in table.items():
            if key not in ("kind", "init_scale", "seed", *KIND_KEYS[kind]):
                owners = " or ".join(repr(k) for k, keys in KIND_KEYS.items() if key in keys)
                raise self.bad(
                    f"model.{key}",
                    value,
                    f"it applies to kind {owners}, and model.kind is {kind!r}",
                )
        model = self.read("model", ("kind", "init_scale", "seed", *KIND_KEYS[kind]))
        if kind == "cnn":
            self.cnn_geometry(model, in_shape)
        return model

    def cnn_geometry(self, model, in_shape):
        """Check the LocalCNN's layer sizes against the data without building it."""
        if len(in_shape) not in (2, 3):
            raise self.bad(
                "model.kind",
                "cnn",
                f"it needs channel-first inputs (C, H) or (C, H, W) and the data give "
                f"{in_shape}; use data.image = true (digits) or data.channel_first = "
                "true (mnist1d)",
            )
        nd, n_conv = len(in_shape) - 1, len(model["channels"]) + (model["last"] == "conv")
        per_layer = {}
        for key in ("kernel_sizes", "strides"):
            value = model[key]
            entries = [value] * n_conv if isinstance(value, int) else value
            per_layer[key] = [(e,) * nd if isinstance(e, int) else tuple(e) for e in entries]
            if len(entries) != n_conv or any(len(e) != nd for e in per_layer[key]):
                raise self.bad(
                    f"model.{key}",
                    value,
                    f"use one entry per convolutional layer ({n_conv} with "
                    f"model.last = {model['last']!r}), each an integer or {nd} of them",
                )
        size = in_shape[1:]
        layers = zip(per_layer["kernel_sizes"], per_layer["strides"], strict=True)
        for i, (ks, ss) in enumerate(layers):
            size = tuple((n - k) // s + 1 for n, k, s in zip(size, ks, ss, strict=True))
            if min(size) < 1:
                raise self.bad(
                    "model.kernel_sizes",
                    model["kernel_sizes"],
                    f"layer {i + 1} leaves no output positions for inputs {in_shape}",
                )
        if model["last"] == "conv" and any(n != 1 for n in size):
            raise self.bad(
                "model.kernel_sizes",
                model["kernel_sizes"],
                f"with model.last = 'conv' the last layer must leave one output "
                f"position, it leaves {size}",
            )

    def output(self, normalization: str, n_test: int) -> dict:
        from ._observables import GROUPS

        table = self.section("output")
        groups = self.get(table, "output", "observables", names(tuple(GROUPS)))
        default = ["loss", "rho", "margin_min", "balance_gap"]
        default += ["v_norm"] if normalization == "wn" else []
        # a group's observables are named by the run only: any name goes when groups are asked
        plot = self.get(
            table, "output", "plot", names(None if groups else PLOTTABLE, False), tuple(default)
        )
        for item in plot:
            if item in _NEEDS and not _NEEDS[item][0](normalization, n_test):
                raise self.bad(
                    "output.plot", list(plot), f"{item!r} is recorded with {_NEEDS[item][1]} only"
                )
        logy = self.get(table, "output", "logy", names(plot))
        predictions = self.get(table, "output", "predictions")
        if predictions and normalization != "lm-last":
            raise self.bad(
                "output.predictions",
                predictions,
                "the report applies to problem.normalization = 'lm-last' (THEORY 4.1, 4.3, 4.4)",
            )
        return {"plot": plot, "logy": logy, "observables": groups, "predictions": predictions}

    # -- the dynamics --
    def runs(self, n: int, groups) -> tuple[RunSpec, ...]:
        time = self.read("time", SCHEMA["time"])
        batch = one_or_many(integer(1, n, f" (N = {n} training samples)"))
        runs: list[RunSpec] = []
        for section in DYNAMICS:
            table = self.section(section)
            if not table or not self.get(table, section, "enabled"):
                continue
            keys = [k for k in SCHEMA[section] if k != "batch_size"]
            opts = {k: self.get(table, section, k) for k in keys}
            if section in ("sde", "sgd"):
                opts["batch_size"] = self.get(table, section, "batch_size", batch)
            elif section == "gd":  # GD is SGD with B = N
                opts["batch_size"] = (n,)
            del opts["enabled"]
            for key in ("t1", "save_every"):
                opts[key] = time[key] if opts[key] is None else opts[key]
            if opts["t1"] is None:
                raise ConfigError(
                    f"{section}.t1 is missing; set {section}.t1 or time.t1 (a number > 0)"
                )
            opts["observables"] = groups
            runs.extend(self.flow_run(opts) if section == "flow" else self.step_runs(section, opts))
        if not runs:
            raise ConfigError("nothing to run: add a [flow], [sde], [gd] or [sgd] table")
        return tuple(runs)

    def flow_run(self, opts) -> list[RunSpec]:
        if opts["dt0"] is None and not issubclass(
            SOLVERS[opts["solver"]], diffrax.AbstractAdaptiveSolver
        ):
            raise ConfigError(
                f"flow.dt0 is missing; solver {opts['solver']!r} takes fixed "
                "steps: use a number > 0"
            )
        return [RunSpec("flow", "flow", opts)]

    def step_runs(self, section: str, opts) -> list[RunSpec]:
        lrs, batches = opts.pop("lr"), opts.pop("batch_size")
        seed = opts.pop("seed", 0)
        if section == "gd":
            opts["sampling"] = "without-replacement"
        else:
            opts["seeds"] = None if opts["seeds"] == 1 else opts["seeds"]
        runs = []
        for lr in lrs:
            if section != "sde" and round(opts["t1"] / lr) < 1:
                raise self.bad(
                    f"{section}.lr", lr, f"it gives no step before t1 = {opts['t1']}; use lr <= t1"
                )
            if section == "sde":
                self.check_sde_steps(opts, lr)
            for b in batches:
                label = f"{section}_lr{lr:g}" + (f"_b{b}" if section != "gd" else "")
                runs.append(RunSpec(label, section, {"lr": lr, "batch_size": b, **opts}, seed))
        return runs

    def check_sde_steps(self, opts, lr: float) -> None:
        """Euler–Maruyama takes ``ceil(t1/dt0)`` steps (``dt0`` defaults to ``lr/4``)."""
        if opts["solver"] == "euler-adaptive":
            if opts["dtmin"] is None:
                raise self.bad("sde.dtmin", False, "'euler-adaptive' needs a number > 0")
            return
        dt0 = opts["dt0"] or lr / DEFAULT_STEPS_PER_LR
        steps = math.ceil(opts["t1"] / dt0 - 1e-9)
        if steps > opts["max_steps"]:
            raise self.bad(
                "sde.max_steps",
                opts["max_steps"],
                f"t1 / dt0 = {steps} steps are needed (dt0 = {dt0:g})",
            )
