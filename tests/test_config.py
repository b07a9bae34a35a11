"""Scenario validation (gradflow.scenario): each bad input is one line: key, value, allowed."""

import copy
import tomllib
from pathlib import Path

import numpy as np
import pytest

from gradflow.scenario import ConfigError, load_config, parse_set, validate

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

BASE = {
    "scenario": {"name": "tiny", "question": "does it validate?"},
    "data": {"name": "gaussian-mixture", "n_train": 32, "n_test": 8, "dim": 4, "seed": 0},
    "model": {"kind": "mlp", "widths": [5, 5], "init_scale": 0.5},
    "problem": {"weight_decay": 0.01, "normalization": "lm-last"},
    "time": {"t1": 2.0, "save_every": 0.5},
    "flow": {"solver": "bosh3"},
    "gd": {"lr": 0.1},
    "sgd": {"lr": [0.05, 0.1], "batch_size": [4, 8], "seed": 3},
    "fast": {"time": {"t1": 1.0}, "sgd": {"batch_size": 4}},
}


def _table(**changes):
    """BASE with ``changes`` applied: ``section__key=value`` (``None`` deletes the key)."""
    table = copy.deepcopy(BASE)
    for name, value in changes.items():
        section, key = name.split("__")
        if value is None:
            table[section].pop(key)
        else:
            table.setdefault(section, {})[key] = value
    return table


def _error(table, overrides=(), fast=False) -> str:
    with pytest.raises(ConfigError) as info:
        validate(table, [parse_set(s) for s in overrides], fast=fast)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_momentum_protocol_reaches_gf_sgd():
    """``sgd.momentum`` and ``sgd.nesterov`` (the paper's protocol: heavy ball 0.9) are keys
    of the scenario and arrive in every SGD run's options, as ``gf.sgd`` takes them."""
    config = validate(_table(sgd__momentum=0.9, sgd__nesterov=True))
    sgd = [r for r in config.runs if r.dynamics == "sgd"]
    assert sgd and all(r.options["momentum"] == 0.9 and r.options["nesterov"] for r in sgd)
    gd = next(r for r in config.runs if r.dynamics == "gd")
    assert gd.options["momentum"] == 0.0 and gd.options["nesterov"] is False


def test_valid_scenario_expands_into_runs():
    config = validate(_table())
    assert [r.label for r in config.runs] == [
        "flow",
        "gd_lr0.1",
        "sgd_lr0.05_b4",
        "sgd_lr0.05_b8",
        "sgd_lr0.1_b4",
        "sgd_lr0.1_b8",
    ]
    flow, gd, sgd = config.runs[0], config.runs[1], config.runs[2]
    assert flow.options["t1"] == 2.0 and flow.options["save_every"] == 0.5
    from gradflow.dynamics import ODE_DEFAULTS

    assert flow.options["solver"] == "bosh3" and flow.options["rtol"] == ODE_DEFAULTS["rtol"]
    assert gd.options["batch_size"] == 32 and gd.options["sampling"] == "without-replacement"
    assert sgd.options["batch_size"] == 4 and sgd.seed == 3 and sgd.options["seeds"] is None
    assert config.dataset.n_train == 32 and config.model["activation"] == "relu"
    assert config.output["plot"] == ("loss", "rho", "margin_min", "balance_gap")


def test_precedence_file_then_fast_then_set():
    assert validate(_table()).runs[0].options["t1"] == 2.0
    assert validate(_table(), fast=True).runs[0].options["t1"] == 1.0
    fast = validate(_table(), fast=True)
    assert [r.label for r in fast.runs if r.dynamics == "sgd"] == ["sgd_lr0.05_b4", "sgd_lr0.1_b4"]
    config = validate(
        _table(), [parse_set("time.t1=3"), parse_set("flow.enabled=false")], fast=True
    )
    assert config.runs[0].label == "gd_lr0.1" and config.runs[0].options["t1"] == 3.0


def test_parse_set_takes_toml_literals_or_bare_strings():
    assert parse_set("sgd.lr=0.1") == (("sgd", "lr"), 0.1)
    assert parse_set("sgd.batch_size=[8, 16]") == (("sgd", "batch_size"), [8, 16])
    assert parse_set('problem.normalization="lm-all"') == (("problem", "normalization"), "lm-all")
    assert parse_set("problem.normalization=lm-all") == (("problem", "normalization"), "lm-all")
    assert parse_set("flow.enabled=false") == (("flow", "enabled"), False)
    for bad in ("sgd.lr", "lr=0.1", "sgd.lr=", "=3"):
        with pytest.raises(ConfigError, match="use --set section.key=value"):
            parse_set(bad)


