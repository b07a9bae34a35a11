"""``gradflow sweep`` / ``gf.sweep``: validation, batching, Dask workers, resume."""

import os
import signal
import subprocess
import sys
import threading
import time

import diffrax
import jax
import numpy as np
import pytest
import xarray as xr

import gradflow as gf
from gradflow._cli import main
from gradflow.dynamics._batch import plan, run_plans
from gradflow.models import MLP
from tiny_scenario import SGD_BASE

BASE = SGD_BASE


def _write(tmp_path, name="sw", extra="", axes='"problem.weight_decay" = [0.0, 0.01, 0.1]\n'):
    path = tmp_path / f"{name}.toml"
    path.write_text(BASE.format(name=name, extra=extra) + "[sweep]\n[sweep.axes]\n" + axes)
    return path


# ---- validation: before anything runs, one line naming the key ---------------------------

BAD = [
    (
        '"problem.weight_decy" = [0.0]',
        r"sweep\.axes\.problem\.weight_decy.*did you mean 'weight_decay'",
    ),
    ('"probem.weight_decay" = [0.0]', r"sweep\.axes\.probem\.weight_decay.*did you mean 'problem'"),
    ('"problem.weight_decay" = []', r"sweep\.axes\.problem\.weight_decay=\[\].*non-empty list"),
    ('"problem.weight_decay" = 0.1', r"sweep\.axes\.problem\.weight_decay=0\.1.*non-empty list"),
    ('"problem.weight_decay" = [0.1, 0.1]', r"distinct values"),
    ('"problem.weight_decay" = [-1.0]', r"problem\.weight_decay=-1\.0.*\(from sweep\.axes\)"),
    ('"sgd.batch_size" = [8, 100]', r"sgd\.batch_size=100.*\(from sweep\.axes\)"),
    ('"weight_decay" = [0.1]', r"sweep\.axes\.weight_decay.*dotted key"),
]


@pytest.mark.parametrize("axes,message", BAD)
def test_bad_axes_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, axes, message):
    import re

    path = _write(tmp_path, axes=axes + "\n")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gradflow: error: ")
    assert re.search(message, err), err
    assert not out.exists()


def test_bad_sweep_table_and_zip_lengths(tmp_path, capsys):
    path = _write(tmp_path, axes='"problem.weight_decay" = [0.0, 0.1]\n"sgd.lr" = [0.05]\n')
    assert main(["sweep", str(path), "--set", "sweep.mode=zip", "--quiet"]) == 2
    assert "same length" in capsys.readouterr().err
    assert main(["sweep", str(path), "--set", "sweep.modes=zip", "--quiet"]) == 2
    assert "did you mean 'mode'" in capsys.readouterr().err
    assert main(["run", str(path), "--quiet"]) == 2  # gradflow run refuses a sweep file
    assert "gradflow sweep FILE" in capsys.readouterr().err


# ---- batching: one vmapped call gives the sequential runs' numbers -----------------------


