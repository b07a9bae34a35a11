"""Short printed forms: ``print`` of a data set, a problem, a trajectory and a fixed point shows
shapes, settings and status in a few lines, never the arrays."""

import re

import numpy as np

import gradflow as gf
import gradflow.testing as gft
from gradflow.analysis._equilibrium import FixedPoint
from gradflow.analysis._spectrum import HessianSpectrum


def _short(text: str, lines: int, width: int = 200) -> list[str]:
    rows = text.split("\n")
    assert len(rows) <= lines, text
    assert all(len(row) <= width for row in rows), text
    assert "array(" not in text and "Array(" not in text and "..." not in text, text
    return rows


def _numbers(text: str) -> int:
    return len(re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text))


def test_dataset_prints_sizes_classes_and_options():
    ds = gf.data.load("digits", classes=(3, 5), n_train=40, unit_norm=True, seed=2)
    text = repr(ds)
    rows = _short(text, 4)
    assert str(ds) == text
    assert rows[0] == "Dataset 'digits': 2 classes (3, 5) (3 → −1, 5 → +1), per class 20 20"
    assert rows[1].startswith("  40 train, ") and "inputs (64,), targets (N, 1)" in rows[1]
    assert rows[2] == "  options: seed=2, unit_norm=True"  # only what differs from the defaults
    many = gf.data.load("gaussian-mixture", classes=4, n_train=400, n_test=100, dim=300)
    rows = _short(repr(many), 4)
    assert "4 classes (0, 1, 2, 3) (one-hot), per class 100 100 100 100" in rows[0]
    assert "options: dim=300, seed=0" in rows[2]
    assert _numbers(repr(many)) == 0  # 150,000 input floats, none printed


def test_problem_prints_network_settings_and_data():
    arch = gft.ARCHITECTURES["mlp-small"]
    p = gf.Problem(
        gft.build_network(arch, 0),
        gft.make_dataset(arch, n_train=16, n_test=4),
        weight_decay=0.1,
        normalization="lm-last",
    )
    text = repr(p)
    rows = _short(text, 3)
    assert str(p) == text
    assert rows[0] == (
        "Problem: MLP [6×5 6×6 1×6], lm-last, λ=0.1, float64; data 'gaussian-mixture': "
        "16 train, 4 test"
    )
    assert rows[1] == "  72 weights; inputs (5,), targets (16, 1); chunk_size 16"


def _trajectory(seeds):
    t = np.linspace(0.0, 40.0, 401)
    lead = (seeds, 401) if seeds else (401,)
    rng = np.random.default_rng(0)
    obs = {
        "loss": np.exp(-rng.random(lead)),
        "rho": 1 + rng.random(lead),
        "rho_k": rng.random((*lead, 3)),
        "balance_gap": rng.random((*lead, 2)),
    }
    config = {
        "dynamics": "sgd",
        "problem": {
            "model": "MLP",
            "layer_shapes": [[16, 8], [16, 16], [1, 16]],
            "normalization": "none",
            "weight_decay": 0.05,
            "data": "gaussian-mixture",
            "n_train": 128,
            "n_test": 128,
            "precision": "float64",
        },
    }
    return gf.Trajectory(
        kind="sgd",
        t=t,
        observables=obs,
        dims={"rho_k": ("layer",), "balance_gap": ("layer_pair",)},
        final_params=tuple(rng.random((*((seeds,) if seeds else ()), *s)) for s in [(16, 8)]),
        stats={"status": "success", "steps": 800, "t_reached": 40.0},
        config=config,
        seeds=np.arange(seeds) if seeds else None,
    )


def test_trajectory_prints_span_status_problem_and_final_values():
    for seeds in (None, 5):
        tr = _trajectory(seeds)
        text = repr(tr)
        rows = _short(text, 4)
        assert str(tr) == text
        head = "Trajectory sgd" + (", 5 seeds" if seeds else "")
        assert rows[0] == head + ": t 0 → 40 (401 saves), status success, 800 steps"
        assert rows[1] == (
            "  problem: MLP [16×8 16×16 1×16], none, λ=0.05, float64; data 'gaussian-mixture': "
            "128 train, 128 test"
        )
        assert rows[2] == "  observables: loss, rho, rho_k[layer=3], balance_gap[layer_pair=2]"
        loss = tr["loss"].mean(0) if seeds else tr["loss"]
        assert f"loss={loss[-1]:.4g}" in rows[3] and rows[3].startswith("  at the end: ")
        assert _numbers(text) <= 6


def test_fixed_point_prints_status_and_spectrum_counts_not_eigenvalues():
    eig = np.concatenate([np.zeros(12), np.linspace(0.1, 40.0, 388)])  # 400 eigenvalues
    spectrum = HessianSpectrum(
        eigenvalues=eig,
        dim=400,
        complete=True,
        zero_tol=1e-8,
        n_negative=0,
        n_zero=12,
        n_positive=388,
        symmetries={"rescaling": 12},
        n_symmetry=12,
        symmetry_residual=1e-12,
        kind="minimum",
    )
    fp = FixedPoint(
        state={"w": np.ones(400)},
        converged=True,
        iterations=6,
        residuals=np.geomspace(1.0, 1e-13, 7),
        relative_residuals=np.geomspace(1e-1, 1e-14, 7),
        steps=np.ones(6),
        linear_steps=np.full(6, 30),
        linear_residuals=np.full(6, 1e-9),
        pattern_flips=np.zeros(7, dtype=int),
        pattern_changed=False,
        spectrum=spectrum,
        message="relative residual below tol",
    )
    text = repr(fp)
    rows = _short(text, 4, width=240)
    assert str(fp) == text
    assert rows[0].startswith("FixedPoint: converged after 6 Newton iterations")
    assert "|velocity| = 1.000e-13" in rows[0]
    assert rows[1] == "  ReLU activation pattern on the training set: unchanged"
    assert rows[2].startswith("  Hessian: minimum: eigenvalues in [0, 40] on a manifold of ")
    assert "12 zero" in rows[2] and "388 positive" in rows[2]
    assert _numbers(text) <= 6  # not the 400 eigenvalues
    assert _short(repr(spectrum), 1, width=240)[0].startswith("HessianSpectrum(minimum: ")
