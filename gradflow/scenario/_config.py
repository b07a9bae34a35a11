"""Scenario files: reading, ``--set`` overrides, ``--fast``, and validation.

A scenario is validated completely before anything is computed (DESIGN.md, "Bad input"): every
section and key is known, every value has the right type and an allowed value, and the cross
checks that need the data (``1 <= sgd.batch_size <= N``) are done by loading the data set, which
is cheap. No model is built and no dynamics run here. Each problem is a :class:`ConfigError`
whose message is ONE line naming the dotted key, the value received and what is allowed.

The sections and keys, with each key's check and default, are
:data:`gradflow.scenario._schema.SCHEMA` (built from the value checks of :mod:`gradflow._validate`).

Order of precedence: the file, then ``[fast]`` (with ``--fast``), then each ``--set``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diffrax

# ConfigError is also imported from this module (by the CLI, the tests and the figures).
from .._observables import GROUPS
from .._parametrization import PARAMETRIZATIONS
from .._validate import (
    FILE_NAME,
    REQUIRED,
    Check,
    ConfigError,
    choice,
    did_you_mean,
    integer,
    names,
    one_or_many,
)
from ..dynamics import SDE_DEFAULTS, SOLVERS
from ._schema import DYNAMICS, FREEZABLE, KIND_KEYS, NEEDS, PAPER_CNN, PLOTTABLE, SCHEMA

# ---- the validated scenario -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: ``dynamics`` (a section of :data:`gradflow.scenario._registry.DYNAMICS`:
    "flow", "sde", "gd", "sgd") with its validated options; :func:`._registry.call` turns it
    into the call of gf.flow / gf.sgd."""

    label: str
    dynamics: str
    options: dict[str, Any]
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated scenario: the problem's parts (``model``, ``problem``; ``dataset`` is
    loaded, as validation needs ``N``; nothing else is), its runs, its outputs.

    ``table`` is the merged table that was validated (the file, ``[fast]`` when ``fast``, the
    overrides): :meth:`replace` validates it again with further typed overrides, and
    :func:`gradflow.scenario.scenario_key` hashes it (with the runs) into the cache key."""

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
    #: ``[equilibrium]``: the options of gf.equilibrium after the flow run, or None.
    equilibrium: dict[str, Any] | None = None
    #: whether the ``[fast]`` table was applied
    fast: bool = False

    def replace(self, overrides=None, /, **keys) -> Scenario:
        """This scenario with typed overrides, validated again (one line per bad value).

        ``overrides``: dotted key -> value, e.g. ``{"problem.weight_decay": 0.05}``;
        ``keys``: a key that only one section has, e.g. ``scenario.replace(weight_decay=0.05)``.
        """
        items = overrides_of(overrides or {}, "replace")
        items += [(_path(dotted_key(k, v)), v, "replace") for k, v in keys.items()]
        out = _Validator(
            self.table,
            items,
            False,
            Path(self.source) if self.source else None,
        ).config()
        return dataclasses.replace(out, fast=self.fast)

    def value(self, key: str):
        """The validated value of the dotted ``key`` (``"problem.weight_decay"``,
        ``"model.widths"``, ``"sgd.lr"``; a key absent from the table: its default, None where
        it has none)."""
        section, _, name = key.partition(".")
        if section in ("model", "problem") and name in getattr(self, section):
            return getattr(self, section)[name]
        table = self.table.get(section) or {}
        if name in table:
            return table[name]
        default = SCHEMA.get(section, {}).get(name, (None, None))[1]
        return None if default is REQUIRED else default


def dotted_key(name: str, value=None) -> str:
    """The dotted key of ``name``: itself when dotted, else the one section that has it
    (``weight_decay`` -> ``problem.weight_decay``); a :class:`ConfigError` otherwise."""
    if "." in name:
        return name
    owners = [s for s, keys in SCHEMA.items() if name in keys and s != "scenario"]
    if len(owners) != 1:
        allowed = (
            "name it with its section: " + ", ".join(f"{s}.{name}" for s in owners)
            if owners
            else "use a key of one section (e.g. weight_decay) or a dotted key section.key"
        )
        raise ConfigError(f"{name}={_show(value)} is not allowed; {allowed}")
    return f"{owners[0]}.{name}"


def parse_set(item: str) -> tuple[tuple[str, ...], Any]:
    """``"sgd.lr=0.1"`` -> ``(("sgd", "lr"), 0.1)``; a TOML literal, else a bare string.
    The command line's ``--set`` only: a program passes typed overrides (:func:`overrides_of`)."""
    key, sep, text = (part.strip() for part in item.partition("="))
    if not sep or not text or not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)+", key):
        raise ConfigError(f"--set {item!r} is not allowed; use --set section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return tuple(key.split(".")), value


def overrides_of(items, origin: str = "overrides") -> list[tuple[tuple[str, ...], Any, str]]:
    """Typed overrides as ``(key path, value, origin)``, in order, from a mapping of dotted keys
    to values (``{"problem.weight_decay": 0.05}``), from ``--set`` items as the command line
    gives them (``["sgd.lr=0.1"]``: parsed here, once, said to come from ``--set``) or from
    ``(path, value[, origin])`` tuples. ``origin`` names where a value came from in an error
    (``... (from --set)``)."""
    if isinstance(items, Mapping):
        return [(_path(k), v, origin) for k, v in items.items()]
    if isinstance(items, str):
        raise ConfigError(
            f"overrides={items!r} is not allowed; use a mapping of dotted keys to values or a "
            "list of --set items"
        )
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((*parse_set(item), "--set"))
        else:
            out.append((_path(item[0]), item[1], item[2] if len(item) > 2 else "--set"))
    return out


def _path(key) -> tuple[str, ...]:
    if isinstance(key, tuple):
        return key
    if not isinstance(key, str) or "." not in key:
        raise ConfigError(f"override key {key!r} is not allowed; use a dotted key section.key")
    return tuple(key.split("."))


def load_config(path, sets=(), fast: bool = False, *, overrides=None) -> Scenario:
    """Read, merge (``[fast]`` under ``fast``, then ``sets``: ``--set`` items as the command
    line gives them, then ``overrides``: dotted key -> typed value) and validate a scenario."""
    path = Path(path)
    items = overrides_of(sets) + overrides_of(overrides or {})
    return validate(read_table(path), items, fast=fast, source=path)


def read_table(path) -> dict:
    """The parsed TOML table of a scenario file (a :class:`ConfigError` if it cannot be)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"scenario file {str(path)!r} is a directory; give a scenario .toml file")
    if not path.is_file():
        raise ConfigError(f"scenario file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None


def validate(table: dict, overrides=(), *, fast: bool = False, source=None) -> Scenario:
    """Validate a parsed scenario table (see the module docstring); raises :class:`ConfigError`.
    ``overrides``: as :func:`overrides_of` takes them (a mapping of dotted keys to values)."""
    items = overrides_of(overrides)
    config = _Validator(table, items, fast, Path(source) if source else None).config()
    return dataclasses.replace(config, fast=bool(fast))


# ---- validation -------------------------------------------------------------------------


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Validator:
    def __init__(self, table, overrides, fast, source):
        self.source = source
        self.origin: dict[str, str] = {}  # dotted key -> "fast" | "--set"
        self.table = copy.deepcopy(table)
        # an override is (path, value, origin): --set, a sweep axis, a program's overrides
        for path, value, origin in overrides:  # --set fast.x.y=... edits the [fast] table itself
            if path[0] == "fast":
                self.put(self.table, path, value, origin)
        fast_table = self.table.pop("fast", {})
        self.check_fast(fast_table)
        if fast:
            for section, values in fast_table.items():
                for key, value in values.items():
                    self.put(self.table, (section, key), value, "fast")
        for path, value, origin in overrides:
            if path[0] != "fast":
                self.put(self.table, path, value, origin)

    def bad(self, key: str, value, allowed: str, what: str = "is not allowed") -> ConfigError:
        origin = self.origin.get(key)
        name = "fast." + key if origin == "fast" else key
        note = f" (from {origin})" if origin not in (None, "fast") else ""
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
                        f"allowed in [{section}]: {', '.join(allowed)}"
                        + did_you_mean(key, allowed),
                        "is not a known key",
                    )

    @staticmethod
    def data_keys(table) -> tuple[str, ...]:
        """``name`` and the options of the data set named in ``table`` (all loaders' if unknown)."""
        from .. import data as gfdata

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
                    f"allowed in [{name}]: {', '.join(SCHEMA[name])}"
                    + did_you_mean(key, SCHEMA[name]),
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
            hint = did_you_mean(table[key], check.options) if check.options else ""
            raise self.bad(f"{section}.{key}", table[key], check.allowed + hint)
        return check.convert(table[key])

    def read(self, section: str, keys) -> dict:
        table = self.section(section)
        return {key: self.get(table, section, key) for key in keys}

    # -- the sections --
    def config(self) -> Scenario:
        for name, value in self.table.items():
            if name == "sweep":
                raise ConfigError(
                    "sweep: a scenario with a [sweep] table runs with `gradflow sweep FILE` "
                    "(or gf.sweep); `gradflow run` runs one point"
                )
            if name not in SCHEMA:
                raise self.bad(
                    name,
                    value,
                    f"allowed: {', '.join(SCHEMA)}, fast" + did_you_mean(name, (*SCHEMA, "fast")),
                    "is not a known section",
                )
        scenario = self.read("scenario", SCHEMA["scenario"])
        name = scenario["name"] or (self.source.stem if self.source else None)
        if not FILE_NAME.test(name):
            raise self.bad("scenario.name", name, FILE_NAME.allowed)
        dataset, data = self.data()
        model = self.model(dataset.input_shape)
        problem = self.read("problem", SCHEMA["problem"])
        if problem["freeze_directions"] and problem["normalization"] not in FREEZABLE:
            raise self.bad(
                "problem.freeze_directions",
                True,
                "it applies to problem.normalization = "
                + " or ".join(map(repr, FREEZABLE))
                + " only",
            )
        output = self.output(problem["normalization"], dataset.n_test)
        runs = self.runs(dataset.n_train, output["observables"])
        equilibrium = self.equilibrium(runs)
        table = dict(self.table, data=data)
        return Scenario(
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
            equilibrium,
        )

    def data(self):
        from .. import data as gfdata

        table = self.section("data", required=True)
        name = self.get(table, "data", "name", choice(gfdata.names()))
        opts = {k: v for k, v in table.items() if k != "name"}
        allowed = self.data_keys(table)[1:]
        for key, value in opts.items():
            if key not in allowed:
                raise self.bad(
                    f"data.{key}",
                    value,
                    f"options of dataset {name!r}: {', '.join(allowed)}"
                    + did_you_mean(key, allowed),
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
        elif kind == "paper-cnn":
            self.cnn_geometry(PAPER_CNN, in_shape, kind)
        return model

    def cnn_geometry(self, model, in_shape, kind: str = "cnn"):
        """Check the LocalCNN's layer sizes against the data without building it."""
        if len(in_shape) not in (2, 3):
            raise self.bad(
                "model.kind",
                kind,
                f"it needs channel-first inputs (C, H) or (C, H, W) and the data give "
                f"{in_shape}; use data.image = true (digits) or data.channel_first = "
                "true (mnist1d)",
            )
        nd, n_conv = len(in_shape) - 1, len(model["channels"]) + (model["last"] == "conv")
        per_layer = {}
        for key in ("kernel_sizes", "strides", "padding"):
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
        layers = zip(per_layer["kernel_sizes"], per_layer["strides"], per_layer["padding"])
        for i, (ks, ss, ps) in enumerate(layers):
            size = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, ks, ss, ps))
            if min(size) < 1:
                if kind != "cnn":
                    raise self.bad(
                        "model.kind",
                        kind,
                        f"its layer {i + 1} leaves no output positions for inputs {in_shape}",
                    )
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
        table = self.section("output")
        groups = self.get(table, "output", "observables", names(tuple(GROUPS)))
        default = ["loss", "rho", "margin_min", "balance_gap"]
        default += ["v_norm"] if "v_norm" in PARAMETRIZATIONS[normalization].observables else []
        # a group's observables are named by the run only: any name goes when groups are asked
        plot = self.get(
            table, "output", "plot", names(None if groups else PLOTTABLE, False), tuple(default)
        )
        for item in plot:
            if item in NEEDS and not NEEDS[item][0](normalization, n_test):
                raise self.bad(
                    "output.plot", list(plot), f"{item!r} is recorded with {NEEDS[item][1]} only"
                )
        logy = self.get(table, "output", "logy", names(plot))
        predictions = self.get(table, "output", "predictions")
        return {"plot": plot, "logy": logy, "observables": groups, "predictions": predictions}

    def equilibrium(self, runs) -> dict | None:
        """``[equilibrium]``: gf.equilibrium's options, started from the end of the flow run."""
        if self.table.get("equilibrium") is None:
            return None
        table = self.section("equilibrium")  # present, even empty: enabled with the defaults
        opts = {key: self.get(table, "equilibrium", key) for key in SCHEMA["equilibrium"]}
        if not opts.pop("enabled"):
            return None
        if not any(spec.dynamics == "flow" for spec in runs):
            raise self.bad(
                "equilibrium.enabled",
                True,
                "the fixed point is polished from the end of the [flow] run: add a [flow] "
                "table, or set equilibrium.enabled = false",
            )
        return opts

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
        """Euler–Maruyama takes ``ceil(t1/dt0)`` steps (``dt0`` defaults to ``lr/4``); an
        ``lr`` beyond ``t1`` (one SGD step is ``t = lr``) is refused."""
        if lr > opts["t1"]:
            raise self.bad(
                "sde.lr",
                lr,
                f"it exceeds the horizon t1 = {opts['t1']:g} (one SGD step is t = lr, the "
                f"SDE's default step lr/4): use lr <= t1",
            )
        dt0 = opts["dt0"] or lr / SDE_DEFAULTS["steps_per_lr"]
        steps = math.ceil(opts["t1"] / dt0 - 1e-9)
        if steps > opts["max_steps"]:
            raise self.bad(
                "sde.max_steps",
                opts["max_steps"],
                f"t1 / dt0 = {steps} steps are needed (dt0 = {dt0:g})",
            )
