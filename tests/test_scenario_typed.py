"""Scenarios as typed objects: the schema derived from the registries and the defaults tables,
typed overrides (no ``--set`` strings inside the program), one dispatch, one cache key."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_scenario import scenario_text

import gradflow as gf
from gradflow.dynamics import ODE_DEFAULTS, SDE_DEFAULTS, SGD_DEFAULTS
from gradflow.scenario import (
    DYNAMICS,
    MODELS,
    SCHEMA,
    ConfigError,
    load_config,
    scenario_key,
    sweep_points,
)
from gradflow.scenario._registry import call
from gradflow.scenario._schema import KIND_KEYS

ROOT = Path(__file__).resolve().parent.parent

RUNS = """
[flow]
rtol = 1e-5
[sde]
lr = 0.05
batch_size = 4
seed = 3
[gd]
lr = 0.05
[sgd]
lr = [0.02, 0.05]
batch_size = 8
seed = 7
sampling = "with-replacement"
"""


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "typed.toml"
    path.write_text(scenario_text("typed", tables=RUNS))
    return path


def test_schema_is_derived_from_the_registries_and_the_defaults_tables():
    """[model] holds the registry's keys of every kind once; each dynamics' section is its
    registry entry; the defaults are the tables of gradflow.dynamics."""
    own = [k for entry in MODELS.values() for k in entry.keys]
    assert list(SCHEMA["model"]) == ["kind", "init_scale", "seed", *dict.fromkeys(own)]
    assert SCHEMA["model"]["kind"][0].options == tuple(MODELS)
    assert KIND_KEYS == {kind: tuple(entry.keys) for kind, entry in MODELS.items()}
    for section, entry in DYNAMICS.items():
        assert SCHEMA[section] == dict(entry.keys), section
    defaults = {section: {k: d for k, (_, d) in SCHEMA[section].items()} for section in DYNAMICS}
    assert {k: defaults["flow"][k] for k in ("solver", "rtol", "atol", "dtmin", "max_steps")} == {
        k: ODE_DEFAULTS[k] for k in ("solver", "rtol", "atol", "dtmin", "max_steps")
    }
    assert (defaults["sde"]["solver"], defaults["sde"]["max_steps"]) == (
        SDE_DEFAULTS["solver"],
        SDE_DEFAULTS["max_steps"],
    )
    for section in ("gd", "sgd"):
        assert defaults[section]["momentum"] == SGD_DEFAULTS["momentum"]
        assert defaults[section]["nesterov"] == SGD_DEFAULTS["nesterov"]
    assert defaults["sgd"]["sampling"] == defaults["sde"]["sampling"] == SGD_DEFAULTS["sampling"]


def test_typed_overrides_are_the_command_lines_values(path):
    """A typed override, a ``--set`` item and ``Scenario.replace`` give one scenario (same runs,
    same problem, same key), and the value stays the float it was given."""
    by_set = load_config(path, ["problem.weight_decay=0.05", "sgd.lr=[0.03]"])
    typed = load_config(path, overrides={"problem.weight_decay": 0.05, "sgd.lr": [0.03]})
    replaced = load_config(path).replace({"sgd.lr": [0.03]}, weight_decay=0.05)
    for config in (typed, replaced):
        assert config.runs == by_set.runs and config.problem == by_set.problem
        assert scenario_key(config, "code") == scenario_key(by_set, "code")
    assert type(typed.problem["weight_decay"]) is float and typed.problem["weight_decay"] == 0.05
    assert typed.value("problem.weight_decay") == 0.05 and typed.value("flow.rtol") == 1e-5
    assert typed.value("flow.atol") == 1e-6  # a key absent from the table: its default
    assert [s.options["lr"] for s in typed.runs if s.dynamics == "sgd"] == [0.03]
    # a string is a string: a program's override is never parsed as TOML
    with pytest.raises(ConfigError, match=r"^problem\.weight_decay='0\.05' is not allowed"):
        load_config(path, overrides={"problem.weight_decay": "0.05"})


def test_replace_validates_with_one_line_naming_the_key(path):
    config = load_config(path, fast=True)
    assert config.replace(weight_decay=0.2).fast is True
    with pytest.raises(ConfigError) as err:
        config.replace(weight_decay=-1.0)
    assert str(err.value) == (
        "problem.weight_decay=-1.0 is not allowed; use a number >= 0 (from replace)"
    )
    with pytest.raises(
        ConfigError,
        match=r"^lr=0\.1 is not allowed; name it with its "
        r"section: sde\.lr, gd\.lr, sgd\.lr$",
    ):
        config.replace(lr=0.1)
    with pytest.raises(ConfigError, match=r"^nope=1 is not allowed; use a key of one"):
        config.replace(nope=1)
    with pytest.raises(ConfigError, match=r"^override key 'weight_decay' is not allowed"):
        load_config(path, overrides={"weight_decay": 0.1})


def _called(options: dict) -> dict:
    """A run's options as the call receives them: the scenario key ``on_max_steps`` becomes the
    dynamics' one switch, ``throw`` (``"raise"`` -> True, ``"truncate"`` -> False)."""
    out = dict(options)
    if "on_max_steps" in out:
        out["throw"] = out.pop("on_max_steps") == "raise"
    return out


