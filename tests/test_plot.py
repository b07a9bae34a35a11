"""The scenario summary plot: legends in words (η, B, β, seeds), dpi 150."""

from __future__ import annotations

import struct

import numpy as np

from gradflow import Trajectory
from gradflow.scenario import summary_plot
from gradflow.scenario._plot import DPI, _legend_words, describe_run


def _traj(kind, config, seeds=None):
    t = np.linspace(0.0, 1.0, 5)
    lead = () if seeds is None else (len(seeds),)
    observables = {
        "loss": np.ones(lead + (5,)) * np.exp(-t),
        "rho_k": np.ones(lead + (5, 3)) * np.arange(1.0, 4.0),
    }
    dims = {"loss": (), "rho_k": ("layer",)}
    return Trajectory(kind, t, observables, dims, (), {}, config, seeds=seeds)


RUNS = {
    "flow": _traj("flow", {}),
    "gd_lr0.05": _traj("gd", {"lr": 0.05, "batch_size": 64, "momentum": 0.0}),
    "sgd_lr0.02_b16": _traj("sgd", {"lr": 0.02, "batch_size": 16, "momentum": 0.9}),
    "sde": _traj("sde", {"noise": {"lr": 0.1, "batch_size": 8}}, seeds=np.arange(4)),
}


def test_run_legends_are_in_words():
    words = {label: describe_run(traj) for label, traj in RUNS.items()}
    assert words == {
        "flow": "flow",
        "gd_lr0.05": "GD η = 0.05",
        "sgd_lr0.02_b16": "SGD η = 0.02, B = 16, β = 0.9",
        "sde": "SDE η = 0.1, B = 8, 4 seeds",
    }
    # two runs that read alike keep their labels apart
    twins = {"a": RUNS["flow"], "b": RUNS["flow"]}
    assert _legend_words(twins) == {"a": "flow (a)", "b": "flow (b)"}


def test_summary_plot_is_drawn_at_150_dpi(tmp_path):
    path = summary_plot(RUNS, ["loss", "rho_k"], tmp_path / "s.png", logy=["loss"], title="x")
    header = path.read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])
    # two panels side by side: a 12 x 4 inch figure at DPI
    assert DPI >= 150 and width == 12 * DPI and height == round(4.0 * DPI)
