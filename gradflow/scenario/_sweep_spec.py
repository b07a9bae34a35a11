"""The ``[sweep]`` table of a scenario: its axes, validated and expanded into points.

    [sweep]
    mode = "grid"                 # "grid" (every combination) | "zip" (the i-th of every axis)
    batch = true                  # batch points that differ only in traced values (default)
    [sweep.axes]
    "problem.weight_decay" = [0.0, 1e-3, 1e-2]
    "sgd.lr" = [0.02, 0.05]
    "model.widths" = [[16, 16], [32, 32]]

Every point is the scenario with its axis values applied as overrides (after ``[fast]`` and
``--set``), and every point is validated like a scenario before anything is computed: a bad
value names the axis ("... (from sweep.axes)").
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._validate import ConfigError, did_you_mean
from ._config import Scenario, overrides_of, read_table, validate
from ._limits import check_limits
from ._schema import SCHEMA

#: Keys whose values enter the compiled dynamics as arrays (λ, η, initial weights, data
#: values, tolerances): points that differ only in these are batched into one vmapped call.
TRACED = frozenset(
    {
        "problem.weight_decay",
        "sgd.lr",
        "gd.lr",
        "model.init_scale",
        "model.seed",
        "sgd.seed",
        "data.seed",
        "data.label_noise",
        "flow.rtol",
        "flow.atol",
        "flow.dtmin",
    }
)
SWEEP_KEYS = ("mode", "batch", "axes")
#: The most points a sweep may have (a typo such as a 10⁶-point grid is refused up front).
MAX_POINTS = 100_000


@dataclasses.dataclass(frozen=True)
class Point:
    """One point: its position on the axes, its values, its validated configuration."""

    index: tuple[int, ...]
    values: dict[str, Any]
    config: Scenario
    overrides: tuple

    @property
    def group(self) -> str:
        """The values of the shape-changing axes: points of one group may share a batch."""
        return json.dumps(
            {k: v for k, v in self.values.items() if k not in TRACED}, sort_keys=True, default=str
        )


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    mode: str
    batch: bool
    axes: dict[str, list]
    points: tuple[Point, ...]
    table: dict
    source: Path | None
    fast: bool
    sets: tuple


def _bad(key: str, value, allowed: str) -> ConfigError:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return ConfigError(f"{key}={text} is not allowed; {allowed}")


def _flatten(table: dict, prefix: str = "") -> dict:
    """TOML dotted keys ``{"problem": {"weight_decay": [...]}}`` to ``"problem.weight_decay"``."""
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _axes(table) -> dict[str, list]:
    if not isinstance(table, dict) or not table:
        raise _bad(
            "sweep.axes",
            table,
            'use a table of dotted keys, e.g. "problem.weight_decay" = [0, 0.01]',
        )
    axes = _flatten(table)
    for key, values in axes.items():
        section, _, rest = key.partition(".")
        if not rest:
            raise _bad(f"sweep.axes.{key}", values, "use a dotted key section.key")
        if section not in SCHEMA or section == "scenario":
            allowed = [s for s in SCHEMA if s != "scenario"]
            raise _bad(
                f"sweep.axes.{key}",
                values,
                "its section must be one of " + ", ".join(allowed) + did_you_mean(section, allowed),
            )
        if section != "data" and rest not in SCHEMA[section]:
            raise _bad(
                f"sweep.axes.{key}",
                values,
                f"[{section}] has no key {rest!r}; use one of "
                + ", ".join(SCHEMA[section])
                + did_you_mean(rest, SCHEMA[section]),
            )
        if not isinstance(values, list) or not values:
            raise _bad(f"sweep.axes.{key}", values, "use a non-empty list of values")
        seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(seen)) != len(seen):
            raise _bad(f"sweep.axes.{key}", values, "use distinct values")
    return axes


def _table_of(scenario) -> tuple[dict, Path | None]:
    """A scenario's table (a copy) and its file, from a path or an already parsed table."""
    if isinstance(scenario, dict):
        return dict(scenario), None
    return read_table(Path(scenario)), Path(scenario)


