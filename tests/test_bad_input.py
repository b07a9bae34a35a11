"""Bad input, table-driven: every case is refused before anything is computed.

CLI: ``gradflow run`` exits 2 with ONE line ``gradflow: error: <key>=<value> ... ; <allowed>``
naming the key and the value, no traceback, and writes nothing (the output folder is not even
created). API: a ``ValueError`` whose message is one line naming the argument and the value.
"""

import dataclasses
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from tiny_scenario import scenario_text

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
    # issue 28: the key the user set is named (not time.save_every), and what it would be
    ("flow.save_every=1e-9", "flow.save_every=1e-09 is not allowed; run flow would save 4e+09"),
    ("sgd.save_every=1e-9", "sgd.save_every=1e-09 is not allowed; run sgd_lr0.05_b16 would"),
    # plausibility: fewer than two classes, a size blamed on the right key, overflow, stability
    ("data.n_train=1", "data.n_train=1 is not allowed; each of the 2 classes needs a training"),
    ("data.dim=100000000", "data.dim=100000000 is not allowed; (n_train + n_test) * dim"),
    ("problem.weight_decay=1e308", "problem.weight_decay=1e+308 is not allowed; (λ/2)·||W||²"),
    ("gd.lr=2.0", "gd.lr=2.0 is not allowed; run gd_lr2 steps at 19.2× the stability limit"),
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


def _data(**kw):
    return gf.data.load("gaussian-mixture", **{"n_train": 16, "n_test": 0, "dim": 3, **kw})


def _problem(**kw):
    return gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), _data(), **kw)


def _huge_inputs():
    data = _data()
    data = dataclasses.replace(data, x_train=np.sign(data.x_train) * 1e300)
    return gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), data)


def _sgd(**kw):
    return gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, **kw)


def _failed(lr, status):
    """A GD run that failed (lr far beyond 2/λ_max ≈ 0.03), returned, not raised."""
    traj = gf.sgd(_p(), lr=lr, batch_size=16, steps=50, key=KEY, throw=False)
    assert traj.stats["status"] == status
    return traj


P = None


def _p():
    global P
    if P is None:
        P = _problem(weight_decay=0.01)
    return P


#: jax.random.PRNGKey(0), written out: a module-level JAX call would start XLA at import, and
#: mutmut forks its test processes from a server that has imported the tests (docs/mutation.md)
KEY = np.zeros(2, np.uint32)


def _sgd_object():
    """An SGD dynamics built by hand (what gf.sgd builds), for gf.simulate."""
    import optax

    return gf.SGD(optax.sgd(0.1), 4, 0.1, "with-replacement")


