"""Bad input, table-driven: every case is refused before anything is computed.

CLI: ``gradflow run`` exits 2 with ONE line ``gradflow: error: <key>=<value> ... ; <allowed>``
naming the key and the value, no traceback, and writes nothing (the output folder is not even
created). API: a ``ValueError`` whose message is one line naming the argument and the value.
"""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main
from gradflow.models import MLP

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "scenarios" / "quickstart.toml")

#: (--set item, text the one-line message must contain)
CLI = [
    ("problem.weight_decay=-1", "problem.weight_decay=-1"),
    ("problem.weight_decay=nan", "problem.weight_decay=nan"),
    ("problem.weight_decay=inf", "problem.weight_decay=inf"),
    ('problem.weight_decay="x"', "problem.weight_decay='x'"),
    ("problem.weight_decay=true", "problem.weight_decay=True"),
    ("problem.normalization=lm_last", "did you mean 'lm-last'"),
    ("problem.normalization=batch", "problem.normalization='batch'"),
    ("problem.normalisation=lm-last", "did you mean 'normalization'"),
    ("problem.freeze_directions=1", "problem.freeze_directions=1"),
    ("problem.freeze_directions=yes", "problem.freeze_directions='yes'"),
    ("model.kind=resnet", "model.kind='resnet'"),
    ("model.kind=mpl", "did you mean 'mlp'"),
    ("data.noise=inf", "data.noise"),
    ("model.widths=[0]", "model.widths=[0]"),
    ("model.widths=[-3]", "model.widths=[-3]"),
    ("model.widths=[1.5]", "model.widths=[1.5]"),
    ("model.widths=16", "model.widths=16"),
    ('model.widths=["a"]', "model.widths=['a']"),
    ("model.init_scale=0", "model.init_scale=0"),
    ("model.init_scale=-1", "model.init_scale=-1"),
    ("model.init_scale=nan", "model.init_scale=nan"),
    ("model.seed=-1", "model.seed=-1"),
    ("model.seed=1.5", "model.seed=1.5"),
    ("model.activation=tanh", "model.activation='tanh'"),
    ("model.channels=[4]", "model.channels"),
    ("model.widht=[4]", "did you mean 'widths'"),
    ("data.name=cifar", "data.name='cifar'"),
    ("data.name=digit", "data.name='digit'"),
    ("data.n_train=0", "data.n_train"),
    ("data.n_train=-5", "data.n_train"),
    ("data.n_train=2.5", "data.n_train"),
    ("data.n_trian=64", "did you mean 'n_train'"),
    ("data.dim=0", "data.dim"),
    ("data.separation=nan", "data.separation"),
    ("data.label_noise=1.5", "data.label_noise"),
    ("data.label_noise=-0.1", "data.label_noise"),
    ("data.seed=-1", "data.seed"),
    ("data.unit_norm=2", "data.unit_norm"),
    ("time.t1=0", "time.t1=0"),
    ("time.t1=-4", "time.t1=-4"),
    ("time.t1=inf", "time.t1=inf"),
    ("time.t1=nan", "time.t1=nan"),
    ("time.save_every=0", "time.save_every=0"),
    ("time.save_every=-1", "time.save_every=-1"),
    ("flow.solver=rk4", "flow.solver='rk4'"),
    ("flow.solver=tsit", "did you mean 'tsit5'"),
    ("flow.rtol=0", "flow.rtol=0"),
    ("flow.rtol=-1e-4", "flow.rtol=-0.0001"),
    ("flow.atol=nan", "flow.atol=nan"),
    ("flow.dtmin=0", "flow.dtmin=0"),
    ("flow.dtmin=true", "flow.dtmin=True"),
    ("flow.max_steps=0", "flow.max_steps=0"),
    ("flow.max_steps=2.7", "flow.max_steps=2.7"),
    ("flow.max_steps=true", "flow.max_steps=True"),
    ("flow.on_max_steps=ignore", "flow.on_max_steps='ignore'"),
    ("flow.enabled=0", "flow.enabled=0"),
    ("flow.dt0=-1", "flow.dt0=-1"),
    ("flow.sovler=heun", "did you mean 'solver'"),
    ("sgd.lr=0", "sgd.lr=0"),
    ("sgd.lr=-0.1", "sgd.lr=-0.1"),
    ("sgd.lr=[]", "sgd.lr=[]"),
    ("sgd.lr=[0.1, 0.1]", "sgd.lr=[0.1, 0.1]"),
    ("sgd.lr=nan", "sgd.lr=nan"),
    ("sgd.lr=100", "sgd.lr=100"),
    ("sgd.batch_size=0", "sgd.batch_size=0"),
    ("sgd.batch_size=1000000", "sgd.batch_size=1000000"),
    ("sgd.batch_size=2.5", "sgd.batch_size=2.5"),
    ("sgd.batch_size=true", "sgd.batch_size=True"),
    ("sgd.sampling=poisson", "sgd.sampling='poisson'"),
    ("sgd.sampling=with_replacement", "did you mean 'with-replacement'"),
    ("sgd.momentum=1", "sgd.momentum=1"),
    ("sgd.momentum=-0.5", "sgd.momentum=-0.5"),
    ("sgd.seeds=0", "sgd.seeds=0"),
    ("sgd.seeds=true", "sgd.seeds=True"),
    ("sgd.seed=-1", "sgd.seed=-1"),
    ("sgd.samplng=x", "did you mean 'sampling'"),
    ("gd.lr=0", "gd.lr=0"),
    ("gd.momentum=2", "gd.momentum=2"),
    ('output.plot=["nonsense"]', "output.plot"),
    ('output.plot="loss"', "output.plot='loss'"),
    ('output.plot=["v_norm"]', "'v_norm' is recorded with"),
    ('output.logy=["v_norm"]', "output.logy"),
    ('output.observables=["ncc"]', "output.observables"),
    ("output.predictions=1", "output.predictions=1"),
    ('scenario.name="a/b"', "scenario.name='a/b'"),
    ('scenario.name=""', "scenario.name=''"),
    ("probem.weight_decay=0.1", "did you mean 'problem'"),
    ("fast.sgd.lr=0", "fast.sgd.lr=0"),
    ("fast.nothing.x=1", "fast.nothing"),
    ("sgd.lr", "--set 'sgd.lr'"),
    ("=1", "--set '=1'"),
    # sizes: valid, but beyond what a run can finish or hold (gradflow.scenario._limits)
    ("time.t1=1e12", "save 2e+12 times (t1 = 1e+12)"),
    ("time.save_every=1e-9", "time.save_every=1e-09"),
    ("model.widths=[1000000000]", "model.widths=[1000000000]"),
    ("model.widths=[20000, 20000, 20000]", "the network has"),
    ("data.classes=[0, 1000000000]", "data.classes=[0, 1000000000]"),
    ("data.classes=1000000000", "data.classes=1000000000"),
    ("data.n_train=10000000000", "data.n_train=10000000000"),
    ("sgd.seeds=1000000000", "sgd.seeds=1000000000"),
    ("model.seed=9223372036854775808", "model.seed=9223372036854775808"),
    ("sgd.seed=9223372036854775808", "sgd.seed=9223372036854775808"),
    ("model.init_scale=1e308", "model.init_scale=1e+308"),
    ("flow.max_steps=100000000000", "flow.max_steps=100000000000"),
]