BAD = [
    # (changes, expected message)
    ({"sgd__lrr": 0.1}, "sgd.lrr=0.1 is not a known key; allowed in [sgd]: enabled, t1"),
    ({"sgd__lr": "fast"}, "sgd.lr='fast' is not allowed; use a number > 0 or a non-empty list"),
    ({"sgd__lr": 0}, "sgd.lr=0 is not allowed; use a number > 0"),
    ({"sgd__lr": [0.1, -0.1]}, "sgd.lr=[0.1, -0.1] is not allowed; use a number > 0"),
    ({"gd__lr": -1.0}, "gd.lr=-1.0 is not allowed; use a number > 0"),
    (
        {"sgd__batch_size": 33},
        "sgd.batch_size=33 is not allowed; use an integer in [1, 32] (N = 32",
    ),
    ({"sgd__batch_size": 0}, "sgd.batch_size=0 is not allowed; use an integer in [1, 32]"),
    ({"sgd__batch_size": 4.0}, "sgd.batch_size=4.0 is not allowed; use an integer in [1, 32]"),
    ({"sgd__batch_size": None}, "sgd.batch_size is missing; use an integer in [1, 32]"),
    (
        {"problem__weight_decay": -0.1},
        "problem.weight_decay=-0.1 is not allowed; use a number >= 0",
    ),
    (
        {"problem__normalization": "batch"},
        "problem.normalization='batch' is not allowed; use one of 'none', 'lm-all', 'lm-last',",
    ),
    ({"data__name": "cifar10"}, "data.name='cifar10' is not allowed; use one of 'compositional',"),
    ({"data__n_train": -4}, "data.n_train=-4 is not allowed; use an integer >= 1 (dataset "),
    ({"data__colour": 1}, "data.colour=1 is not a known option; options of dataset "),
    ({"model__kind": "resnet"}, "model.kind='resnet' is not allowed; use one of 'mlp',"),
    ({"model__widths": [4, 0]}, "model.widths=[4, 0] is not allowed; use a list of positive"),
    ({"model__channels": [3]}, "model.channels=[3] is not allowed; it applies to kind 'cnn'"),
    ({"model__init_scale": True}, "model.init_scale=True is not allowed; use a number > 0"),
    ({"flow__solver": "rk45"}, "flow.solver='rk45' is not allowed; use one of 'euler', 'heun',"),
    ({"flow__solver": "euler"}, "flow.dt0 is missing; solver 'euler' takes fixed steps"),
    ({"flow__dtmin": 0}, "flow.dtmin=0 is not allowed; use a number > 0, or false"),
    ({"sgd__momentum": 1.0}, "sgd.momentum=1.0 is not allowed; use a number >= 0 and < 1"),
    ({"sgd__nesterov": "yes"}, "sgd.nesterov='yes' is not allowed; use true or false"),
    ({"sgd__sampling": "random"}, "sgd.sampling='random' is not allowed; use one of"),
    ({"time__t1": None}, "flow.t1 is missing; set flow.t1 or time.t1"),
    ({"time__t1": -2}, "time.t1=-2 is not allowed; use a number > 0"),
    ({"gd__t1": 0.01}, "gd.lr=0.1 is not allowed; it gives no step before t1 = 0.01"),
    ({"problem__freeze_directions": 1}, "problem.freeze_directions=1 is not allowed; use true or"),
    (
        {"output__plot": ["v_norm"]},
        "output.plot=['v_norm'] is not allowed; 'v_norm' is recorded with problem.normalization",
    ),
    ({"output__plot": ["loss", "fun"]}, "output.plot=['loss', 'fun'] is not allowed; use a list"),
    ({"output__logy": ["rho_k"]}, "output.logy=['rho_k'] is not allowed; use a list of names"),
    ({"scenario__name": "a b"}, "scenario.name='a b' is not allowed; use letters, digits"),
]


@pytest.mark.parametrize(("changes", "expected"), BAD, ids=[e[:40] for _, e in BAD])
def test_bad_value_in_file(changes, expected):
    assert _error(_table(**changes)).startswith(expected)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("sgd.lr=-0.5", "sgd.lr=-0.5 is not allowed; use a number > 0"),
        ("sgd.batch_size=64", "sgd.batch_size=64 is not allowed; use an integer in [1, 32]"),
        ("sgd.batch_size=0", "sgd.batch_size=0 is not allowed"),
        ("problem.weight_decay=-1", "problem.weight_decay=-1 is not allowed; use a number >= 0"),
        ("problem.normalization=bn", "problem.normalization='bn' is not allowed; use one of"),
        ("data.name=cifar", "data.name='cifar' is not allowed; use one of"),
        ("sgd.lrr=0.1", "sgd.lrr=0.1 is not a known key"),
        ("model.widths=wide", "model.widths='wide' is not allowed"),
    ],
)
def test_bad_value_from_set_says_so(item, expected):
    message = _error(_table(), [item])
    assert message.startswith(expected) and message.endswith("(from --set)")