def _tsit5():
    import diffrax

    return diffrax.Tsit5()


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
    (
        lambda: gf.flow(_p(), t1=1.0, solver="euler"),
        "flow: dt0=None is not allowed; solver Euler with ConstantStepSize needs a fixed dt0 > 0",
    ),
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
    (
        lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=KEY, solver="heun"),
        "flow: solver='heun' is not allowed; with noise use one of 'euler' ('heun' converges",
    ),
    (lambda: gf.SGDNoise(-0.1, 2), "lr=-0.1"),
    (lambda: gf.SGDNoise(0.1, 0), "batch_size=0"),
    (lambda: gf.SGDNoise(0.1, 2, "poisson"), "sampling='poisson'"),
    (lambda: gf.sgd(_p(), lr=0.0, batch_size=4, t1=1.0, key=KEY), "sgd: lr=0.0 is not allowed"),
    (lambda: gf.sgd(_p(), lr=True, batch_size=4, t1=1.0, key=KEY), "lr=True"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=0, t1=1.0, key=KEY), "batch_size=0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=17, t1=1.0, key=KEY), "batch_size=17"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=2.5, t1=1.0, key=KEY), "batch_size=2.5"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, momentum=1.0), "momentum=1.0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, sampling="x"), "sampling='x'"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, key=KEY), "t1=None"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, steps=3, key=KEY), "t1=1.0"),
    (
        lambda: gf.sgd(_p(), lr=0.1, batch_size=4, steps=0, key=KEY),
        "sgd: steps=0 is not allowed; use an integer >= 1",
    ),
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
    # issue 28: types checked at the call, naming the argument (not a raw TypeError inside)
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=None), "sgd: key=None"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=0), "sgd: key=0"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY[0]), "key=<array of shape ()"),
    (lambda: gf.flow(_p(), t1=1.0, save_every="0.1"), "flow: save_every='0.1'"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, save_every="0.1"), "sgd: save"),
    (lambda: gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, momentum="0.5"), "momentum='0.5'"),
    (lambda: gf.Problem(None, _data()), "Problem: model=<NoneType>"),
    (lambda: gf.Problem(_p().model, None), "Problem: data=<NoneType>"),
    (lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=0), "flow: key=0"),
    # a checkpoint that could never be written is refused at the call, not at its first write
    (lambda: _sgd(checkpoint="/nonexistent-gradflow/run.ckpt.npz"), "folder '/nonexistent-gra"),
    (lambda: _sgd(checkpoint=str(ROOT)), f"checkpoint={str(ROOT)!r} is not allowed; it is a fo"),
    # the SDE of SGD at a learning rate beyond its horizon: one step of dt = t1 otherwise
    (lambda: gf.flow(_p(), t1=50.0, noise=gf.SGDNoise(1e3, 4), key=KEY), "noise.lr=1000.0"),
    # data: fewer than two classes, and sizes blamed on the right option
    (lambda: _data(n_train=1), "option n_train=1 is not allowed; each of the 2 classes"),
    (lambda: _data(n_train=2, classes=3), "option n_train=2 is not allowed; each of the 3"),
    (lambda: _data(dim=10**8), "option dim=100000000 is not allowed"),
    (lambda: gf.data.load("digits", n_train=5, n_test=10), "option n_train=5 is not allowed"),
    # overflowing inputs or decay: bad input at the Problem, not a divergence later
    (lambda: _problem(weight_decay=1e308), "Problem: weight_decay=1e+308 is not allowed"),
    (lambda: _huge_inputs(), "Problem: data=<x_train with entries up to 1e+300> is not allowed"),
    # a failed trajectory has no fixed point near its end
    (lambda: gf.equilibrium(_p(), _failed(1e4, "diverged")), "status 'diverged'"),
    (lambda: gf.equilibrium(_p(), _failed(10.0, "blew_up")), "status 'blew_up'"),
    # issue 29 (mutation triage of gradflow/dynamics/): each refusal names where, the argument
    # and its value; also the ones gf.simulate makes of a dynamics object built by hand
    (lambda: gf.sgd("problem", lr=0.1, batch_size=4, t1=1.0, key=KEY), "sgd: problem='str' is"),
    (lambda: _sgd(t0=0.5), "sgd: t0=0.5 is not allowed; SGD starts at t = 0: use t0=0"),
    (lambda: gf.simulate(_p(), _sgd_object(), t1=1.0, t0=0.5, key=KEY), "sgd: t0=0.5 is not"),
    (lambda: gf.simulate(_p(), _sgd_object(), t1=1.0), "sgd: key=None is not allowed; SGD needs"),
    (lambda: _sgd(optimizer="adam"), "sgd: optimizer='adam' is not allowed; use an optax.Gradi"),
    (lambda: _sgd(nesterov=True), "sgd: nesterov=True is not allowed; use true or false (true n"),
    (lambda: gf.flow(_p(), t1=1.0, throw="yes"), "flow: throw='yes' is not allowed; use True"),
    (lambda: gf.flow(_p(), t1=1.0, on_failure="x"), "flow: on_failure='x' is not allowed; use"),
    (lambda: gf.flow(_p(), t1=1.0, dtmin=0.0), "flow: dtmin=0.0 is not allowed; use a number > 0"),
    (
        lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=KEY, solver=_tsit5()),
        "flow: solver='Tsit5' is not allowed; with noise use 'euler' or diffrax.Euler() (drift",
    ),
    (
        lambda: gf.flow(_p(), t1=1.0, noise="x", key=KEY),
        "flow: noise='str' is not allowed; pass a gf.SGDNoise",
    ),
    (
        lambda: gf.simulate(_p(), gf.SDE("x"), t1=1.0, key=KEY),
        "flow: noise='str' is not allowed; pass a gf.SGDNoise",
    ),
    (
        lambda: gf.simulate(_p(), gf.SDE(gf.SGDNoise(0.1, 2)), t1=1.0),
        "flow: key=None is not allowed; the SDE needs a PRNG key: pass key=jax.random.key(0)",
    ),
]


@pytest.mark.parametrize("call,expected", API, ids=[f"api{i}" for i in range(len(API))])
def test_api_refuses_bad_input_with_one_line(call, expected):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert expected in message, message
    assert re.search(r"is not allowed|not allowed;", message), message