def test_batched_sweep_equals_the_runs_made_one_by_one(tmp_path):
    path = _write(
        tmp_path,
        extra="[flow]\nenabled = true\n",
        axes='"problem.weight_decay" = [0.0, 0.05]\n"sgd.lr" = [0.05, 0.1]\n',
    )
    ds = gf.sweep(path, out=tmp_path / "out", progress=False, echo=lambda *a: None)
    # the axes as dimensions with plain names, the scenario key in an attribute
    assert ds["sgd__loss"].dims == ("weight_decay", "lr", "t")
    assert ds["flow__rho"].dims == ("weight_decay", "lr", "t")
    assert ds["weight_decay"].attrs["scenario_key"] == "problem.weight_decay"
    assert ds["lr"].attrs["scenario_key"] == "sgd.lr"
    assert (ds["status"] == "success").all()
    data = gf.data.load("gaussian-mixture", n_train=24, n_test=8, dim=4, seed=0)
    net = MLP(4, (5,), 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    for lam in (0.0, 0.05):
        p = gf.Problem(net, data, weight_decay=lam, normalization="lm-last")
        # one by one through the same (unsegmented) core the batch vmaps; that core is the
        # direct gf.flow call's advance (test_flow.py checks it bit for bit on a plain problem;
        # here on LM-last, equal bit for bit when measured 2026-12-07)
        [flow] = run_plans([plan(gf.flow, p, t1=1.0, save_every=0.25)], batch=False)
        direct = gf.flow(p, t1=1.0, save_every=0.25)
        np.testing.assert_allclose(direct["rho"], flow["rho"], rtol=1e-12)
        for lr in (0.05, 0.1):
            one = gf.sgd(p, lr=lr, batch_size=8, t1=1.0, save_every=0.25, key=jax.random.PRNGKey(0))
            got = ds["sgd__loss"].sel(weight_decay=lam, lr=lr)
            np.testing.assert_allclose(got.sel(t=one.t).values, one["loss"], rtol=1e-12)
            got = ds["flow__rho"].sel(weight_decay=lam, lr=lr)
            np.testing.assert_allclose(got.sel(t=flow.t).values, flow["rho"], rtol=1e-9)


@pytest.mark.parametrize(
    "max_steps",
    [pytest.param(4, marks=pytest.mark.long), 6, pytest.param(10, marks=pytest.mark.long)],
)
def test_a_planned_run_keeps_max_steps_as_the_direct_call_does(max_steps):
    """``max_steps`` bounds the steps of the whole run, planned (a sweep's core, alone or
    ``vmap``ped in a batch) or direct: with Euler, dt0 = 0.1 to t1 = 1 (10 steps, saves every
    0.5), a budget of 4 or 6 stops at t = 0.4 or 0.6 after exactly that many steps, inside the
    first save interval or one step into the second (status ``max_steps``, the steps counted
    once), and a budget of 10 reaches t1 (success). Two equal plans in a batch run once, each
    finished."""
    data = gf.data.load("gaussian-mixture", n_train=8, n_test=0, dim=3, seed=0)
    p, q = (gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(k)), data) for k in (0, 1))
    kw = dict(t1=1.0, save_every=0.5, solver="euler", dt0=0.1, max_steps=max_steps, throw=False)
    [planned] = run_plans([plan(gf.flow, p, **kw)], batch=False)
    clock = time.perf_counter()
    batched = run_plans([plan(gf.flow, p, **kw), plan(gf.flow, q, **kw)], batch=True)
    elapsed = time.perf_counter() - clock
    equal = run_plans([plan(gf.flow, q, **kw), plan(gf.flow, q, **kw)], batch=True)
    direct = {"p": gf.flow(p, **kw), "q": gf.flow(q, **kw)}
    steps = min(max_steps, 10)
    runs = [("p", planned), ("p", batched[0]), ("q", batched[1]), ("q", equal[0]), ("q", equal[1])]
    for name, traj in [*runs, *direct.items()]:
        assert traj.stats["num_steps"] == steps, traj.stats
        assert traj.stats["t_reached"] == pytest.approx(steps / 10, rel=1e-12, abs=0)
        assert traj.stats["status"] == ("success" if max_steps >= 10 else "max_steps")
        np.testing.assert_array_equal(traj.t, direct[name].t)
        np.testing.assert_allclose(traj["loss"], direct[name]["loss"], rtol=1e-12)
    assert batched[0].stats["batch_runs"] == 2
    if max_steps < 10:  # raised as the direct call raises, the partial run keeping its costs
        [err] = run_plans([plan(gf.flow, p, **{**kw, "throw": True})], batch=False)
        assert isinstance(err, gf.RunFailed) and err.trajectory.stats["num_steps"] == steps
        assert err.trajectory.stats["wall_time"] > 0
        assert err.trajectory.stats["num_gradient_evaluations"] == steps  # Euler: one a step
    # the batch's wall time, stamped on each of its runs: the call's, not a clock reading
    assert 0 < batched[0].stats["wall_time"] == batched[1].stats["wall_time"] <= elapsed


class _FailsAcross(diffrax.Euler):
    """Euler that reports a Diffrax failure (``nonlinear_divergence``, as an implicit solver's
    Newton iteration does) on the step across ``t = at``: a failure that is not the step
    budget, at a step known in advance. With ``ConstantStepSize`` the failed step is kept, so
    a step from there succeeds: the failure is not repeated."""

    at: float = 0.25

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, error, dense, state, result = super().step(
            terms, t0, t1, y0, args, solver_state, made_jump
        )
        across = (t0 < self.at) & (self.at <= t1)
        failed = diffrax.RESULTS.where(across, diffrax.RESULTS.nonlinear_divergence, result)
        return y1, error, dense, state, failed


