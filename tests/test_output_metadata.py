"""Self-describing results files (docs/output.md "Results files"): every variable has a long
name, units and its THEORY section, every dimension a coordinate, the run costs are in
``stats`` and in the files, and a sweep's axes have plain names."""

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from tiny_scenario import scenario_text, shared_folder

import gradflow as gf
from gradflow._cli import main
from gradflow._observables import GROUPS, described, observe
from gradflow._variables import VARIABLES, annotate, meta, plain_names
from gradflow.models import MLP, DeepLinear

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = scenario_text(
    "{name}",
    widths=(4, 4),
    t1=0.5,
    save_every=0.25,
    tables='[flow]\nsolver = "bosh3"\nenabled = {flow}\n[sgd]\nlr = 0.05\nbatch_size = 4\n'
    'seeds = 2\n[output]\nobservables = ["rank"]\n',
)

SWEEP = '[sweep]\n[sweep.axes]\n"problem.weight_decay" = [0.0, 0.01]\n"sgd.seed" = [1, 2]\n'


def _check_described(ds: xr.Dataset, where: str) -> None:
    """Every data variable: long_name, units (numbers) and theory (quantities of the theory);
    every dimension: a coordinate with long_name and units; wall_time in the attributes."""
    for name, var in ds.data_vars.items():
        assert var.attrs.get("long_name"), (where, name)
        if var.dtype.kind in "fiub":
            assert var.attrs.get("units") not in (None, "", "unknown"), (where, name)
        base = str(name).rpartition("__")[2]
        if base not in ("wall_time", "num_gradient_evaluations", "peak_memory_bytes") and (
            var.dtype.kind in "fiub"
        ):
            assert re.fullmatch(r"THEORY \d(\.\d)?(, \d(\.\d)?)*", var.attrs["theory"]), name
    for dim in ds.dims:
        assert dim in ds.coords, (where, dim)
        assert ds[dim].attrs.get("long_name"), (where, dim)
        if ds[dim].dtype.kind in "fiub":
            assert ds[dim].attrs.get("units"), (where, dim)
    assert float(ds.attrs["wall_time"]) > 0, where


def _build(out):
    run = out / "tiny.toml"
    run.write_text(SCENARIO.format(name="tiny", flow="true"))
    assert main(["run", str(run), "--out", str(out), "--quiet"]) == 0
    sweep = out / "tinysweep.toml"
    sweep.write_text(SCENARIO.format(name="tinysweep", flow="false") + SWEEP)
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """``gradflow run`` (flow and a 2-seed SGD ensemble) and ``gradflow sweep`` (SGD over λ
    and the SGD seed) on a tiny problem, into one folder, once per session (also under xdist:
    ``shared_folder``)."""
    return shared_folder(tmp_path_factory, "output-metadata", _build)[0]


def test_a_runs_file_describes_itself_and_round_trips(results):
    for label in ("flow", "sgd_lr0.05_b4"):
        path = results / f"tiny__{label}.nc"
        with xr.open_dataset(path) as ds:
            _check_described(ds, label)
            assert ds["rho_k"].dims[-1] == "layer" and list(ds["layer"].values) == [1, 2, 3]
            assert list(ds["layer_pair"].values) == ["1-2", "2-3"]
            assert ds["rho_eq"].attrs["theory"] == "THEORY 4.1"
            # the final weights by layer, (out, in)
            assert ds["W_1"].dims[-2:] == ("W_1_out", "W_1_in") and ds["W_1"].shape[-2:] == (4, 3)
            assert ds["W_3"].shape[-2:] == (1, 4)
            assert not any(str(v).startswith("param") for v in ds.variables)
            stats = json.loads(ds.attrs["stats"])
            assert ds.attrs["wall_time"] == stats["wall_time"] > 0
        traj = gf.load(path)
        assert traj.stats == stats and [w.shape[-2:] for w in traj.final_params] == [
            (4, 3),
            (4, 4),
            (1, 4),
        ]
        again = traj.save(results / f"again_{label}.nc")
        with xr.open_dataset(again) as a, xr.open_dataset(path) as b:
            xr.testing.assert_identical(a, b)
    sgd = gf.load(results / "tiny__sgd_lr0.05_b4.nc")
    # 0.5 / 0.05 = 10 steps of one mini-batch gradient each, per seed
    assert sgd.stats["num_gradient_evaluations"] == 10 and sgd.stats["peak_memory_bytes"] > 1e6
    flow = gf.load(results / "tiny__flow.nc")
    steps = flow.stats["num_steps"]
    assert flow.stats["num_gradient_evaluations"] == 3 * steps + 1  # Bosh3: FSAL, 3 new stages