@pytest.mark.parametrize("item,expected", CLI, ids=[c[0] for c in CLI])
def test_cli_refuses_bad_input_with_one_line_and_writes_nothing(item, expected, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", QUICKSTART, "--fast", "--quiet", "--out", str(out), "--set", item])
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradflow: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert expected in lines[0], lines[0]
    assert not out.exists()


def _problem(**kw):
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=0)
    return gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), data, **kw)


P = None


def _p():
    global P
    if P is None:
        P = _problem(weight_decay=0.01)
    return P


KEY = jax.random.PRNGKey(0)

#: (call, the argument=value the message must name)
API = [
    (lambda: _problem(weight_decay=-1.0), "weight_decay=-1.0"),
    (lambda: _problem(weight_decay=float("nan")), "weight_decay=nan"),
    (lambda: _problem(weight_decay=True), "weight_decay=True"),
    (lambda: _problem(normalization="lm_last"), "normalization='lm_last'"),
    (lambda: _problem(normalization=3), "normalization=3"),
    (lambda: _problem(normalization="none", freeze_directions=True), "freeze_directions=True"),
    (lambda: _problem(normalization="wn", freeze_directions=True), "freeze_directions=True"),
    (lambda: _problem(normalization="lm-last", freeze_directions="yes"), "freeze_directions='yes'"),
    (lambda: gf.flow(_p(), t1=0.0), "t1=0.0"),
    (lambda: gf.flow(_p(), t1=-1.0), "t1=-1.0"),
    (lambda: gf.flow(_p(), t1=1.0, t0=2.0), "t1=1.0"),
    (lambda: gf.flow(_p(), t1=1.0, rtol=0.0), "rtol=0.0"),
    (lambda: gf.flow(_p(), t1=1.0, atol=-1.0), "atol=-1.0"),
    (lambda: gf.flow(_p(), t1=1.0, dtmin=-1.0), "dtmin=-1.0"),
    (lambda: gf.flow(_p(), t1=1.0, max_steps=0), "max_steps=0"),
    (lambda: gf.flow(_p(), t1=1.0, max_steps=True), "max_steps=True"),
    (lambda: gf.flow(_p(), t1=1.0, solver="rk4"), "solver='rk4'"),
    (lambda: gf.flow(_p(), t1=1.0, solver=3), "solver=3"),
    (lambda: gf.flow(_p(), t1=1.0, solver="euler"), "dt0=None"),
    (lambda: gf.flow(_p(), t1=1.0, on_max_steps="ignore"), "on_max_steps='ignore'"),
    (lambda: gf.flow(_p(), t1=1.0, observables=("ncc",)), "observables='ncc'"),
    (lambda: gf.flow(_p(), t1=1.0, save_every=0.0), "save_every=0.0"),
    (lambda: gf.flow(_p(), t1=1.0, ts=[0.5, 0.2]), "ts="),
    (lambda: gf.flow(_p(), t1=1.0, ts=[0.0, 2.0]), "ts="),
    (lambda: gf.flow(_p(), t1=1.0, key=KEY), "key="),
    (lambda: gf.flow(_p(), t1=1.0, stepsize_controller="pid"), "stepsize_controller='pid'"),
    (lambda: gf.flow("problem", t1=1.0), "problem='str'"),
    (lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2)), "key=None"),
    (lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=KEY, seeds=0), "seeds=0"),
    (lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=KEY, solver="heun"), "solver"),
    (lambda: gf.SGDNoise(-0.1, 2), "lr=-0.1"),
    (lambda: gf.SGDNoise(0.1, 0), "batch_size=0"),
    (lambda: gf.SGDNoise(0.1, 2, "poisson"), "sampling='poisson'"),
    (lambda: gf.sgd(_p(), lr=0.0, batch_size=4, t1=1.0, key=KEY), "lr=0.0"),
    (lambda: gf.sgd(_p(), lr=True, batch_size=4, t1=1.0, key=KEY), "lr=True"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=0, t1=1.0, key=KEY), "batch_size=0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=17, t1=1.0, key=KEY), "batch_size=17"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=2.5, t1=1.0, key=KEY), "batch_size=2.5"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, momentum=1.0), "momentum=1.0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, sampling="x"), "sampling='x'"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, key=KEY), "t1=None"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, steps=3, key=KEY), "t1=1.0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, steps=0, key=KEY), "steps=0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, seeds=0), "seeds=0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, on_divergence="x"), "'x'"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, observables=("q",)), "'q'"),
    (lambda: gf.register_observable("not an id", lambda p, s: {}), "name='not an id'"),
    (lambda: gf.flow(_p(), t1=float("inf")), "t1=inf"),
    (lambda: gf.flow(_p(), t1=float("nan")), "t1=nan"),
    (lambda: gf.flow(_p(), t1=1.0, solver="euler", dt0=float("nan")), "dt0=nan"),
    (lambda: gf.flow(_p(), t1=1.0, solver="euler", dt0=-0.1), "dt0=-0.1"),
    (lambda: gf.flow(_p(), t1=1.0, max_steps=2.7), "max_steps=2.7"),
    (lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=KEY, seeds=True), "seeds=True"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, seeds=True), "seeds=True"),
    (lambda: gf.sgd(_p(), lr=float("inf"), batch_size=4, t1=1.0, key=KEY), "lr=inf"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=float("inf"), key=KEY), "t1=inf"),
    (lambda: gf.load("/nonexistent/run.nc"), "path='/nonexistent/run.nc'"),
    (lambda: gf.register_observable("ok", 3), "fn=3"),
]


