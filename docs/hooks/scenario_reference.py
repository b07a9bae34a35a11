"""MkDocs hook: generate the scenario reference from gradflow's own tables at build time.

On the page ``scenarios.md`` this hook replaces

* the line ``<!-- scenario-reference -->`` by one table per section of the scenario schema
  (``SCHEMA``: section -> key -> ``(check, default)``): key, default, what is allowed. The
  "allowed" text is the check's ``allowed`` string, the very text that a validation error
  prints; ``REQUIRED`` defaults are shown as "required";
* the line ``<!-- data-reference -->`` by the data sets that ``[data] name`` accepts
  (``gradflow.data.names()``) and the options of each (``gradflow.data.options(name)``, a
  dict of option -> default), with the first paragraph of each loader's docstring.

So the reference cannot drift from the code: change a default in the schema and the page
changes with it. The schema is imported from ``gradflow.scenario._schema`` and, failing that,
from its former place ``gradflow._schema`` (``REQUIRED`` from ``gradflow._checks``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from mkdocs.exceptions import PluginError

SCENARIO_PLACEHOLDER = "<!-- scenario-reference -->"
DATA_PLACEHOLDER = "<!-- data-reference -->"
PAGE = "scenarios.md"

# What an absent key means where the schema's default is ``None`` ("derived elsewhere").
# Looked up by (section, key), then by ("*", key).
_NONE_DEFAULT = {
    ("scenario", "name"): "the file's stem",
    ("time", "t1"): "none: every dynamics needs `t1` here or in its own table",
    ("time", "save_every"): "101 save points",
    ("*", "t1"): "`time.t1`",
    ("*", "save_every"): "`time.save_every`",
    ("flow", "dt0"): "chosen by the controller; required by fixed-step solvers (`euler`)",
    ("sde", "dt0"): "`lr/{steps_per_lr}`",
    ("output", "plot"): '`["loss", "rho", "margin_min", "balance_gap"]`, plus `"v_norm"` '
    'under `normalization = "wn"`',
}
# What is allowed where the schema's check is ``None`` (the value is checked against the data
# or the problem when the scenario is validated).
_NONE_CHECK = {
    ("*", "batch_size"): "use an integer in [1, N] (N = the number of training samples) or a "
    "non-empty list of distinct ones; one run per (lr, batch_size) pair",
    ("output", "plot"): "use a non-empty list of plottable names (below); any name when "
    "`output.observables` is set",
    ("output", "logy"): "use a list of names among `output.plot`",
    ("output", "observables"): "use a list of names among the registered observable groups{groups}",
}


# ---- hook events --------------------------------------------------------------------------


def on_config(config, **kwargs):
    """Make the repository importable (the hook may run without ``pip install -e .``)."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # importing gradflow must not probe GPUs
    return config


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri != PAGE:
        return markdown
    for placeholder in (SCENARIO_PLACEHOLDER, DATA_PLACEHOLDER):
        if placeholder not in markdown:
            raise PluginError(f"{PAGE}: the line {placeholder} is missing")
    markdown = markdown.replace(SCENARIO_PLACEHOLDER, render_schema())
    return markdown.replace(DATA_PLACEHOLDER, render_data())


# ---- rendering ----------------------------------------------------------------------------


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            return None  # this module does not exist (the other location may)
        raise


def load_schema():
    """``(schema module, SCHEMA, REQUIRED)``, from the new location or the former one."""
    try:
        module = _import("gradflow.scenario._schema")
        if module is not None:
            return module, module.SCHEMA, module.REQUIRED
        module = _import("gradflow._schema")
        if module is not None:
            return module, module.SCHEMA, _import("gradflow._checks").REQUIRED
    except Exception as err:  # noqa: BLE001 - a build error that says what failed
        raise PluginError(f"scenario reference: importing gradflow failed: {err!r}") from err
    raise PluginError(
        "scenario reference: neither gradflow.scenario._schema nor gradflow._schema exists"
    )


def observable_groups() -> tuple[str, ...] | None:
    """Names of the built-in observable groups (``observables = [...]``), if findable."""
    gradflow = importlib.import_module("gradflow")
    if isinstance(getattr(gradflow, "OBSERVABLES", None), Mapping):
        return tuple(gradflow.OBSERVABLES)
    groups = getattr(gradflow, "observable_groups", None)  # before gf.OBSERVABLES existed
    if callable(groups):
        return tuple(groups())
    for name in ("gradflow._observables",):  # before gf.observable_groups() existed
        try:
            module = _import(name)
        except Exception:  # noqa: BLE001
            module = None
        groups = getattr(module, "GROUPS", None)
        if isinstance(groups, dict):
            return tuple(groups)
    return None