def test_gf_load_reads_the_older_param_names(results):
    """Files written before the weights were named by layer (``param0``, dims ``param0_dim0``)."""
    with xr.open_dataset(results / "tiny__flow.nc") as ds:
        old = ds.load()
    names = [str(v) for v in old.data_vars if str(v).startswith("W_")]
    for k, name in enumerate(sorted(names)):
        dims = {d: f"param{k}_dim{i}" for i, d in enumerate(old[name].dims)}
        old = old.rename({name: f"param{k}"}).drop_vars(list(dims)).rename_dims(dims)
    assert "param2" in old and "W_1" not in old
    old.to_netcdf(results / "old.nc", engine="h5netcdf")
    back, new = gf.load(results / "old.nc"), gf.load(results / "tiny__flow.nc")
    for a, b in zip(back.final_params, new.final_params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(back.observables) == set(new.observables)


def test_the_combined_file_describes_itself(results):
    with xr.open_dataset(results / "tiny.nc") as ds:
        _check_described(ds, "tiny.nc")
        assert ds["wall_time"].dims == ("run",) and ds["wall_time"].attrs["units"] == "s"
        assert ds.attrs["wall_time"] == pytest.approx(float(ds["wall_time"].sum()))


def test_a_sweeps_file_describes_itself_with_plain_axis_names(results):
    with xr.open_dataset(results / "tinysweep.sweep.nc") as ds:
        _check_described(ds, "sweep")
        assert ds["sgd__rho"].dims == ("weight_decay", "sgd_seed", "seed", "t")
        assert ds["weight_decay"].attrs["scenario_key"] == "problem.weight_decay"
        assert ds["weight_decay"].attrs["long_name"] == "weight decay λ"
        assert ds["sgd_seed"].attrs["scenario_key"] == "sgd.seed"  # "seed" is the ensemble's
        assert json.loads(ds.attrs["axis_names"]) == {
            "problem.weight_decay": "weight_decay",
            "sgd.seed": "sgd_seed",
        }
        final = ds["sgd__rho"].sel(weight_decay=0.01, sgd_seed=2).isel(t=-1)
        assert final.sizes == {"seed": 2} and np.isfinite(final).all()
        assert ds["sgd__rank"].dims[-1] == "layer" and ds["sgd__rank"].attrs["run"] == "sgd"
        assert (ds["sgd__wall_time"] > 0).all() and ds["sgd__wall_time"].attrs["units"] == "s"
        assert (ds["sgd__num_gradient_evaluations"] == 10).all()


def test_rho_plot_is_labelled_with_no_extra_code(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with xr.open_dataset(results / "tiny__flow.nc") as ds:
        lines = ds.rho.plot()
    ax = lines[0].axes
    try:
        assert ax.get_ylabel() == "ρ = Π_k ||W_k||_F [1]"
        assert ax.get_xlabel() == "flow time t [1]"
    finally:
        plt.close(ax.figure)


def test_a_diverged_runs_partial_trajectory_carries_its_costs():
    data = gf.data.load("gaussian-mixture", n_train=8, n_test=0, dim=3, seed=0)
    net = DeepLinear(3, (), 1, key=jax.random.PRNGKey(0))  # |1 − η λ_max| ≫ 1: overflows
    with pytest.raises(gf.Diverged) as info:
        gf.sgd(gf.Problem(net, data), lr=1e3, batch_size=8, steps=400, key=jax.random.PRNGKey(0))
    stats = info.value.trajectory.stats
    assert stats["status"] == "diverged" and stats["wall_time"] > 0
    assert stats["num_gradient_evaluations"] == stats["diverged_at_step"] + 1 < 400


# ---- the table: every observable has an entry, and the docs list it ---------------------


@pytest.mark.parametrize("normalization", ["none", "lm-all", "lm-last", "wn"])
def test_every_observable_of_every_group_has_metadata(normalization):
    data = gf.data.load("gaussian-mixture", n_train=8, n_test=4, dim=3, seed=0, classes=3)
    net = MLP(3, (4, 4), data.num_outputs, key=jax.random.PRNGKey(0))
    problem = gf.Problem(net, data, weight_decay=0.01, normalization=normalization)
    # traced, not run: the names are all we need
    built_in = tuple(g for g in GROUPS if not g.startswith("_"))  # tests register "_..." groups
    names = jax.eval_shape(lambda s: observe(problem, s, built_in), problem.initial_state())
    missing = sorted(set(names) - set(VARIABLES))
    assert not missing, f"add {missing} to gradflow/_variables.py VARIABLES"


def test_the_docs_list_every_variable():
    text = (ROOT / "docs" / "output.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(\w+)`", text, flags=re.M))
    missing = {n for n in VARIABLES if not re.fullmatch(r"w[1-9]", n)} - listed
    assert not missing, f"add {sorted(missing)} to the table of docs/output.md"


def test_an_observable_passes_its_meta_or_is_marked_unknown():
    def fn(problem, state):
        return {}

    norm_meta = {"_t27_norm": {"long_name": "‖W‖", "units": "1"}}
    described_group = gf.Observable("_t27", fn, meta=norm_meta)
    extra = described((described_group, gf.Observable("_t27b", fn), "rank"))
    assert meta("_t27_norm", extra) == {"long_name": "‖W‖", "units": "1"}
    assert meta("sgd___t27_other", extra) == {
        "long_name": "_t27_other",
        "units": "unknown",
        "run": "sgd",
    }
    assert meta("_t27_norm") == {"long_name": "_t27_norm", "units": "unknown"}  # not a global
    with pytest.raises(ValueError, match="meta="):
        gf.Observable("_t27c", fn, meta={"x": "not a dict"})


def test_plain_names_fall_back_to_the_key_where_ambiguous():
    keys = ["problem.weight_decay", "sgd.lr", "gd.lr", "model.seed", "model.widths"]
    assert plain_names(keys) == {
        "problem.weight_decay": "weight_decay",
        "sgd.lr": "sgd_lr",
        "gd.lr": "gd_lr",
        "model.seed": "model_seed",
        "model.widths": "widths",
    }


def test_annotate_gives_every_dimension_a_coordinate():
    ds = annotate(xr.Dataset({"rho_k": (("t", "layer"), np.ones((2, 3)))}))
    assert list(ds["layer"].values) == [1, 2, 3] and list(ds["t"].values) == [0, 1]
    assert ds["rho_k"].attrs["units"] == "1" and ds["layer"].attrs["long_name"] == "layer k (W_k)"
