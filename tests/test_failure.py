"""One failure contract (gradflow/dynamics/_failure.py): every dynamics ends with a status, a
failed run raises a RunFailed carrying its partial trajectory (or returns it), and the scenario
runner writes every partial run, goes on with the others and exits 3 / 1."""

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main
from gradflow.dynamics._failure import BLOW_UP, STATUSES
from gradflow.models import MLP


def _problem():
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=0)
    return gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), data, weight_decay=0.01)


def test_gd_far_above_its_stable_step_is_not_success():
    """GD at lr = 10 stays finite and its loss grows by ~1e7: "blew_up", not "success"."""
    p = _problem()
    key = jax.random.PRNGKey(0)
    tr = gf.sgd(p, lr=10.0, batch_size=16, steps=50, key=key, on_failure="return")
    loss = np.asarray(tr["loss"])
    assert np.all(np.isfinite(loss)) and loss.max() > BLOW_UP * max(loss[0], 1.0)
    assert tr.stats["status"] == "blew_up" and "blew_up" in STATUSES
    with pytest.raises(gf.Diverged) as info:
        gf.sgd(p, lr=10.0, batch_size=16, steps=50, key=key)
    assert info.value.status == "blew_up" and len(info.value.trajectory.t) == 51
    assert isinstance(info.value, gf.RunFailed) and "blew up" in str(info.value)
    back = gf.sgd(p, lr=10.0, batch_size=16, steps=50, key=key, throw=False)  # the same switch
    assert back.stats["status"] == "blew_up"
    np.testing.assert_array_equal(back["loss"], loss)
    with pytest.raises(ValueError, match="sgd: throw=False is not allowed; give throw or on_fa"):
        gf.sgd(p, lr=10.0, batch_size=16, steps=50, key=key, throw=False, on_failure="return")
    # a stable step succeeds (the control)
    ok = gf.sgd(p, lr=0.1, batch_size=16, steps=50, key=key)
    assert ok.stats["status"] == "success"


def test_one_switch_and_one_exception_for_the_flow():
    p = _problem()
    tr = gf.flow(p, t1=100.0, max_steps=20, on_failure="return")
    assert tr.stats["status"] == "max_steps" and tr.t[-1] < 100.0
    with pytest.raises(gf.MaxStepsReached) as info:
        gf.flow(p, t1=100.0, max_steps=20)
    assert isinstance(info.value, gf.RunFailed) and info.value.status == "max_steps"
    assert info.value.trajectory.stats["t_reached"] < 100.0
    assert "(max_steps); raise max_steps (now 20), raise dtmin, or pass throw=False" in str(
        info.value
    )
    with pytest.raises(ValueError, match="on_failure='maybe' is not allowed"):
        gf.flow(p, t1=1.0, on_failure="maybe")
    with pytest.raises(ValueError, match="on_max_steps='truncate' is not allowed; give on_fail"):
        gf.flow(p, t1=1.0, on_failure="raise", on_max_steps="truncate")


SCENARIO = """
[scenario]
name = "fails"
[data]
name = "gaussian-mixture"
n_train = 16
n_test = 0
dim = 3
[model]
kind = "mlp"
widths = [4]
activation = "linear"
init_scale = 0.3
[problem]
weight_decay = 0.01
[time]
t1 = 20.0
save_every = 1.0
[flow]
max_steps = {max_steps}
[sde]
enabled = {sde}
lr = {sde_lr}
batch_size = 2
dt0 = {dt0}
[gd]
lr = 0.01
"""


@pytest.mark.parametrize(
    "max_steps, sde_lr, code, word",
    [(100_000, 8.0, 3, "diverged"), (5, 0.1, 1, "max steps")],
    ids=["sde-diverges", "flow-out-of-steps"],
)
def test_the_runner_writes_every_partial_run_and_goes_on(
    max_steps, sde_lr, code, word, tmp_path, capsys
):
    """Runs in the order flow, SDE, GD: the SDE fails after a flow that succeeded, or the flow
    fails first; GD, after the failure, runs and succeeds. The flow's failure is checked
    without the SDE (a run that GD already shows going on after it, and ~8 s of compiling)."""
    sde = word == "diverged"
    path = tmp_path / "fails.toml"
    text = SCENARIO.format(max_steps=max_steps, sde=str(sde).lower(), sde_lr=sde_lr, dt0=sde_lr / 4)
    path.write_text(text)
    out = tmp_path / "out"
    # the SDE at lr = 8 is ~20× beyond 2/λ_max, refused as implausible unless --no-limits
    assert main(["run", str(path), "--quiet", "--out", str(out), "--no-limits"]) == code
    err = capsys.readouterr().err
    assert f" {word} (partial trajectory written)" in err, err
    runs = {p.name: gf.load(p) for p in out.glob("fails__*.nc")}
    sdes = {f"fails__sde_lr{sde_lr:g}_b2.nc"} if sde else set()
    assert set(runs) == {"fails__flow.nc", "fails__gd_lr0.01.nc"} | sdes
    statuses = {name: tr.stats["status"] for name, tr in runs.items()}
    assert statuses["fails__gd_lr0.01.nc"] == "success", statuses  # the run after the failure
    assert sorted(statuses.values()).count("success") == len(runs) - 1, statuses


class _Run:
    """The part of a Trajectory that ``blown_up`` reads."""

    def __init__(self, **series):
        self.observables, self.seeds, self.series = list(series), None, series

    def __getitem__(self, name):
        return self.series[name]


def test_blown_up_is_beyond_blow_up_times_the_start_or_one():
    """The threshold is BLOW_UP · max(value at t = 0, 1): from a start below 1, the bound
    is BLOW_UP itself; from a start above 1, BLOW_UP times the start."""
    from gradflow.dynamics._failure import blown_up

    assert blown_up(_Run(loss=[0.5, 1.5 * BLOW_UP]))
    assert not blown_up(_Run(loss=[0.5, 0.9 * BLOW_UP]))
    assert not blown_up(_Run(loss=[4.0, 3.0 * BLOW_UP]))
    assert blown_up(_Run(rho=[4.0, 5.0 * BLOW_UP]))


def test_a_run_that_diverges_at_its_first_step_is_diverged_there():
    """lr = 1e308 overflows the first step (step 0): status "diverged" at step 0, t reached
    0, only the initial save point kept, one gradient evaluated."""
    p = _problem()
    tr = gf.sgd(p, lr=1e308, batch_size=16, steps=1, key=jax.random.PRNGKey(0), throw=False)
    assert tr.stats["status"] == "diverged" and tr.stats["diverged_at_step"] == 0
    assert tr.stats["t_reached"] == 0.0 and tr.t.tolist() == [0.0]
    assert tr.stats["num_gradient_evaluations"] == 1