#: (call, the whole message): the dynamics' refusals word for word, so that a refusal naming
#: the wrong place or argument, or with a mangled ``allowed`` text, fails (docs/mutation.md)
API_EXACT = [
    (
        lambda: gf.flow(_p(), t1=1.0, solver="euler", dt0=float("nan")),
        "flow: dt0=nan is not allowed; use None or a finite number > 0",
    ),
    (
        lambda: gf.flow(_p(), t1=float("inf")),
        "flow: t1=inf is not allowed; use a finite number > 0",
    ),
    (
        lambda: gf.flow(_p(), t1=1.0, max_steps=0),
        "flow: max_steps=0 is not allowed; use an integer >= 1",
    ),
    (
        lambda: gf.flow(_p(), t1=1.0, ts=[0.5, 0.2]),
        "flow: ts=array([0.5, 0.2]) is not allowed; use a non-empty increasing 1-D array",
    ),
    (
        # (t1 - t0) / save_every + 1 = 1e10 + 1 save points, beyond MAX_SAVE_POINTS = 10**9
        lambda: gf.flow(_p(), t1=1.0, save_every=1e-10),
        "flow: save_every=1e-10 is not allowed; (t1 - t0) / save_every = 1e+10 save points "
        "cannot be held in memory; use at most 1e+09",
    ),
    (
        lambda: gf.flow(_p(), t1=1.0, noise=gf.SGDNoise(0.1, 2), key=KEY, seeds=0),
        "flow: seeds=0 is not allowed; use a positive integer or None",
    ),
    (lambda: _sgd(seeds=0), "sgd: seeds=0 is not allowed; use a positive integer or None"),
    (
        lambda: gf.simulate(_p(), 3, t1=1.0),
        "simulate: dynamics='int' is not allowed; pass a gf.ODE, gf.SDE or gf.SGD",
    ),
    (
        lambda: _sgd(checkpoint_minutes=0),
        "sgd: checkpoint_minutes=0 is not allowed; use a number > 0 or None",
    ),
]


@pytest.mark.parametrize(
    "call,expected", API_EXACT, ids=[f"exact{i}" for i in range(len(API_EXACT))]
)
def test_api_refusals_of_the_dynamics_word_for_word(call, expected):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == expected


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


def test_one_sgd_step_is_allowed():
    """steps must be an integer >= 1: steps=1 is one step, saved at t = 0 and t = lr."""
    tr = gf.sgd(_p(), lr=0.1, batch_size=4, steps=1, key=KEY)
    assert tr.kind == "sgd" and tr.stats["steps"] == 1
    assert tr.config["optimizer"] == "sgd"  # gf.sgd's own optax.sgd, not "custom"
    assert tr.stats["num_gradient_evaluations"] == 1  # one mini-batch gradient
    assert tr.t.tolist() == pytest.approx([0.0, 0.1], rel=1e-12, abs=0)


#: Two runs (so the scenario also writes a combined file ``tiny.nc``) to t = 0.2: the scenario
#: of the tests below that need a run that computes and writes. One scenario for all of them, so
#: that a worker compiles its programs once (the compilations are most of a run's cost).
TWO_RUNS = scenario_text(
    t1=0.2, tables="[flow]\nenabled = true\n\n[sgd]\nlr = 0.05\nbatch_size = 4\n"
)


def _two_runs(tmp_path) -> str:
    toml = tmp_path / "tiny.toml"
    toml.write_text(TWO_RUNS)
    return str(toml)


