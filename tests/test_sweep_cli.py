"""``gradflow sweep --scheduler ADDR``, ``--workers K`` and ``--overwrite`` from the command line.

A real Dask ``LocalCluster`` with *thread* workers (``processes=False``: the workers share this
process, so nothing is imported or compiled twice and the test stays cheap); the cluster of
worker processes that ``--workers`` starts is tested through the Python API in
``test_sweep.py``. Here ``--workers K`` gets such a thread cluster by replacing
``distributed.LocalCluster`` for the call, which records the ``n_workers`` it was asked for.
"""

import distributed
import numpy as np
import pytest
import xarray as xr
from tiny_scenario import SGD_BASE

from gradflow._cli import main

AXES = '[sweep]\n[sweep.axes]\n"problem.weight_decay" = [0.0, 0.01]\n'


def _loss(out):
    with xr.open_dataset(out / "sw.sweep.nc", engine="h5netcdf") as ds:
        assert (ds["status"] == "success").all()
        return ds["sgd__loss"].values.copy()


@pytest.fixture(scope="module")
def toml(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep_cli") / "sw.toml"
    path.write_text(SGD_BASE.format(name="sw", extra="") + AXES)
    return path


@pytest.fixture(scope="module")
def in_process(toml):
    out = toml.parent / "in_process"
    assert main(["sweep", str(toml), "--out", str(out), "--quiet"]) == 0
    return _loss(out)


LOCAL_CLUSTER = distributed.LocalCluster


def _thread_cluster(n_workers=1, **_):
    return LOCAL_CLUSTER(
        n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=None
    )


def test_scheduler_runs_the_points_on_the_cluster(toml, in_process, tmp_path, capsys):
    out = tmp_path / "o"
    with _thread_cluster() as cluster:
        code = main(
            ["sweep", str(toml), "--out", str(out), "--scheduler", cluster.scheduler_address]
        )
        assert code == 0, capsys.readouterr().err
        ran = {str(k) for k in cluster.scheduler.task_prefixes}
    assert any("run_task" in k for k in ran), ran  # the points were tasks of this scheduler
    assert f"on {cluster.scheduler_address}" in capsys.readouterr().out
    np.testing.assert_array_equal(_loss(out), in_process)


def test_workers_starts_a_local_cluster_of_that_size(toml, in_process, tmp_path, monkeypatch):
    asked = []

    def cluster(**kw):
        asked.append(kw)
        return _thread_cluster(**kw)

    monkeypatch.setattr(distributed, "LocalCluster", cluster)
    out = tmp_path / "o"
    assert main(["sweep", str(toml), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    assert [kw["n_workers"] for kw in asked] == [2]
    np.testing.assert_array_equal(_loss(out), in_process)


def test_overwrite_replaces_the_results_that_a_second_sweep_refuses(toml, in_process, capsys):
    out = toml.parent / "in_process"  # the fixture's results (this test runs last)
    capsys.readouterr()
    changed = ["--set", "sgd.lr=0.1"]
    assert main(["sweep", str(toml), "--out", str(out), "--quiet", *changed]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1, err
    np.testing.assert_array_equal(_loss(out), in_process)  # untouched
    assert main(["sweep", str(toml), "--out", str(out), "--quiet", "--overwrite", *changed]) == 0
    second = _loss(out)
    assert second.shape == in_process.shape and not np.allclose(second[:, 1:], in_process[:, 1:])