def _sde_steps_per_lr():
    """The SDE's fixed step is ``lr / steps_per_lr`` (gradflow.dynamics.SDE_DEFAULTS)."""
    try:
        return importlib.import_module("gradflow.dynamics").SDE_DEFAULTS["steps_per_lr"]
    except (ImportError, AttributeError, KeyError):
        return importlib.import_module("gradflow._sde").DEFAULT_STEPS_PER_LR  # before the move


def _cell(text: str) -> str:
    """One table cell: one line, ``|`` escaped outside code spans (inside them it is safe)."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def _toml(value) -> str:
    """A value as TOML would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _lookup(table: dict, section: str, key: str):
    return table.get((section, key), table.get(("*", key)))


def _default(section, key, default, required, owners) -> str:
    if default is required:
        if owners:
            return "**required** for " + ", ".join(f"`kind = {_toml(k)}`" for k in owners)
        return "**required**"
    if default is None:
        note = _lookup(_NONE_DEFAULT, section, key)
        return note.format(steps_per_lr=_sde_steps_per_lr()) if note else "—"
    return f"`{_toml(default)}`"


def _allowed(section, key, check, groups) -> str:
    allowed = getattr(check, "allowed", None) if check is not None else None
    if allowed is None:
        allowed = _lookup(_NONE_CHECK, section, key) or "checked against the data and the problem"
        allowed = allowed.format(
            groups=(": " + ", ".join(f"`{g}`" for g in groups)) if groups else ""
        )
    elif (section, key) == ("data", "name"):
        data = importlib.import_module("gradflow.data")
        allowed = "use one of " + ", ".join(f"`{n}`" for n in data.names())
    return _cell(allowed)


def render_schema() -> str:
    module, schema, required = load_schema()
    kind_keys = getattr(module, "KIND_KEYS", {})
    groups = observable_groups()
    out = []
    for section, keys in schema.items():
        out += [f"### `[{section}]`", "", "| key | default | allowed |", "|---|---|---|"]
        for key, (check, default) in keys.items():
            owners = (
                [kind for kind, ks in kind_keys.items() if key in ks] if section == "model" else []
            )
            out.append(
                f"| `{key}` | {_cell(_default(section, key, default, required, owners))} "
                f"| {_allowed(section, key, check, groups)} |"
            )
        if section == "data":
            out += ["", "Every other key of `[data]` is an option of the data set named (below)."]
        out.append("")
    plottable = getattr(module, "PLOTTABLE", None)
    if plottable:
        out += ["### Plottable observables", ""]
        out.append(
            "`output.plot` and `output.logy` take these names: "
            + ", ".join(f"`{p}`" for p in plottable)
            + "."
        )
        needs = getattr(module, "NEEDS", {})
        if needs:
            out += ["", "Some are recorded only under a condition:", ""]
            out += [f"* `{name}`: with {_cell(need[1])}" for name, need in needs.items()]
        out.append("")
    if groups:
        out += ["### Observable groups", ""]
        out.append(
            "`output.observables` takes these registered groups: "
            + ", ".join(f"`{g}`" for g in groups)
            + "; with a group, `output.plot` "
            "may name any observable the group records."
        )
        out.append("")
    return "\n".join(out)


def _summary(fn) -> str:
    """The first paragraph of a docstring, its reST ````code```` turned into Markdown's."""
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def render_data() -> str:
    data = importlib.import_module("gradflow.data")
    common = tuple(getattr(data, "COMMON", ()))
    out = []
    if common:
        out += [
            "Options common to every loader (their defaults may differ between loaders): "
            + ", ".join(f"`{c}`" for c in common)
            + ".",
            "",
        ]
    for name in data.names():
        options = data.options(name)
        out += [f"### `{name}`", ""]
        fn = getattr(data, name.replace("-", "_"), None)
        if fn is not None and _summary(fn):
            out += [_summary(fn), ""]
        out += ["| option | default | common to every loader |", "|---|---|---|"]
        for key, default in options.items():
            if default is inspect.Parameter.empty:
                shown = "**required**"
            elif default is None:
                shown = "not set"
            else:
                shown = f"`{_toml(default)}`"
            out.append(f"| `{key}` | {shown} | {'yes' if key in common else ''} |")
        out.append("")
    return "\n".join(out)
