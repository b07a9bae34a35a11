"""What a run cost (``stats``): the process's peak memory and the gradient evaluations of a
run that stopped early, against their definitions (``gradflow/dynamics/_cost.py``)."""

import resource
import sys
import types

import pytest

from gradflow.dynamics import _cost


@pytest.mark.skipif(sys.platform == "darwin", reason="ru_maxrss is in bytes on macOS")
def test_peak_memory_is_the_processs_high_water_mark_in_bytes():
    """``ru_maxrss`` is in KiB on Linux and never decreases: the value read between two
    readings lies between them, times 1024."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = _cost.peak_memory()["peak_memory_bytes"]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert isinstance(got, int) and 1024 * before <= got <= 1024 * after


def _trajectory(kind, stats, config=None):
    return types.SimpleNamespace(kind=kind, stats=dict(stats), config=dict(config or {}))


def test_an_interrupted_sgd_run_counted_the_steps_to_where_it_stopped():
    """Interrupted at t = 0.75 with η = 0.05: 15 mini-batch gradients, whatever ``steps``
    (the planned number) says."""
    traj = _trajectory(
        "sgd", {"steps": 40, "status": "interrupted", "t_reached": 0.75}, {"lr": 0.05}
    )
    assert _cost._evaluations(traj) == {"num_gradient_evaluations": 15}


@pytest.mark.parametrize("seeds, expected", [(None, 8), (3, 40)])
def test_a_diverged_sgd_run_stops_counting_at_its_step_unless_it_is_an_ensemble(seeds, expected):
    """A single run stops at the step that diverged (7: 8 gradients); an ensemble runs every
    step of every member."""
    stats = {"steps": 40, "status": "diverged", "diverged_at_step": 7}
    assert _cost._evaluations(_trajectory("gd", stats, {"seeds": seeds})) == {
        "num_gradient_evaluations": expected
    }


def test_sde_steps_count_one_or_three_evaluations_and_a_count_of_its_own_is_kept():
    """One evaluation per Euler step, three per adaptive step (a full step and two half
    steps), per seed; a run that counted its own evaluations keeps its count; a flow's steps
    are not the SDE's."""
    sde = _trajectory("sde", {"num_steps": [4, 5], "adaptive": True})
    assert _cost._evaluations(sde) == {"num_gradient_evaluations": [12, 15]}
    assert _cost._evaluations(_trajectory("sde", {"num_steps": 5})) == {
        "num_gradient_evaluations": 5
    }
    counted = _trajectory("sde", {"num_gradient_evaluations": 7, "num_steps": 3})
    assert _cost._evaluations(counted) == {}
    assert _cost._evaluations(_trajectory("flow", {"num_steps": 3})) == {}
    assert _cost._evaluations(_trajectory("flow", {"steps": 3})) == {}  # nor SGD's


@pytest.mark.parametrize("runs, expected", [(1, None), (3, 3)])
def test_batch_runs_is_said_only_of_a_batch(runs, expected):
    """``batch_runs``: how many runs shared one vmapped call; a run of its own has none."""
    traj = _trajectory("flow", {})
    _cost.stamp(traj, 0.5, runs)
    assert traj.stats["wall_time"] == 0.5
    assert traj.stats.get("batch_runs") == expected


def test_peak_device_memory_is_the_accelerators_peak(monkeypatch):
    """Where the first device reports ``peak_bytes_in_use`` (a GPU), that is
    ``peak_device_memory_bytes``; a device without statistics (the CPU) gives none."""
    import jax

    class Device:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    monkeypatch.setattr(jax, "devices", lambda: [Device({"peak_bytes_in_use": 12345})])
    assert _cost.peak_memory()["peak_device_memory_bytes"] == 12345
    monkeypatch.setattr(jax, "devices", lambda: [Device(None)])
    assert "peak_device_memory_bytes" not in _cost.peak_memory()
