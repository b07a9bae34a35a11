"""paper_figs/_verdict.py: three-valued verdicts and the regime numbers printed beside them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paper_figs import _verdict  # noqa: E402
from paper_figs._verdict import Hypotheses, Regime  # noqa: E402

QI = _verdict.QUASI_INTERPOLATION


def _inside(label="a") -> Regime:
    return Regime(label, train_acc=1.0, eps=0.02, residual=0.1, exposure=25.0)


def test_judge_is_three_valued():
    assert _verdict.judge(True, [_inside(), _inside("b")], QI) == "borne out"
    assert _verdict.judge(False, [_inside()], QI) == "NOT borne out"
    short = Regime("c", train_acc=1.0, eps=0.02, residual=0.1, exposure=19.9)
    # one point outside: no verdict on the claim, whatever the claim's test said
    assert _verdict.judge(True, [_inside(), short], QI) == "outside the claim's hypotheses"
    assert _verdict.judge(False, [short], QI) == "outside the claim's hypotheses"
    assert _verdict.judge(True, [], QI) == "outside the claim's hypotheses"
    # per-point hypotheses: λ = 0 needs train accuracy 1 only
    free = Regime("λ=0", train_acc=1.0, exposure=0.0)
    assert _verdict.judge(True, [(_inside(), QI), (free, _verdict.INTERPOLATION)]) == "borne out"
    assert _verdict.judge(True, [(free, QI)]) == "outside the claim's hypotheses"


def test_violations_name_each_bound_and_the_missing_numbers():
    r = Regime("x", train_acc=0.984, eps=0.15, exposure=5.0)
    assert QI.violations(r) == [
        "train acc < 1",
        "ε > 0.1",
        "max|1−yρf| not measured",
        "λ·t < 20",
    ]
    assert QI.inside(_inside())
    # reasons the figure found itself come first and always count
    relu = Regime("relu", outside=("ReLU: piecewise-smooth right-hand side",))
    assert Hypotheses().violations(relu) == ["ReLU: piecewise-smooth right-hand side"]
    assert Hypotheses().inside(Regime("any"))


def test_regime_text_prints_the_numbers_and_in_or_out():
    r = Regime(
        "λ=0.01",
        train_acc=1.0,
        eps=0.0123,
        residual=0.25,
        exposure=20.0,
        settled=3e-4,
        extra=(("steps", 7),),
    )
    assert r.text(QI) == (
        "λ=0.01: train acc 1.000, ε 0.012, max|1−yρf| 0.25, λ·t 20, settled 3.0e-04, steps 7 (in)"
    )
    out = Regime("s", train_acc=0.5, residual=0.3, residual_name="δ", exposure=2.0)
    assert out.text(Hypotheses(min_train_acc=1.0, min_exposure=20.0)) == (
        "s: train acc 0.500, δ 0.3, λ·t 2 (out: train acc < 1, λ·t < 20)"
    )
    text = _verdict.regime_text([r], QI)
    assert text.startswith("regime (hypotheses: train acc ≥ 1, ε ≤ 0.1, residual ≤ 0.5, ")
    # the regime text never contains a verdict word
    assert "borne out" not in text and "claim's hypotheses" not in text


def test_line_has_the_parts_and_refuses_other_words():
    line = _verdict.line("x", "p", "m 1", [_inside()], QI, _verdict.BORNE_OUT)
    assert line.startswith("x: predicted p; measured m 1; regime (hypotheses: ")
    assert line.endswith(": borne out")
    with pytest.raises(ValueError) as err:
        _verdict.line("x", "p", "m", [_inside()], QI, "holds")
    assert str(err.value).startswith("word='holds' is not allowed; use one of 'borne out'")


def test_sqi_defect_is_zero_under_sqi_and_measures_an_orthogonal_defect():
    # centred targets for C = 3, two samples per class; outputs (1 − 0.1) ỹ exactly: δ = 0
    y = np.repeat(np.eye(3), 2, axis=0) - 1.0 / 3.0
    delta, eps_bar = _verdict.sqi_defect(0.9 * y, y)
    assert delta == pytest.approx(0.0, abs=1e-15)
    assert eps_bar == pytest.approx(0.1, rel=1e-14, abs=0)
    # a defect a·(0, 1, −1) on sample 0 is orthogonal to ỹ_0 = (2, −1, −1)/3: ε̄ unchanged and
    # δ = a·√2 / ||ỹ_0|| = a·√2 / √(2/3) = a·√3
    f = 0.9 * y
    f[0] += 0.05 * np.array([0.0, 1.0, -1.0])
    delta, eps_bar = _verdict.sqi_defect(f, y)
    assert eps_bar == pytest.approx(0.1, rel=1e-14, abs=0)
    assert delta == pytest.approx(0.05 * np.sqrt(3.0), rel=1e-14, abs=0)


def test_binary_residual_is_the_largest_shortfall_or_excess():
    y = np.array([1.0, -1.0, 1.0])
    f = np.array([0.9, -1.3, 0.2])  # 1 − y f: 0.1, −0.3, 0.8
    assert _verdict.binary_residual(f, y[:, None]) == pytest.approx(0.8, rel=1e-15, abs=0)


class _Run:
    """The fields of a gradflow Trajectory that run_regime reads."""

    def __init__(self, kind, t, observables, lam, normalization):
        self.kind, self.t, self.observables = kind, np.asarray(t), observables
        self.config = {"problem": {"weight_decay": lam, "normalization": normalization}}

    def __getitem__(self, name):
        return self.observables[name]


def test_run_regime_reads_epsilon_residual_and_exposure():
    # LM-last: ρ_k = (1, 1, ρ) with ρ = 2 at the end; ε = λρ²/2; residual max |1 − ρ m_n|
    rho = np.array([1.0, 2.0])
    margins = np.array([[0.1, 0.2], [0.45, 0.55]])  # ρ m at the end: 0.9, 1.1
    obs = {
        "train_acc": np.array([0.5, 1.0]),
        "rho": rho,
        "rho_k": np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 2.0]]),
        "margins": margins,
    }
    r = _verdict.run_regime(_Run("flow", [0.0, 40.0], obs, 0.5, "lm-last"), "a")
    assert r.train_acc == 1.0
    assert r.eps == pytest.approx(0.5 * 0.5 * 4.0, rel=1e-15, abs=0)
    assert r.residual == pytest.approx(0.1, rel=1e-12, abs=0)
    assert (r.exposure, r.exposure_name) == (20.0, "λ·t")
    # plain net with decay on every layer: ρ_d² is the mean of ρ_k²; SGD: ηλ·steps = λ·t
    r = _verdict.run_regime(_Run("sgd", [0.0, 4.0], obs, 0.1, "none"), "b")
    assert r.eps == pytest.approx(0.5 * 0.1 * (1 + 1 + 4) / 3, rel=1e-15, abs=0)
    assert r.exposure == pytest.approx(0.4, rel=1e-15, abs=0) and r.exposure_name == "ηλ·steps"