def test_a_failure_on_the_budgets_last_step_is_the_failure_not_max_steps():
    """Euler at dt0 = 0.1 to t1 = 1 (saves every 0.5) whose third step, 0.2 -> 0.3, reports
    a Diffrax failure, with ``max_steps=3``: the failed step is also the budget's last, inside
    the first of the two save intervals. Planned (the sweep's core, ``_driver.whole``) as
    direct, the run is "failed" at t = 0.3 after 3 steps: the failure, not "max_steps" (the
    budget ran out on the failed step, not before it), and the failed interval's 3 steps
    counted once (not 6: its open record again)."""
    data = gf.data.load("gaussian-mixture", n_train=8, n_test=0, dim=3, seed=0)
    p = gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), data)
    kw = dict(t1=1.0, save_every=0.5, solver=_FailsAcross(), dt0=0.1, max_steps=3, throw=False)
    [planned] = run_plans([plan(gf.flow, p, **kw)], batch=False)
    direct = gf.flow(p, **kw)
    for traj in (planned, direct):
        assert traj.stats["status"] == "failed", traj.stats
        assert traj.stats["num_steps"] == 3, traj.stats
        assert traj.stats["t_reached"] == pytest.approx(0.3, rel=1e-12, abs=0)
        np.testing.assert_array_equal(traj.t, [0.0])  # the first save only: 0.5 not reached
        np.testing.assert_array_equal(traj["loss"], direct["loss"])


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    path = _write(
        tmp_path, extra="[flow]\nenabled = true\n", axes='"flow.max_steps" = [100000, 3]\n'
    )
    code = main(["sweep", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "a point max_steps: flow: MaxStepsReached: flow: stopped at t=" in err, err
    ds = xr.open_dataset(tmp_path / "o" / "sw.sweep.nc", engine="h5netcdf")
    assert list(ds["status"].values) == ["success", "max_steps"]
    assert "max_steps" in str(ds["message"].values[1])
    # the failed point keeps the runs that did finish (its SGD run) and the partial flow:
    # its start, and NaN where it never got to
    assert np.isfinite(ds["sgd__loss"]).all()
    assert np.isfinite(ds["flow__loss"][1, 0]) and np.isnan(ds["flow__loss"][1, 1:]).all()


# ---- Dask: a real LocalCluster of 2 worker processes, one of them killed ------------------

#: 2 x 2 points in two shapes (two compiled groups): the smallest sweep with a group left to
#: compute after the first is written, which the kill and the resume tests need
WIDTHS = '"model.widths" = [[3], [4]]\n"problem.weight_decay" = [0.0, 0.01]\n'


def _results(ds):
    """A sweep's Dataset without what differs between two computations of it: wall times and
    peak memory."""
    costs = [v for v in ds.data_vars if str(v).endswith(("__wall_time", "__peak_memory_bytes"))]
    ds = ds.drop_vars(costs)
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "wall_time"}
    return ds


def test_dask_cluster_equals_in_process_bit_for_bit_and_survives_a_killed_worker(tmp_path):
    import distributed

    from gradflow.scenario._sweep import _worker_env

    path = _write(tmp_path, axes=WIDTHS)
    quiet = dict(progress=False, echo=lambda *a: None)
    local = gf.sweep(path, out=tmp_path / "local", **quiet)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        env=_worker_env(2),
    )
    try:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            pids = list(client.run(os.getpid).values())
            assert len(set(pids)) == 2 and os.getpid() not in pids
            # on the cluster, killing one worker process while the tasks run: every point is
            # computed by a worker (the survivor, or the nanny's replacement), and the sweep
            # equals the in-process one bit for bit, attributes included (but the wall times
            # and memory of the runs)
            result, folder = {}, tmp_path / "killed" / "sw.sweep" / "points"
            thread = threading.Thread(
                target=lambda: result.update(
                    ds=gf.sweep(path, out=tmp_path / "killed", client=client, **quiet)
                )
            )
            thread.start()
            deadline = time.time() + 120
            while time.time() < deadline and not (folder.exists() and any(folder.iterdir())):
                time.sleep(0.05)
            victim = list(client.run(os.getpid).values())[0]
            os.kill(victim, signal.SIGKILL)
            thread.join(timeout=300)
            assert not thread.is_alive()
            xr.testing.assert_identical(_results(local), _results(result["ds"]))
            assert len(list(folder.glob("*.nc"))) == 4
    finally:
        cluster.close()


# ---- resume after an interrupted sweep -------------------------------------------------------


def test_resume_recomputes_only_the_missing_points(tmp_path, capsys):
    path = _write(tmp_path, axes=WIDTHS)
    out = tmp_path / "out"
    args = ["sweep", str(path), "--out", str(out), "--quiet"]
    cmd = [sys.executable, "-m", "gradflow._cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = out / "sw.sweep" / "points"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("*.nc"))) < 2 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(folder.glob("*.nc")))
    assert 2 <= written < 4, written  # interrupted after a task, before the last
    # the killed sweep was its own process; the two resumes run the same command line in this
    # one (``main``), sparing two interpreter starts and imports of gradflow
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    again = capsys.readouterr()
    assert f"{written} already done, computing {4 - written}" in again.out, again
    assert main([*args, "--resume"]) == 0
    assert "4 already done, computing 0" in capsys.readouterr().out
    ds = xr.open_dataset(out / "sw.sweep.nc", engine="h5netcdf")
    assert ds["sgd__loss"].sizes == {"widths": 2, "weight_decay": 2, "t": 5}
    assert (ds["status"] == "success").all()
