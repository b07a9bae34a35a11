"""Scenario files: the TOML schema, ``--set`` overrides, ``--fast``, and validation.

A scenario is validated completely before anything is computed (DESIGN.md, "Bad input"): every
section and key is known, every value has the right type and an allowed value, and the cross
checks that need the data (``1 <= sgd.batch_size <= N``) are done by loading the data set, which
is cheap. Models are not built and no dynamics run here. Each problem is a :class:`ConfigError`
whose message is ONE line naming the dotted key, the value received and what is allowed.

Sections (see scenarios/README.md for the full schema)::

    [scenario]  name, description, question
    [data]      name + the loader's options (gf.data.options(name))
    [model]     kind = "mlp" | "deep-linear" | "cnn", init_scale, seed,
                widths, activation (mlp, deep-linear) / channels, kernel_sizes, strides, last (cnn)
    [problem]   weight_decay, normalization, freeze_directions
    [time]      t1, save_every: defaults for the dynamics below
    [flow]      t1, save_every, solver, rtol, atol, dtmin, dt0, max_steps, on_max_steps, enabled
    [gd]        lr (one or a list: one run each), t1, save_every, momentum, enabled
    [sgd]       lr, batch_size (one or lists: one run per pair), t1, save_every, momentum,
                sampling, seeds, seed, enabled
    [output]    plot, logy, observables
    [fast]      sub-tables overriding any of the above under ``--fast``
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from pathlib import Path
from typing import Any

MODEL_KINDS = ("mlp", "deep-linear", "cnn")
DYNAMICS = ("flow", "gd", "sgd")
KEYS: dict[str, tuple[str, ...]] = {
    "scenario": ("name", "description", "question"),
    "data": ("name",),  # plus the options of the chosen loader
    "model": ("kind", "init_scale", "seed", "widths", "activation", "channels", "kernel_sizes",
              "strides", "last"),
    "problem": ("weight_decay", "normalization", "freeze_directions"),
    "time": ("t1", "save_every"),
    "flow": ("enabled", "t1", "save_every", "solver", "rtol", "atol", "dtmin", "dt0", "max_steps",
             "on_max_steps"),
    "gd": ("enabled", "lr", "t1", "save_every", "momentum"),
    "sgd": ("enabled", "lr", "batch_size", "t1", "save_every", "momentum", "sampling", "seeds",
            "seed"),
    "output": ("plot", "logy", "observables"),
}
KIND_KEYS = {
    "mlp": ("widths", "activation"),
    "deep-linear": ("widths",),
    "cnn": ("channels", "kernel_sizes", "strides", "last"),
}
#: Observables a scenario may plot, and what each needs (``balance_drift`` is derived:
#: ``||balance_gap(t) − balance_gap(0)||`` over layer pairs).
PLOTTABLE = ("loss", "data_loss", "train_acc", "test_acc", "test_loss", "rho", "rho_eq", "rho_k",
             "margin_min", "margin_mean", "margin_std", "balance_gap", "balance_drift",
             "unit_norm_error", "v_norm")
_NEEDS = {
    "rho_eq": (lambda c: c["normalization"] == "lm-last", "problem.normalization = 'lm-last'"),
    "v_norm": (lambda c: c["normalization"] == "wn", "problem.normalization = 'wn'"),
    "unit_norm_error": (lambda c: c["normalization"] in ("lm-all", "lm-last"),
                        "problem.normalization = 'lm-all' or 'lm-last'"),
    "test_acc": (lambda c: c["n_test"] > 0, "a test split (data.n_test > 0)"),
    "test_loss": (lambda c: c["n_test"] > 0, "a test split (data.n_test > 0)"),
}


class ConfigError(ValueError):
    """A scenario that cannot run; the message is one line naming key, value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a scenario: ``dynamics`` ("flow", "gd", "sgd") with its keyword arguments."""

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


# ---- reading ----------------------------------------------------------------------------


def parse_set(item: str) -> tuple[tuple[str, ...], Any]:
    """``"sgd.lr=0.1"`` -> ``(("sgd", "lr"), 0.1)``; the value is a TOML literal or a bare string."""
    key, sep, text = item.partition("=")
    key, text = key.strip(), text.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)+", key) or not text:
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
    overrides = [parse_set(item) for item in sets]
    return validate(table, overrides, fast=fast, source=path)


def validate(table: dict, overrides=(), *, fast: bool = False, source=None) -> Config:
    """Validate a parsed scenario table (see the module docstring); raises :class:`ConfigError`."""
    return _Validator(table, overrides, fast, Path(source) if source else None).config()


# ---- validation -------------------------------------------------------------------------


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    def __init__(self, table, overrides, fast, source):
        self.source = source
        self.origin: dict[str, str] = {}
        self.table = {k: dict(v) if isinstance(v, dict) else v for k, v in table.items()}
        fast_table = self.table.pop("fast", {})
        self._check_fast(fast_table)
        if fast:
            for section, values in fast_table.items():
                for key, value in values.items():
                    self._put((section, key), value, "fast")
        for path, value in overrides:
            self._put(path, value, "--set")

    # -- error helpers --
    def label(self, key: str) -> str:
        return ("fast." + key) if self.origin.get(key) == "fast" else key

    def bad(self, key: str, value, allowed: str) -> ConfigError:
        note = " (from --set)" if self.origin.get(key) == "--set" else ""
        return ConfigError(f"{self.label(key)}={_show(value)} is not allowed; {allowed}{note}")

    def missing(self, key: str, allowed: str) -> ConfigError:
        return ConfigError(f"{key} is missing; {allowed}")

    def _put(self, path, value, origin):
        where = self.table
        for i, part in enumerate(path[:-1]):
            node = where.setdefault(part, {})
            if not isinstance(node, dict):
                raise self.bad(".".join(path[: i + 1]), node, "use a table")
            where = node
        where[path[-1]] = value
        self.origin[".".join(path)] = origin

    def _check_fast(self, fast):
        if not isinstance(fast, dict):
            raise self.bad("fast", fast, "use a table of sections, e.g. [fast.sgd]")
        for section, values in fast.items():
            if section not in KEYS or not isinstance(values, dict):
                raise self.bad(f"fast.{section}", values,
                               "use sub-tables named after sections: " + ", ".join(KEYS))
            if section == "data":
                continue  # checked against the loader's options once merged
            for key, value in values.items():
                if key not in KEYS[section]:
                    raise ConfigError(f"fast.{section}.{key}={_show(value)} is not a known key; "
                                      f"allowed in [{section}]: {', '.join(KEYS[section])}")

    # -- typed getters --
    def section(self, name: str, required: bool = False) -> dict:
        value = self.table.get(name)
        if value is None:
            if required:
                raise self.missing(f"[{name}]", f"a scenario needs a [{name}] table")
            return {}
        if not isinstance(value, dict):
            raise self.bad(name, value, f"use a table [{name}]")
        allowed = KEYS[name] if name != "data" else None
        for key, item in value.items():
            if allowed is not None and key not in allowed:
                note = " (from --set)" if self.origin.get(f"{name}.{key}") == "--set" else ""
                raise ConfigError(f"{self.label(f'{name}.{key}')}={_show(item)} is not a known "
                                  f"key; allowed in [{name}]: {', '.join(allowed)}{note}")
        return value

    def number(self, key, value, *, gt=None, ge=None, lt=None) -> float:
        ok = _is_number(value) and (gt is None or value > gt) and (ge is None or value >= ge)
        ok = ok and (lt is None or value < lt)
        if not ok:
            parts = [f"> {gt}" if gt is not None else "", f">= {ge}" if ge is not None else "",
                     f"< {lt}" if lt is not None else ""]
            raise self.bad(key, value, "use a number " + " and ".join(p for p in parts if p))
        return float(value)

    def integer(self, key, value, *, ge=None, le=None) -> int:
        if not _is_int(value) or (ge is not None and value < ge) or (le is not None and value > le):
            rng = f"in [{ge}, {le}]" if le is not None else f">= {ge}"
            raise self.bad(key, value, f"use an integer {rng}")
        return int(value)

    def choice(self, key, value, options):
        if not isinstance(value, str) or value not in options:
            raise self.bad(key, value, "use one of " + ", ".join(map(repr, options)))
        return value

    def boolean(self, key, value) -> bool:
        if not isinstance(value, bool):
            raise self.bad(key, value, "use true or false")
        return value

    def text(self, key, value) -> str:
        if not isinstance(value, str):
            raise self.bad(key, value, "use a string")
        return value

    def many(self, key, value, check, what: str) -> tuple:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.bad(key, value, f"use {what} or a non-empty list of them")
        out = []
        for item in items:
            try:
                out.append(check(item))
            except ConfigError:
                raise self.bad(key, value, f"use {what} or a non-empty list of them") from None
        return tuple(out)

    def get(self, table, section, key, check, default=..., need=""):
        dotted = f"{section}.{key}"
        if key not in table:
            if default is ...:
                raise self.missing(dotted, need or f"set {dotted}")
            return default
        return check(dotted, table[key])

    # -- the sections --
    def config(self) -> Config:
        for name, value in self.table.items():
            if name not in KEYS:
                raise ConfigError(f"{name}={_show(value)} is not a known section; "
                                  f"allowed: {', '.join(KEYS)}, fast")
        scenario = self.section("scenario")
        default_name = self.source.stem if self.source else None
        name = self.get(scenario, "scenario", "name", self.text, default_name)
        if name is None or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise self.bad("scenario.name", name, "use letters, digits, '_', '-', '.' (a file name)")
        description = self.get(scenario, "scenario", "description", self.text, "")
        question = self.get(scenario, "scenario", "question", self.text, "")
        dataset, data = self.data()
        model = self.model(dataset)
        problem = self.problem()
        output = self.output(problem, dataset)
        runs = self.runs(dataset.n_train, output["observables"])
        table = {k: v for k, v in self.table.items()}
        table["data"] = data
        return Config(name, description, question, str(self.source or ""), dataset, model,
                      problem, runs, output, table)

    def data(self):
        from . import data as gfdata

        table = dict(self.section("data", required=True))
        name = self.get(table, "data", "name", lambda k, v: self.choice(k, v, gfdata.names()),
                        need="use one of " + ", ".join(map(repr, gfdata.names())))
        allowed = gfdata.options(name)
        opts = {k: v for k, v in table.items() if k != "name"}
        for key, value in opts.items():
            if key not in allowed:
                raise ConfigError(f"{self.label('data.' + key)}={_show(value)} is not an option "
                                  f"of dataset {name!r}; allowed: {', '.join(allowed)}")
        if name == "npz" and isinstance(opts.get("path"), str) and self.source is not None:
            path = Path(opts["path"]).expanduser()
            opts["path"] = str(path if path.is_absolute() else self.source.parent / path)
        try:
            dataset = gfdata.load(name, **opts)
        except ValueError as err:
            raise ConfigError(f"[data] {str(err).splitlines()[0]}") from None
        return dataset, {"name": name, **opts}

    def model(self, dataset) -> dict:
        table = self.section("model", required=True)
        kind = self.get(table, "model", "kind", lambda k, v: self.choice(k, v, MODEL_KINDS),
                        need="use one of " + ", ".join(map(repr, MODEL_KINDS)))
        for key in table:
            if key in ("kind", "init_scale", "seed") or key in KIND_KEYS[kind]:
                continue
            owners = [k for k, keys in KIND_KEYS.items() if key in keys]
            raise self.bad(f"model.{key}", table[key],
                           f"it applies to kind {' or '.join(map(repr, owners))}, "
                           f"and model.kind is {kind!r}")
        out = {
            "kind": kind,
            "init_scale": self.get(table, "model", "init_scale",
                                   lambda k, v: self.number(k, v, gt=0), 1.0),
            "seed": self.get(table, "model", "seed", lambda k, v: self.integer(k, v, ge=0), 0),
        }
        positive = lambda k, v: self.many(  # noqa: E731
            k, v, lambda i: self.integer(k, i, ge=1), "a positive integer")
        if kind in ("mlp", "deep-linear"):
            widths = table.get("widths")
            if widths == []:
                out["widths"] = ()
            else:
                out["widths"] = self.get(table, "model", "widths", positive,
                                         need="use a list of hidden widths, e.g. [32, 32]")
        if kind == "mlp":
            out["activation"] = self.get(table, "model", "activation",
                                         lambda k, v: self.choice(k, v, ("relu", "linear")), "relu")
        if kind == "cnn":
            out["channels"] = self.get(table, "model", "channels", positive,
                                       need="use a list of hidden channel counts, e.g. [8, 8]")
            out["last"] = self.get(table, "model", "last",
                                   lambda k, v: self.choice(k, v, ("dense", "conv")), "dense")
            out["kernel_sizes"] = self.get(table, "model", "kernel_sizes", self.kernel,
                                           need="use a list of kernel sizes, one per conv layer")
            out["strides"] = self.get(table, "model", "strides", self.kernel, 1)
            self.cnn_geometry(out, dataset.input_shape)
        return out

    def kernel(self, key, value):
        ok = lambda v: _is_int(v) and v >= 1  # noqa: E731
        if ok(value):
            return int(value)
        if isinstance(value, list) and value and all(
            ok(v) or (isinstance(v, list) and v and all(ok(i) for i in v)) for v in value
        ):
            return value
        raise self.bad(key, value, "use a positive integer, or a list with one positive "
                       "integer (or per-axis list of them) per convolutional layer")

    def cnn_geometry(self, model, in_shape):
        if len(in_shape) not in (2, 3):
            raise self.bad("model.kind", "cnn", f"it needs channel-first inputs (C, H) or "
                           f"(C, H, W) and the data give {in_shape}; use data.image = true "
                           "(digits) or data.channel_first = true (mnist1d)")
        nd, n_conv = len(in_shape) - 1, len(model["channels"]) + (model["last"] == "conv")
        size = in_shape[1:]
        per_layer = {}
        for key in ("kernel_sizes", "strides"):
            value = model[key]
            entries = [value] * n_conv if isinstance(value, int) else value
            if len(entries) != n_conv:
                raise self.bad(f"model.{key}", value, f"use one entry per convolutional layer "
                               f"({n_conv} with model.last = {model['last']!r})")
            per_layer[key] = [(e,) * nd if isinstance(e, int) else tuple(e) for e in entries]
            if any(len(e) != nd for e in per_layer[key]):
                raise self.bad(f"model.{key}", value, f"per-axis entries need {nd} values")
        for i, (ks, ss) in enumerate(zip(per_layer["kernel_sizes"], per_layer["strides"])):
            size = tuple((n - k) // s + 1 for n, k, s in zip(size, ks, ss))
            if min(size) < 1:
                raise self.bad("model.kernel_sizes", model["kernel_sizes"],
                               f"layer {i + 1} leaves no output positions for inputs {in_shape}")
        if model["last"] == "conv" and any(n != 1 for n in size):
            raise self.bad("model.kernel_sizes", model["kernel_sizes"],
                           f"with model.last = 'conv' the last layer must leave one output "
                           f"position, it leaves {size}")

    def problem(self) -> dict:
        from ._normalization import NORMALIZATIONS

        table = self.section("problem")
        out = {
            "weight_decay": self.get(table, "problem", "weight_decay",
                                     lambda k, v: self.number(k, v, ge=0), 0.0),
            "normalization": self.get(table, "problem", "normalization",
                                      lambda k, v: self.choice(k, v, NORMALIZATIONS), "none"),
            "freeze_directions": self.get(table, "problem", "freeze_directions", self.boolean,
                                          False),
        }
        if out["freeze_directions"] and out["normalization"] != "lm-last":
            raise self.bad("problem.freeze_directions", True,
                           "it applies to problem.normalization = 'lm-last' only")
        return out

    def output(self, problem, dataset) -> dict:
        from ._observables import GROUPS

        table = self.section("output")
        groups = self.get(table, "output", "observables", lambda k, v: self.names(
            k, v, tuple(GROUPS), allow_empty=True), ())
        default = ["loss", "rho", "margin_min", "balance_gap"]
        default += ["v_norm"] if problem["normalization"] == "wn" else []
        allowed = None if groups else PLOTTABLE  # a group's names are known after a run only
        plot = self.get(table, "output", "plot", lambda k, v: self.names(k, v, allowed),
                        tuple(default))
        facts = {"normalization": problem["normalization"], "n_test": dataset.n_test}
        for item in plot:
            if item in _NEEDS and not _NEEDS[item][0](facts):
                raise self.bad("output.plot", list(plot),
                               f"{item!r} is recorded with {_NEEDS[item][1]} only")
        logy = self.get(table, "output", "logy", lambda k, v: self.names(
            k, v, plot, allow_empty=True), ())
        return {"plot": plot, "logy": logy, "observables": groups}

    def names(self, key, value, allowed, allow_empty=False) -> tuple:
        items = value if isinstance(value, list) else None
        if items is None or (not items and not allow_empty) or not all(
            isinstance(i, str) and (allowed is None or i in allowed) for i in items
        ):
            what = "a list of names" + (" among " + ", ".join(allowed) if allowed else "")
            raise self.bad(key, value, "use " + what)
        return tuple(items)

    # -- the dynamics --
    def timing(self, table, section):
        base = self.section("time")
        t1 = self.get(base, "time", "t1", lambda k, v: self.number(k, v, gt=0), None)
        every = self.get(base, "time", "save_every", lambda k, v: self.number(k, v, gt=0), None)
        t1 = self.get(table, section, "t1", lambda k, v: self.number(k, v, gt=0), t1)
        if t1 is None:
            raise self.missing(f"{section}.t1", f"set {section}.t1 or time.t1 (a number > 0)")
        every = self.get(table, section, "save_every", lambda k, v: self.number(k, v, gt=0), every)
        return t1, every

    def runs(self, n: int, groups) -> tuple[RunSpec, ...]:
        runs: list[RunSpec] = []
        enabled = {}
        for section in DYNAMICS:
            table = self.section(section)
            enabled[section] = bool(table) and self.get(table, section, "enabled", self.boolean,
                                                        True)
        if not any(enabled.values()):
            raise ConfigError("nothing to run: add a [flow], [gd] or [sgd] table (or enable one)")
        if enabled["flow"]:
            runs.append(self.flow_run(self.section("flow"), groups))
        lr_check = lambda k, v: self.many(  # noqa: E731
            k, v, lambda i: self.number(k, i, gt=0), "a number > 0")
        momentum = lambda k, v: self.number(k, v, ge=0, lt=1)  # noqa: E731
        for section in ("gd", "sgd"):
            if not enabled[section]:
                continue
            table = self.section(section)
            t1, every = self.timing(table, section)
            lrs = self.get(table, section, "lr", lr_check, need=f"set {section}.lr (a number > 0 "
                           "or a list of them)")
            common = {"t1": t1, "save_every": every, "observables": tuple(groups),
                      "momentum": self.get(table, section, "momentum", momentum, 0.0)}
            if section == "gd":
                batches, seed = (n,), 0
                common["sampling"] = "without-replacement"
            else:
                batches = self.get(table, "sgd", "batch_size", lambda k, v: self.many(
                    k, v, lambda i: self.integer(k, i, ge=1, le=n),
                    f"an integer in [1, N] (N = {n} training samples)"),
                    need=f"set sgd.batch_size (an integer in [1, {n}] or a list of them)")
                from ._sgd import SAMPLING

                common["sampling"] = self.get(table, "sgd", "sampling",
                                              lambda k, v: self.choice(k, v, SAMPLING), SAMPLING[0])
                seeds = self.get(table, "sgd", "seeds", lambda k, v: self.integer(k, v, ge=1), 1)
                common["seeds"] = None if seeds == 1 else seeds
                seed = self.get(table, "sgd", "seed", lambda k, v: self.integer(k, v, ge=0), 0)
            for key, values in ((f"{section}.lr", lrs), ("sgd.batch_size", batches)):
                if len(set(values)) != len(values):
                    raise self.bad(key, list(values), "use distinct values")
            for lr in lrs:
                if round(t1 / lr) < 1:
                    raise self.bad(f"{section}.lr", lr, f"it gives no step before t1 = {t1}; "
                                   "use lr <= t1")
                for b in batches:
                    label = f"{section}_lr{lr:g}" + (f"_b{b}" if section == "sgd" else "")
                    runs.append(RunSpec(label, section, {"lr": lr, "batch_size": b, **common},
                                        seed))
        return tuple(runs)

    def flow_run(self, table, groups) -> RunSpec:
        from ._flow import (DEFAULT_ATOL, DEFAULT_DTMIN, DEFAULT_MAX_STEPS, DEFAULT_RTOL,
                            DEFAULT_SOLVER, SOLVERS)

        t1, every = self.timing(table, "flow")
        positive = lambda k, v: self.number(k, v, gt=0)  # noqa: E731
        solver = self.get(table, "flow", "solver", lambda k, v: self.choice(k, v, tuple(SOLVERS)),
                          DEFAULT_SOLVER)

        def dtmin(key, value):
            if value is False:
                return None
            if not _is_number(value) or value <= 0:
                raise self.bad(key, value, "use a number > 0, or false for no step floor")
            return float(value)

        opts = {
            "t1": t1, "save_every": every, "solver": solver,
            "rtol": self.get(table, "flow", "rtol", positive, DEFAULT_RTOL),
            "atol": self.get(table, "flow", "atol", positive, DEFAULT_ATOL),
            "dtmin": self.get(table, "flow", "dtmin", dtmin, DEFAULT_DTMIN),
            "dt0": self.get(table, "flow", "dt0", positive, None),
            "max_steps": self.get(table, "flow", "max_steps",
                                  lambda k, v: self.integer(k, v, ge=1), DEFAULT_MAX_STEPS),
            "on_max_steps": self.get(table, "flow", "on_max_steps",
                                     lambda k, v: self.choice(k, v, ("raise", "truncate")), "raise"),
            "observables": tuple(groups),
        }
        import diffrax

        if opts["dt0"] is None and not isinstance(SOLVERS[solver](), diffrax.AbstractAdaptiveSolver):
            raise self.missing("flow.dt0", f"solver {solver!r} takes fixed steps; set flow.dt0 > 0")
        return RunSpec("flow", "flow", opts)