def test_load_of_a_combined_file_names_what_reads_it(tmp_path):
    out = tmp_path / "out"
    assert main(["run", _two_runs(tmp_path), "--quiet", "--out", str(out)]) == 0
    with pytest.raises(ValueError, match="combined runs; gf.load reads one run's") as info:
        gf.load(out / "tiny.nc")
    assert "\n" not in str(info.value)
    assert gf.load(out / "tiny__flow.nc").t[-1] > 0
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
    out, toml = tmp_path / "out", _two_runs(tmp_path)
    assert main(["run", toml, "--quiet", "--out", str(out)]) == 0
    (out / "tiny__sgd_lr0.99_b7.nc").write_text("an older run with another label")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["run", toml, "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds results of scenario 'tiny'" in err and "--overwrite" in err, err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # untouched
    assert main(["run", toml, "--quiet", "--out", str(out), "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    assert "tiny__sgd_lr0.99_b7.nc" not in names  # old and new never mix
    assert "tiny.nc" in names and not any(n.endswith(".lock") for n in names)


def test_a_second_writer_is_refused_while_the_first_is_alive(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    out, toml = tmp_path / "out", _two_runs(tmp_path)
    out.mkdir()
    lock = out / ".tiny.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        assert main(["run", toml, "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"another gradflow process (pid {sleeper.pid})" in err, err
        assert not (out / "tiny.nc").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the writer died: its lock is stale and is taken over
    assert main(["run", toml, "--quiet", "--out", str(out)]) == 0
    assert (out / "tiny.nc").exists() and not lock.exists()


# ---- issue 28: the last bad inputs, each with its key in the message -----------------------


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradflow: error: "), err
    return err[0]


def test_sgd_errors_are_not_prefixed_flow():
    with pytest.raises(ValueError, match=r"^sgd: save_every=-1\.0 is not allowed") as info:
        gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, save_every=-1.0)
    assert "flow" not in str(info.value)


def test_save_times_off_the_step_grid_are_said():
    """gf.sgd(ts=[0, 0.05, 0.06], lr=0.1) saves at steps 0 and 1: t = [0, 0.1], and says so."""
    with pytest.warns(UserWarning, match=r"sgd: ts=\[0\.0, 0\.05, 0\.06\] is not on the step") as w:
        tr = gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, ts=[0, 0.05, 0.06])
    assert list(tr.t) == pytest.approx([0.0, 0.1])
    assert "t = [0, 0.1] (2 times for the 3 asked)" in str(w[0].message)
    with pytest.warns(UserWarning, match=r"sgd: save_every=0\.05 is not on the step grid"):
        gf.sgd(_p(), lr=0.1, batch_size=4, t1=0.5, key=KEY, save_every=0.05)
    # off the grid without merging: 0.25 rounds to step 2, still three save points
    with pytest.warns(UserWarning, match=r"sgd: ts=\[0\.0, 0\.25, 0\.5\] is not on the step") as w:
        tr = gf.sgd(_p(), lr=0.1, batch_size=4, t1=0.5, key=KEY, ts=[0.0, 0.25, 0.5])
    assert list(tr.t) == pytest.approx([0.0, 0.2, 0.5], rel=1e-12, abs=0)


def test_sgd_saves_step_zero_even_when_ts_starts_later():
    """SGD's trajectory starts at t = 0 (its initial state), whatever the first save time."""
    tr = gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, ts=[0.5, 1.0])
    assert list(tr.t) == pytest.approx([0.0, 0.5, 1.0], rel=1e-12, abs=0)


def test_save_times_on_the_step_grid_are_not_warned_about(recwarn):
    gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, ts=[0.0, 0.3, 0.7, 1.0])
    gf.sgd(_p(), lr=0.1, batch_size=4, t1=1.0, key=KEY, save_every=0.2)
    assert not [w for w in recwarn.list if "step grid" in str(w.message)]


def test_a_single_class_npz_is_blamed_on_its_labels_not_on_classes(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x_train=np.ones((8, 3)), y_train=np.zeros(8, dtype=int))
    with pytest.raises(ValueError, match=r"option path=.*one\.npz' is not allowed; its train") as i:
        gf.data.load("npz", path=str(path))
    assert "hold 1 class (0)" in str(i.value) and "classes=None" not in str(i.value)


def test_a_directory_as_file_says_it_is_a_directory(tmp_path, capsys):
    code = main(["run", str(tmp_path), "--fast", "--quiet", "--out", str(tmp_path / "out")])
    line = _one_line(capsys)
    assert code == 2 and f"scenario file '{tmp_path}' is a directory" in line, line
    assert "does not exist" not in line


def test_no_limits_does_not_lift_save_points_beyond_memory(tmp_path, capsys):
    """--no-limits with save_every = 1e-9: one line naming the key, not numpy's allocator."""
    out = tmp_path / "out"
    code = _run_cli(out, "--no-limits", "--set", "time.save_every=1e-9")
    line = _one_line(capsys)
    assert code == 2 and "time.save_every=1e-09 is not allowed" in line, line
    assert "even with --no-limits" in line and not out.exists()


def test_the_sde_learning_rate_beyond_its_horizon_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    code = _run_cli(out, "--set", "sde.lr=1000", "--set", "sde.batch_size=4")
    line = _one_line(capsys)
    assert code == 2 and "sde.lr=1000.0 is not allowed; it exceeds the horizon t1 = 4" in line
    assert not out.exists()


def test_unknown_plot_names_are_refused_with_observable_groups(tmp_path, capsys):
    """With output.observables, output.plot's names are checked against what is recorded."""
    out = tmp_path / "out"
    sets = ['output.observables=["rank"]', 'output.plot=["nonsense"]', "output.logy=[]"]
    code = _run_cli(out, *[a for s in sets for a in ("--set", s)])
    line = _one_line(capsys)
    assert code == 2 and "output.plot=['nonsense'] is not allowed; 'nonsense' is not" in line
    assert "stable_rank" in line and not out.exists()  # the group's entries are allowed


SCENARIO_NPZ = """
[data]
name = "npz"
path = "{path}"
[model]
kind = "mlp"
widths = [4]
[gd]
lr = 0.1
t1 = 0.5
"""


