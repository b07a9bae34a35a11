"""The ``gradflow`` command: run a scenario end to end, bad input, divergence, ``info``."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tiny_scenario import shared_folder

import gradflow as gf
from gradflow._cli import main

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "scenarios" / "quickstart.toml")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """``gradflow run quickstart.toml --fast`` once, with two SGD batch sizes (once per
    session, also under xdist: ``shared_folder``)."""
    out, code = shared_folder(tmp_path_factory, "quickstart", _quickstart)
    return code, out


def _quickstart(out):
    return main(["run", QUICKSTART, "--fast", "--out", str(out), "--set", "sgd.batch_size=[8, 16]"])


def test_quickstart_fast_writes_every_file(quickstart):
    code, out = quickstart
    assert code == 0
    runs = ["flow", "gd_lr0.05", "sgd_lr0.05_b8", "sgd_lr0.05_b16"]
    expected = {f"quickstart__{r}.nc" for r in runs} | {"quickstart.nc", "quickstart.png"}
    assert {p.name for p in out.iterdir()} == expected
    assert (out / "quickstart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in runs:
        traj = gf.load(out / f"quickstart__{run}.nc")
        assert traj.kind == run.split("_")[0]
        for name in ("loss", "rho", "rho_eq", "margin_min", "unit_norm_error", "test_acc"):
            assert np.all(np.isfinite(traj[name])), (run, name)
        assert traj.t[0] == 0.0 and np.isclose(traj.t[-1], 4.0)  # [fast] t1 = 4
        assert traj.config["scenario"] == "quickstart" and traj.config["run"] == run


def test_quickstart_combined_netcdf(quickstart):
    _, out = quickstart
    with xr.open_dataset(out / "quickstart.nc") as ds:
        assert list(ds["run"].values) == ["flow", "gd_lr0.05", "sgd_lr0.05_b8", "sgd_lr0.05_b16"]
        assert list(ds["dynamics"].values) == ["flow", "gd", "sgd", "sgd"]
        assert list(ds["batch_size"].values[1:]) == [64, 8, 16]  # GD: B = N = [fast] n_train
        assert {"loss", "rho", "rho_eq", "margin_min", "balance_gap"} <= set(ds.data_vars)
        assert ds.attrs["scenario"] == "quickstart" and "ρ_eq" in ds.attrs["question"]
        loss = ds["loss"].sel(t=4.0).values
    # LM-last: the unit-norm constraint holds for every dynamics, and GD at η = 0.05 tracks
    # the flow on t = η·step far closer than the loss has moved (1.1 -> 0.46).
    assert np.all(np.isfinite(loss)) and abs(loss[1] - loss[0]) < 0.01


def test_quickstart_prints_a_summary(tmp_path, capsys):
    code = main(["run", QUICKSTART, "--fast", "--out", str(tmp_path), "--set", "sgd.enabled=false"])
    out = capsys.readouterr().out
    assert code == 0
    assert "flow" in out and "gd_lr0.05" in out and "rho_eq" in out
    assert "distances to flow" in out and "||ΔW||/||W||" in out
    assert not (tmp_path / "quickstart__sgd_lr0.05_b16.nc").exists()


BAD_SETS = [
    ("sgd.lrr=0.1", "sgd.lrr=0.1 is not a known key"),
    ("sgd.lr=fast", "sgd.lr='fast' is not allowed; use a number > 0"),
    ("sgd.lr=0", "sgd.lr=0 is not allowed; use a number > 0"),
    ("gd.lr=-0.05", "gd.lr=-0.05 is not allowed; use a number > 0"),
    ("sgd.batch_size=65", "sgd.batch_size=65 is not allowed; use an integer in [1, 64]"),
    ("sgd.batch_size=0", "sgd.batch_size=0 is not allowed; use an integer in [1, 64]"),
    ("problem.weight_decay=-0.01", "problem.weight_decay=-0.01 is not allowed; use a number >= 0"),
    ("problem.normalization=layer", "problem.normalization='layer' is not allowed; use one of"),
    ("data.name=imagenet", "data.name='imagenet' is not allowed; use one of"),
    ("sgd", "--set 'sgd' is not allowed; use --set section.key=value"),
]


@pytest.mark.parametrize(("item", "expected"), BAD_SETS, ids=[b[0] for b in BAD_SETS])
def test_bad_set_exits_2_with_one_line(tmp_path, capsys, item, expected):
    out = tmp_path / "out"
    code = main(["run", QUICKSTART, "--fast", "--out", str(out), "--set", item])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith(f"gradflow: error: {expected}")
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not out.exists()


SCENARIO = """
[scenario]
name = "tiny"
[data]
name = "gaussian-mixture"
n_train = 16
n_test = 0
dim = 3
[model]
kind = "{kind}"
widths = [4]
init_scale = 1.0
[problem]
weight_decay = {decay}
[gd]
lr = {lr}
t1 = {t1}
"""


def _scenario(tmp_path, kind="mlp", decay=0.0, lr=0.1, t1=1.0) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO.format(kind=kind, decay=decay, lr=lr, t1=t1))
    return str(path)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"lr": -0.1}, "gd.lr=-0.1 is not allowed; use a number > 0"),
        ({"lr": '"0.1"'}, "gd.lr='0.1' is not allowed; use a number > 0"),
        ({"decay": -1}, "problem.weight_decay=-1 is not allowed; use a number >= 0"),
        ({"kind": "transformer"}, "model.kind='transformer' is not allowed; use one of 'mlp',"),
    ],
)
def test_bad_file_exits_2_and_writes_nothing(tmp_path, capsys, fields, expected):
    path = _scenario(tmp_path, **fields)
    code = main(["run", path, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"gradflow: error: {expected}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_usage_exits_2_with_one_line(capsys):
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: ") and err.count("\n") == 1
    assert main(["run", "/no/such/file.toml"]) == 2
    assert "scenario file '/no/such/file.toml' does not exist" in capsys.readouterr().err


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "gradflow._cli", "run", QUICKSTART, "--out", str(out),
         "--set", "sgd.batch_size=1000"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("gradflow: error: sgd.batch_size=1000 is not allowed; use an")
    assert not out.exists() and not (tmp_path / "results").exists()


def test_divergence_keeps_the_partial_trajectory_and_exits_3(tmp_path, capsys):
    # A deep linear net at lr = 10, far beyond 2/λ_max: the loss overflows within a few steps
    # (beyond 10× 2/λ_max the run is refused as implausible; --no-limits runs it).
    path = _scenario(tmp_path, kind="deep-linear", lr=10.0, t1=400.0)
    code = main(["run", path, "--out", str(tmp_path / "out"), "--no-limits"])
    captured = capsys.readouterr()
    assert code == 3
    assert "gd_lr10 diverged (partial trajectory written)" in captured.err
    assert "stable learning rate" in captured.err and "Traceback" not in captured.err
    traj = gf.load(tmp_path / "out" / "tiny__gd_lr10.nc")
    assert traj.stats["status"] == "diverged" and traj.t[-1] < 400.0
    assert (tmp_path / "out" / "tiny.nc").exists() and (tmp_path / "out" / "tiny.png").exists()


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("gradflow", "jax", "diffrax", "equinox", "optax", "numpy", "devices"):
        assert name in out
    assert "x64 enabled     True" in out and "default float   float64" in out


def _combined(tmp_path, name):
    scenario = str(ROOT / "scenarios" / f"{name}.toml")
    assert main(["run", scenario, "--fast", "--quiet", "--out", str(tmp_path)]) == 0
    with xr.open_dataset(tmp_path / f"{name}.nc") as ds:
        return ds.load()


@pytest.mark.long
def test_balancedness_scenario_shows_its_answer(tmp_path):
    ds = _combined(tmp_path, "balancedness")
    gap = ds["balance_gap"]
    drift = np.abs(gap - gap.isel(t=0)).max(("t", "layer_pair")).values  # per run
    flow, gd_small, gd_large = drift  # runs: flow, gd_lr0.05, gd_lr0.1 ([fast])
    assert flow < 1e-4  # THEORY 3.1: conserved by the flow (λ = 0), up to the solver tolerance
    assert gd_large > gd_small > 100 * flow  # GD drifts, more for the larger step


@pytest.mark.long
def test_wn_norm_growth_scenario_shows_its_answer(tmp_path):
    ds = _combined(tmp_path, "wn_norm_growth")
    assert not np.any(np.isnan(ds["loss"]))  # save_every is a multiple of every lr: one grid
    v = ds["v_norm"]
    growth = (v.isel(t=-1) - v.isel(t=0)).max("layer").values  # runs: flow, lr 0.05, 0.1, 0.2
    assert abs(growth[0]) < 1e-6  # THEORY 3.3: ||v_k|| is constant along the flow
    assert 0 < growth[1] < growth[2] < growth[3]  # and creeps up under GD, faster for larger η
    steps = v.sel(run="gd_lr0.2").dropna("t", how="all")
    assert np.all(steps.diff("t") >= -1e-12)  # each step adds η²||∇_v L||² to ||v_k||²