@pytest.mark.parametrize("call,expected", API, ids=[f"api{i}" for i in range(len(API))])
def test_api_refuses_bad_input_with_one_line(call, expected):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert expected in message, message
    assert re.search(r"is not allowed|not allowed;", message), message


def test_the_suite_is_large_and_distinct():
    assert len(CLI) + len(API) >= 80
    assert len({c[0] for c in CLI}) == len(CLI)


def test_data_with_nan_is_refused_by_name(tmp_path):
    path = tmp_path / "bad.npz"
    x = np.ones((8, 3))
    x[2, 1] = np.nan
    np.savez(path, x_train=x, y_train=np.array([0, 1] * 4))
    with pytest.raises(ValueError, match=r"x_train=<array with 1 NaN or inf entries>"):
        gf.data.load("npz", path=str(path))


def test_a_t1_that_is_not_a_multiple_of_lr_is_said(recwarn):
    """gf.sgd(t1=0.25, lr=0.1) runs round(t1/lr) = 2 steps, and says so."""
    tr = gf.sgd(_p(), lr=0.1, batch_size=4, t1=0.25, key=KEY)
    assert tr.t[-1] == pytest.approx(0.2)
    messages = [str(w.message) for w in recwarn.list]
    assert any("t1=0.25 is not a multiple of lr=0.1" in m and "t = 0.2" in m for m in messages)