def test_overflowing_inputs_are_bad_input_not_a_divergence(tmp_path, capsys):
    """x ≈ 1e300: exit 2 before computing (it was exit 3, "diverged")."""
    path = tmp_path / "huge.npz"
    x = np.full((8, 3), 1e300)
    x[1::2] *= -1
    np.savez(path, x_train=x, y_train=[0, 1] * 4)
    scenario = tmp_path / "huge.toml"
    scenario.write_text(SCENARIO_NPZ.format(path=path))
    out = tmp_path / "out"
    code = main(["run", str(scenario), "--quiet", "--out", str(out)])
    line = _one_line(capsys)
    assert code == 2, line
    assert f"data.path={str(path)!r}: data=<x_train with entries up to 1e+300>" in line
    assert not out.exists()


def test_a_step_beyond_the_stability_limit_is_warned_in_one_line(tmp_path, capsys):
    """GD at about 3× 2/λ_max runs (it may be the point) with a one-line warning naming gd.lr;
    the t1-not-a-multiple-of-lr warning is one line too, with no source line echoed."""
    sets = ["gd.lr=0.3", "flow.enabled=false", "sgd.enabled=false"]
    code = _run_cli(tmp_path / "out", *[a for s in sets for a in ("--set", s)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0, err
    assert all(line.startswith("gradflow: warning: ") for line in err), err
    assert any("gd.lr=0.3: run gd_lr0.3 steps at 2.88× the stability limit" in e for e in err)
    assert any("t1=4 is not a multiple of lr=0.3" in e for e in err), err


def test_gd_far_beyond_the_stability_limit_on_a_plain_net_is_refused(tmp_path, capsys):
    """GD at many times 2/λ_max on a plain ReLU net ended "success" with a dead network."""
    out = tmp_path / "out"
    code = _run_cli(out, "--set", "problem.normalization=none", "--set", "gd.lr=5.0")
    line = _one_line(capsys)
    assert code == 2 and "gd.lr=5.0 is not allowed; run gd_lr5 steps at" in line, line
    assert "× the stability limit 2/λ_max" in line and not out.exists()


def test_no_limits_runs_a_step_beyond_ten_times_the_limit_with_the_warning(tmp_path, capsys):
    sets = ["gd.lr=2.0", "gd.t1=2.0", "flow.enabled=false", "sgd.enabled=false"]
    code = _run_cli(tmp_path / "out", "--no-limits", *[a for s in sets for a in ("--set", s)])
    err = capsys.readouterr().err
    assert code in (0, 3), err  # it runs: a dead network (0) or a divergence (3)
    assert "gradflow: warning: gd.lr=2.0: run gd_lr2 steps at 19.2× the stability limit" in err


def test_a_sweep_grid_is_sized_from_its_axes_before_any_product(tmp_path):
    """A 1000⁴ grid is refused from the axis lengths; building it first would need terabytes
    (the subprocess runs under a 3 GiB address-space limit, so that a regression fails with a
    MemoryError instead of eating the machine)."""
    import subprocess
    import sys

    values = ", ".join(str(i) for i in range(1000))
    rates = ", ".join(f"{i / 1e4:g}" for i in range(1, 1001))
    scenario = tmp_path / "big.toml"
    scenario.write_text(
        Path(QUICKSTART).read_text()
        + f'\n[sweep.axes]\n"problem.weight_decay" = [{rates}]\n"sgd.lr" = [{rates}]\n'
        f'"model.seed" = [{values}]\n"data.seed" = [{values}]\n'
    )
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
        "from gradflow._cli import main; "
        f"sys.exit(main(['sweep', {str(scenario)!r}, '--fast', '--quiet', '--out', "
        f"{str(tmp_path / 'out')!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "sweep.axes='1000 × 1000 × 1000 × 1000 = 1000000000000 points'" in proc.stderr


def test_memory_errors_are_one_line(tmp_path):
    """--no-limits with 4e8 save points under a 3 GiB address-space limit: numpy cannot
    allocate the save grid; one line, exit 1, no traceback and no stale lock."""
    import subprocess
    import sys

    out = tmp_path / "out"
    args = [
        "run", QUICKSTART, "--fast", "--quiet", "--no-limits", "--out", str(out), "--set",
        "time.save_every=1e-8", "--set", "gd.enabled=false", "--set", "sgd.enabled=false",
    ]  # fmt: skip
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
        f"from gradflow._cli import main; sys.exit(main({args!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gradflow: error: out of memory (")  # numpy's or XLA's
    assert not any(p.name.endswith(".lock") for p in out.iterdir())