def test_call_resolves_each_dynamics_to_its_entry_and_arguments(path):
    """The one dispatch: flow -> gf.flow(options); sde -> gf.flow with the SGD noise of (η, B,
    sampling) and the run's key; gd, sgd -> gf.sgd with the run's key."""
    config = load_config(path)
    by = {s.label: s for s in config.runs}
    assert list(by) == ["flow", "sde_lr0.05_b4", "gd_lr0.05", "sgd_lr0.02_b8", "sgd_lr0.05_b8"]
    entry, kw = call(by["flow"])
    assert entry is gf.flow and kw == _called(by["flow"].options) and "noise" not in kw
    entry, kw = call(by["sde_lr0.05_b4"])
    assert entry is gf.flow
    noise = kw.pop("noise")
    assert (noise.lr, noise.batch_size, noise.sampling) == (0.05, 4, "without-replacement")
    np.testing.assert_array_equal(kw.pop("key"), jax.random.PRNGKey(3))
    assert kw == _called(
        {
            k: v
            for k, v in by["sde_lr0.05_b4"].options.items()
            if k not in ("lr", "batch_size", "sampling")
        }
    )
    for label, seed in (("gd_lr0.05", 0), ("sgd_lr0.05_b8", 7)):
        entry, kw = call(by[label])
        assert entry is gf.sgd
        np.testing.assert_array_equal(kw.pop("key"), jax.random.PRNGKey(seed))
        assert kw == _called(by[label].options)
    assert by["sgd_lr0.05_b8"].options["sampling"] == "with-replacement"
    assert by["gd_lr0.05"].options["batch_size"] == 16  # GD: B = N


def test_no_dynamics_is_chosen_by_comparing_its_name():
    """The runner, the sweep engine and the figures' cache resolve a run through the registry
    (``call``, ``DYNAMICS[...]``), not by comparing "flow" / "sde" / "sgd" strings."""
    pattern = re.compile(r"dynamics\s*(==|!=|in\b)")
    for name in (
        "gradflow/scenario/_run.py",
        "gradflow/scenario/_sweep.py",
        "paper_figs/_common.py",
    ):
        found = [ln for ln in (ROOT / name).read_text().splitlines() if pattern.search(ln)]
        assert not found, (name, found)


def test_one_cache_key_for_sweeps_and_figures(path):
    """``scenario_key`` names a sweep's point and a figure's cached folder alike: it depends on
    the table, the runs, ``fast`` and the code, and not on how an override was written."""
    (by_set,) = sweep_points(path, [["problem.weight_decay=0.05"]])
    (typed,) = sweep_points(path, [{"problem.weight_decay": 0.05}])
    key = scenario_key(typed.config, "v1")
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert scenario_key(by_set.config, "v1") == key
    assert scenario_key(typed.config, "v2") != key
    assert scenario_key(typed.config.replace(weight_decay=0.06), "v1") != key
    assert (
        scenario_key(load_config(path, overrides={"problem.weight_decay": 0.05}, fast=True), "v1")
        != key
    )