def test_load_of_a_combined_file_names_what_reads_it(tmp_path):
    out = tmp_path / "out"
    assert main(["run", QUICKSTART, "--fast", "--quiet", "--out", str(out)]) == 0
    with pytest.raises(ValueError, match="combined runs; gf.load reads one run's") as info:
        gf.load(out / "quickstart.nc")
    assert "\n" not in str(info.value)
    assert gf.load(out / "quickstart__flow.nc").t[-1] > 0
    (tmp_path / "junk.nc").write_text("not netcdf")
    with pytest.raises(ValueError, match="not a NetCDF file gradflow wrote"):
        gf.load(tmp_path / "junk.nc")


# ---- the output folder: checked first, no silent overwrite, one writer -------------------------


def _run_cli(out, *extra):
    return main(["run", QUICKSTART, "--fast", "--quiet", "--out", str(out), *extra])


@pytest.mark.parametrize(
    "out, expected",
    [
        ("/proc/gradflow-results", "does not accept new folders"),
        ("/dev/null/results", "is a file"),
        ("FILE", "it is a file, use a folder"),
        ("LONG", "longer than 255 bytes"),
    ],
)
def test_a_bad_out_is_refused_before_computing(out, expected, tmp_path, capsys):
    if out == "FILE":
        out = tmp_path / "a-file"
        out.write_text("x")
    elif out == "LONG":
        out = tmp_path / ("x" * 300)
    code = _run_cli(out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert "--out" in err[0]


def test_a_long_scenario_name_is_refused_before_computing(tmp_path, capsys):
    name = "n" * 250
    code = _run_cli(tmp_path / "out", "--set", f'scenario.name="{name}"')
    err = capsys.readouterr().err
    assert code == 2 and "use a shorter name" in err and "scenario.name" in err, err
    assert not (tmp_path / "out").exists()


def test_existing_results_are_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run_cli(out) == 0
    (out / "quickstart__sgd_lr0.99_b7.nc").write_text("an older run with another label")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert _run_cli(out) == 2
    err = capsys.readouterr().err
    assert "holds results of scenario 'quickstart'" in err and "--overwrite" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
    assert _run_cli(out, "--overwrite") == 0
    names = {p.name for p in out.iterdir()}
    assert "quickstart__sgd_lr0.99_b7.nc" not in names  # old and new never mix
    assert "quickstart.nc" in names and not any(n.endswith(".lock") for n in names)


def test_a_second_writer_is_refused_while_the_first_is_alive(tmp_path, capsys):
    import os
    import socket
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".quickstart.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        assert _run_cli(out) == 2
        err = capsys.readouterr().err
        assert f"another gradflow process (pid {sleeper.pid})" in err, err
        assert not (out / "quickstart.nc").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the writer died: its lock is stale and is taken over
    assert _run_cli(out) == 0
    assert (out / "quickstart.nc").exists() and not lock.exists()
    assert os.getpid() > 0