def load_sweep(scenario, sets=(), *, fast: bool = False, limits: bool = True) -> SweepSpec:
    """Read a scenario file (or a parsed table) with a ``[sweep]`` table, validate the table and
    EVERY point; raises :class:`ConfigError` (one line) before anything is computed.
    ``sets``: overrides of every point, a mapping of dotted keys to typed values or the
    command line's ``--set`` items (:func:`gradflow.scenario.overrides_of`)."""
    table, source = _table_of(scenario)
    sweep = table.pop("sweep", None)
    parsed = overrides_of(sets)
    for path, value, _ in (p for p in parsed if p[0][0] == "sweep"):  # --set sweep.mode=zip
        sweep = dict(sweep) if isinstance(sweep, dict) else {}
        if path[1:2] == ("axes",) and len(path) > 2:
            sweep["axes"] = {**_flatten(sweep.get("axes") or {}), ".".join(path[2:]): value}
        else:
            sweep[".".join(path[1:])] = value
    if not isinstance(sweep, dict):
        raise _bad("sweep", sweep, "a sweep needs a [sweep] table with [sweep.axes]")
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise _bad(
                f"sweep.{key}",
                sweep[key],
                "use " + ", ".join(SWEEP_KEYS) + did_you_mean(key, SWEEP_KEYS),
            )
    mode = sweep.get("mode", "grid")
    if mode not in ("grid", "zip"):
        raise _bad("sweep.mode", mode, "use 'grid' or 'zip'")
    batch = sweep.get("batch", True)
    if not isinstance(batch, bool):
        raise _bad("sweep.batch", batch, "use true or false")
    axes = _axes(sweep.get("axes"))
    names = list(axes)
    if mode == "zip":
        lengths = {len(v) for v in axes.values()}
        if len(lengths) != 1:
            raise _bad(
                "sweep.axes",
                {k: len(v) for k, v in axes.items()},
                "with mode = 'zip' every axis needs the same length",
            )
        positions = [(i,) * len(names) for i in range(lengths.pop())]
    else:  # the size from the axis lengths, before any product is built
        size = math.prod(len(axes[n]) for n in names)
        if size > MAX_POINTS:
            lengths = " × ".join(str(len(axes[n])) for n in names)
            raise _bad(
                "sweep.axes", f"{lengths} = {size} points", f"use at most {MAX_POINTS} points"
            )
        positions = list(itertools.product(*(range(len(axes[n])) for n in names)))
    if len(positions) > MAX_POINTS:
        raise _bad("sweep.axes", f"{len(positions)} points", f"use at most {MAX_POINTS} points")
    base = tuple(p for p in parsed if p[0][0] != "sweep")
    points = []
    for index in positions:
        values = {n: axes[n][i] for n, i in zip(names, index)}
        points.append(make_point(table, base, values, index, fast, source, limits, "sweep.axes"))
    name = points[0].config.name
    sets = dict(sets) if isinstance(sets, Mapping) else tuple(sets)
    return SweepSpec(name, mode, batch, axes, tuple(points), table, source, fast, sets)


def sweep_points(scenario, point_sets, *, fast: bool = False, limits: bool = True) -> tuple:
    """The validated :class:`Point` of each entry of ``point_sets`` (per point, its typed
    overrides ``{"problem.weight_decay": 0.05}``, or ``--set`` items) of ``scenario`` (a file or
    its parsed table): a sweep given as a list of points rather than as axes. Every point is
    validated before this returns (a bad one is a one-line :class:`ConfigError`); run them with
    :func:`gradflow.scenario.run_points`."""
    table, source = _table_of(scenario)
    table.pop("sweep", None)
    out = []
    for i, sets in enumerate(point_sets):
        items = overrides_of(sets)
        values = {".".join(path): value for path, value, _ in items}
        origin = items[0][2] if items else "overrides"
        out.append(make_point(table, (), values, (i,), fast, source, limits, origin))
    return tuple(out)


def make_point(table, base, values, index, fast, source, limits=True, origin="sweep.axes"):
    """The validated :class:`Point` of ``table`` with the overrides ``base`` (``(path, value,
    origin)``: :func:`gradflow.scenario.overrides_of`) and then ``values`` (dotted key ->
    value, said to come from ``origin``)."""
    overrides = tuple(base) + tuple((tuple(n.split(".")), v, origin) for n, v in values.items())
    config = validate(table, overrides, fast=fast, source=source)
    check_limits(config, limits=limits)
    return Point(tuple(index), dict(values), config, overrides)