def test_bad_value_from_fast_table_is_named_fast():
    message = _error(_table(fast__sgd={"lr": -1}), fast=True)
    assert message.startswith("fast.sgd.lr=-1 is not allowed; use a number > 0")
    assert _error(_table(fast__sgd={"lx": 1})).startswith("fast.sgd.lx=1 is not a known key")


def test_structure_errors():
    table = _table()
    table["optimizer"] = {"name": "adam"}
    assert _error(table).startswith("optimizer={'name': 'adam'} is not a known section")
    table = _table()
    del table["data"]
    assert _error(table) == "[data] is missing; a scenario needs a [data] table"
    table = _table()
    for name in ("flow", "gd", "sgd"):
        del table[name]
    assert _error(table).startswith("nothing to run")
    assert _error(_table(), ["sgd.lr.x=1"]).startswith("sgd.lr=")


def test_cnn_geometry_is_checked_without_building_the_model():
    data = {"name": "digits", "classes": [0, 1], "n_train": 16, "n_test": 0, "image": True}
    cnn = {"kind": "cnn", "channels": [2], "kernel_sizes": [3], "strides": 1}
    table = _table()
    table.update(data=data, model=cnn)
    assert validate(table).model["channels"] == (2,)
    table["model"] = dict(cnn, kernel_sizes=[9])
    assert "layer 1 leaves no output positions for inputs (1, 8, 8)" in _error(table)
    table["model"] = dict(cnn, last="conv")
    assert _error(table).startswith("model.kernel_sizes=[3] is not allowed; use one entry per")
    table.update(data=dict(data, image=False), model=cnn)
    assert _error(table).startswith("model.kind='cnn' is not allowed; it needs channel-first")


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[scenario\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def cifar_shaped_npz(path, n_per_class: int = 80, seed: int = 0):
    """A random stand-in for a user's CIFAR-10 file: uint8 ``(N, 32, 32, 3)`` images with labels
    0..9 (``n_per_class`` of labels 3 and 5, a few others) and a test split."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat([3, 5], n_per_class), [0, 1, 2]])
    x = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    xt = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=labels, x_test=xt, y_test=np.repeat([3, 5], 10))
    return path


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("fast", [False, True])
def test_shipped_scenarios_validate(path, fast, tmp_path):
    with open(path, "rb") as f:
        data = tomllib.load(f)["data"]
    sets = []
    if data["name"] == "npz" and "path" not in data:  # the user's file: a generated stand-in
        sets = [f"data.path={cifar_shaped_npz(tmp_path / 'user.npz')}"]
    with open(path, "rb") as f:
        swept = "sweep" in tomllib.load(f)
    if swept:  # a sweep validates every point before anything runs (gradflow sweep FILE)
        from gradflow.scenario._sweep_spec import load_sweep

        spec = load_sweep(path, sets, fast=fast)
        configs = [point.config for point in spec.points]
        assert len(configs) > 1
    else:
        configs = [load_config(path, sets, fast=fast)]
    for config in configs:
        assert config.name == path.stem and config.question and config.description
        assert config.runs
    with open(path, "rb") as f:
        assert "fast" in tomllib.load(f)  # every shipped scenario has a --fast mode


def test_sde_section_runs_the_sde_of_sgd():
    table = _table(sde__lr=[0.05], sde__batch_size=[4, 8], sde__seeds=16, sde__seed=7)
    runs = {r.label: r for r in validate(table).runs}
    assert list(runs)[:3] == ["flow", "sde_lr0.05_b4", "sde_lr0.05_b8"]
    sde = runs["sde_lr0.05_b4"]
    assert sde.dynamics == "sde" and sde.seed == 7 and sde.options["seeds"] == 16
    assert sde.options["solver"] == "euler" and sde.options["dt0"] is None  # library: lr / 4
    message = _error(_table(sde__lr=0.1, sde__batch_size=4, sde__solver="heun"))
    assert message.startswith("sde.solver='heun' is not allowed; use one of 'euler' (fixed-step")
    message = _error(_table(sde__lr=0.1, sde__batch_size=4, sde__solver="euler-adaptive"))
    assert message.startswith("sde.solver='euler-adaptive' is not allowed; use one of 'euler' (")
    assert "'euler-adaptive' was removed" in message
    message = _error(_table(sde__lr=0.1, sde__batch_size=4, sde__rtol=1e-3))
    assert message.startswith("sde.rtol=0.001 is not a known key; allowed in [sde]:")
    message = _error(_table(sde__lr=0.1, sde__batch_size=4, sde__max_steps=10))
    assert message.startswith("sde.max_steps=10 is not allowed; t1 / dt0 = 80 steps are needed")
    assert _error(_table(sde__lr=0.1)).startswith("sde.batch_size is missing; use an integer")
