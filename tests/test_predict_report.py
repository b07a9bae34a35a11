"""``gf.predict.report`` and ``normalized_outputs`` against THEORY 4's formulas in NumPy.

Every row of the report recomputed here from the weights of each column: the normalized
outputs ``f_n = f(W; x_n)/ρ`` with ``ρ = Π ||W_k||``, ``ρ_eq = Σ y·f / (Σ ||f||² + Nλ/2)``
(4.1), the residual and ``ε = (λ/2)/(m² + λ/2)`` of equal margins (4.3), the margin against
``1/ρ`` (4.4), equal ``ρ_k`` and ``λ ρ^{2/L} = ρ s`` (4.2), and the balance gaps against
``gap(0) e^{−2λt}`` (4.5). The runs are stand-ins holding only what ``report`` reads (the final
weights, the time axis, the seeds), so nothing is integrated: eager and cheap, for
benchmarks/mutation/screen.py.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from numpy_nets import relu_outputs

import gradflow as gf
from gradflow import predict
from gradflow.data import Dataset
from gradflow.models import MLP


def _problem(normalization, lam, c=1, widths=(4, 5), n=9, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = np.sign(x[:, :1] + 0.2) if c == 1 else np.eye(c)[np.arange(n) % c]
    net = MLP(3, widths, c, key=jax.random.PRNGKey(seed))
    return gf.Problem(net, Dataset("toy", x, y), weight_decay=lam, normalization=normalization)


def _moved(weights, seed, scale=0.3):
    """Other weights of the same shapes (a run's end)."""
    rng = np.random.default_rng(seed)
    return [np.asarray(w) * (1 + scale * rng.standard_normal(w.shape)) for w in weights]


def _run(weights, t_end, seeds=False):
    """A stand-in run: three time points to ``t_end``, the final weights (seed 0 of two)."""
    params = tuple(np.stack([w, 2 * w]) if seeds else w for w in weights)
    return SimpleNamespace(
        final_params=params,
        t=np.array([0.0, t_end / 3, t_end]),
        seeds=np.arange(2) if seeds else None,
    )


def _column(problem, weights):
    """ρ, ρ_k, f = f(W)/ρ, the margins and s, from a NumPy network."""
    ws = [np.asarray(w, np.float64) for w in weights]
    norms = np.array([np.linalg.norm(w) for w in ws])
    rho = float(np.prod(norms))
    f = relu_outputs(ws, problem.x_train) / rho
    y = np.asarray(problem.y_train)
    s = 2 / len(y) * float(np.sum((y - rho * f) * f))
    return {"rho": rho, "rho_k": norms, "f": f, "y": y, "m": np.sum(y * f, axis=1), "s": s}


def _gap(value, predicted):
    return abs(value / predicted - 1) if predicted != 0 else abs(value)


def _check_row(row, name, theory, tag, expected, regime=None):
    """``expected``: column label -> (value, predicted); ``regime``: column label -> the
    numbers that say where the claim was checked (name -> value)."""
    assert (row["prediction"], row["theory"], row["tag"]) == (name, theory, tag)
    first = next(iter(expected.values()))
    assert row["predicted"] == pytest.approx(first[1], rel=1e-12, abs=1e-300)
    keys = {"prediction", "theory", "tag", "predicted"}
    for label, (value, predicted) in expected.items():
        keys |= {label, f"predicted[{label}]", f"gap[{label}]"}
        assert row[label] == pytest.approx(value, rel=1e-11, abs=1e-15), label
        assert row[f"predicted[{label}]"] == pytest.approx(predicted, rel=1e-11, abs=1e-15)
        assert row[f"gap[{label}]"] == pytest.approx(_gap(value, predicted), rel=1e-8, abs=1e-13)
        for key, number in (regime or {}).get(label, {}).items():
            keys.add(f"{key}[{label}]")
            assert row[f"{key}[{label}]"] == pytest.approx(number, rel=1e-11, abs=1e-15), key
    assert set(row) == keys


def _binary_regime(c):
    """Near-interpolation at a column: the share of samples with ``y f > 0`` and the largest
    ``|1 − y ρ f|``."""
    margins = c["y"][:, 0] * c["f"][:, 0]
    return {
        "train_acc": float(np.mean(margins > 0)),
        "max_residual": float(np.max(np.abs(1 - c["rho"] * margins))),
    }


def test_normalized_outputs_and_rho_eq_of_a_problem():
    """``f = f(W; x)/Π||W_k||`` and ``ρ = Π||W_k||``; ``rho_eq(problem, W)`` is 4.1's
    ``Σ y·f / (Σ||f||² + Nλ/2)`` at those outputs (three classes)."""
    p = _problem("lm-last", 0.3, c=3)
    weights = _moved(p.model.weights, 1)
    ref = _column(p, weights)
    f, rho = predict.normalized_outputs(p, weights)
    assert float(rho) == pytest.approx(ref["rho"], rel=1e-14, abs=0)
    np.testing.assert_allclose(f, ref["f"], rtol=1e-13, atol=1e-15)
    a, b = np.sum(ref["y"] * ref["f"]), np.sum(ref["f"] ** 2)
    expected = a / (b + 9 * 0.3 / 2)
    assert float(predict.rho_eq(p, weights)) == pytest.approx(expected, rel=1e-13, abs=0)
    assert float(predict.rho_eq(ref["f"], ref["y"], 0.3)) == pytest.approx(
        expected, rel=1e-13, abs=0
    )


def test_report_of_lm_last_binary_rows():
    """LM-last, binary targets: ρ = ρ_eq (4.1), residual = ε (4.3), margin = 1/ρ (4.4), in a
    column per run (the seed-0 weights of an ensemble) and at a certified or uncertified
    point; no row of the all-layer decays."""
    lam = 0.2
    p = _problem("lm-last", lam)
    w_run, w_ens, w_fp = (_moved(p.model.weights, s) for s in (1, 2, 3))
    fp = SimpleNamespace(state=p.to_state(tuple(w_fp)), certified=True)
    runs = {"flow": _run(w_run, 3.0), "sde": _run(w_ens, 3.0, seeds=True)}
    rows = predict.report(p, runs, equilibrium=fp)
    cols = {"flow": _column(p, w_run), "sde": _column(p, w_ens), "fixed point": _column(p, w_fp)}

    def rho_eq(c):
        return np.sum(c["y"] * c["f"]) / (np.sum(c["f"] ** 2) + 9 * lam / 2)

    def eps(c):
        m = np.mean(c["m"])
        return (lam / 2) / (m**2 + lam / 2)

    assert len(rows) == 3
    _check_row(
        rows[0],
        "rho = rho_eq(V)",
        "4.1",
        "exact at equilibrium",
        {k: (c["rho"], rho_eq(c)) for k, c in cols.items()},
    )
    _check_row(
        rows[1],
        "residual 1 - mean(y rho f) = eps",
        "4.3",
        "exact under equal margins",
        {k: (1 - np.mean(c["m"]) * c["rho"], eps(c)) for k, c in cols.items()},
        {k: _binary_regime(c) for k, c in cols.items()},
    )
    _check_row(
        rows[2],
        "margin min(y f) = 1/rho",
        "4.4",
        "paper claim",
        {k: (np.min(c["m"]), 1 / c["rho"]) for k, c in cols.items()},
        {k: _binary_regime(c) for k, c in cols.items()},
    )
    # the moved weights leave some samples on the wrong side: the regime says so
    assert min(_binary_regime(c)["train_acc"] for c in cols.values()) < 1
    # not certified, or without a certificate at all: the same rows under "uncertified point";
    # only a certified point is called a fixed point
    fp = SimpleNamespace(state=p.to_state(tuple(w_fp)), certified=False)
    rows = predict.report(p, equilibrium=fp)
    assert [k for k in rows[0] if k.startswith("gap[")] == ["gap[uncertified point]"]
    rows = predict.report(p, equilibrium=SimpleNamespace(state=fp.state))
    assert [k for k in rows[0] if k.startswith("gap[")] == ["gap[uncertified point]"]
    rows = predict.report(p, equilibrium=SimpleNamespace(state=fp.state, certified=True))
    assert [k for k in rows[0] if k.startswith("gap[")] == ["gap[fixed point]"]
    # several classes: 4.1 only
    p3 = _problem("lm-last", lam, c=3)
    rows = predict.report(p3, {"flow": _run(_moved(p3.model.weights, 4), 1.0)})
    assert [r["theory"] for r in rows] == ["4.1"]


@pytest.mark.parametrize("normalization", ["none", "lm-all", "wn"])
def test_report_of_the_all_layer_decays(normalization):
    """Plain, LM-all, WN with λ > 0 (L = 3): equal ρ_k and λ ρ^{2/L} = ρ s (4.2), and the
    balance gaps ``ρ_k² − ρ_{k+1}²`` against ``gap(0) e^{−2λt}`` at the run's end and
    ``t = ∞`` at the fixed point (4.5), relative to ``Σ ρ_k²``."""
    lam, t_end = 0.15, 2.5
    p = _problem(normalization, lam)
    w_run, w_fp = _moved(p.model.weights, 5), _moved(p.model.weights, 6)
    fp = SimpleNamespace(state=p.to_state(tuple(w_fp)), certified=True)
    rows = predict.report(p, {"run": _run(w_run, t_end)}, equilibrium=fp)
    cols = {"run": _column(p, w_run), "fixed point": _column(p, w_fp)}
    n0 = np.array([np.linalg.norm(np.asarray(w)) for w in p.model.weights])
    gap0 = n0[:-1] ** 2 - n0[1:] ** 2

    def balance(c, t):
        gaps = c["rho_k"][:-1] ** 2 - c["rho_k"][1:] ** 2
        return np.max(np.abs(gaps - gap0 * np.exp(-2 * lam * t))) / np.sum(c["rho_k"] ** 2)

    assert len(rows) == 3
    _check_row(
        rows[0],
        "equal rho_k: max |rho_k / rho^(1/L) - 1| = 0",
        "4.2",
        "exact at equilibrium",
        {k: (np.max(np.abs(c["rho_k"] / c["rho"] ** (1 / 3) - 1)), 0.0) for k, c in cols.items()},
    )
    _check_row(
        rows[1],
        "lambda rho^(2/L) = rho s",
        "4.2",
        "exact at equilibrium",
        {k: (c["rho"] * c["s"], lam * c["rho"] ** (2 / 3)) for k, c in cols.items()},
    )
    _check_row(
        rows[2],
        "balance gaps rho_k^2 - rho_{k+1}^2 = gap(0) e^(-2 lambda t)",
        "4.5",
        "exact for the flow",
        {
            "run": (balance(cols["run"], t_end), 0.0),
            "fixed point": (balance(cols["fixed point"], np.inf), 0.0),
        },
    )


def test_report_without_decay_or_with_one_layer():
    """λ = 0 (two layers): no 4.2 rows, and the gaps are conserved (``gap(0)``, at the run's end
    and at the fixed point, t = ∞); one layer: no gaps at all; a run without time points is at
    t = 0; no run and no point is refused."""
    p = _problem("none", 0.0, widths=(4,))
    w, w_fp = _moved(p.model.weights, 7), _moved(p.model.weights, 17)
    fp = SimpleNamespace(state=p.to_state(tuple(w_fp)), certified=True)
    rows = predict.report(p, {"run": _run(w, 4.0)}, equilibrium=fp)
    assert [r["theory"] for r in rows] == ["4.5"]
    n0 = np.array([np.linalg.norm(np.asarray(m)) for m in p.model.weights])
    for label, weights in (("run", w), ("fixed point", w_fp)):
        c = _column(p, weights)
        gaps = c["rho_k"][:-1] ** 2 - c["rho_k"][1:] ** 2
        expected = np.max(np.abs(gaps - (n0[:-1] ** 2 - n0[1:] ** 2))) / np.sum(c["rho_k"] ** 2)
        assert rows[0][label] == pytest.approx(expected, rel=1e-11, abs=0)
    # with decay, a run with an empty time axis is compared at t = 0
    lam = 0.4
    p = _problem("none", lam)
    w = _moved(p.model.weights, 8)
    empty = SimpleNamespace(final_params=tuple(w), t=np.zeros(0), seeds=None)
    at_zero = predict.report(p, {"run": empty})[-1]["run"]
    assert at_zero == pytest.approx(
        predict.report(p, {"run": _run(w, 0.0)})[-1]["run"], rel=1e-14, abs=0
    )
    assert at_zero != pytest.approx(
        predict.report(p, {"run": _run(w, 1.0)})[-1]["run"], rel=1e-3, abs=0
    )
    one = _problem("none", lam, widths=())
    rows = predict.report(one, {"run": _run(_moved(one.model.weights, 9), 1.0)})
    assert [r["theory"] for r in rows] == ["4.2", "4.2"]
    with pytest.raises(ValueError) as info:
        predict.report(p)
    assert str(info.value) == "report: no runs and no equilibrium were given; give at least one"


def test_format_report_is_one_line_per_row():
    row = {
        "prediction": "rho = rho_eq(V)",
        "theory": "4.1",
        "tag": "exact at equilibrium",
        "predicted": 2.0,
        "flow": 2.5,
        "predicted[flow]": 2.0,
        "gap[flow]": 0.25,
        "fixed point": 1.0000001,
        "predicted[fixed point]": 1.0,
        "gap[fixed point]": 1e-7,
    }
    margin = dict(
        row,
        theory="4.4",
        **{"train_acc[flow]": 0.875, "max_residual[flow]": 1.25},
        **{"train_acc[fixed point]": 1.0, "max_residual[fixed point]": 0.0625},
    )
    text = predict.format_report([row, dict(row, theory="4.3"), margin])
    assert text == (
        "[4.1, exact at equilibrium] rho = rho_eq(V): flow: 2.5 vs 2 (gap 2.50e-01); "
        "fixed point: 1 vs 1 (gap 1.00e-07)\n"
        "[4.3, exact at equilibrium] rho = rho_eq(V): flow: 2.5 vs 2 (gap 2.50e-01); "
        "fixed point: 1 vs 1 (gap 1.00e-07)\n"
        "[4.4, exact at equilibrium] rho = rho_eq(V): flow: 2.5 vs 2 (gap 2.50e-01; train acc "
        "0.875, max|1 - y rho f| 1.2); fixed point: 1 vs 1 (gap 1.00e-07; train acc 1.000, "
        "max|1 - y rho f| 0.062)"
    )


# ---- the edges of the closed forms --------------------------------------------------------------


def test_closed_forms_at_their_edges():
    """Two classes are allowed (κ = 2ε/λ, the ETF Gram ``[[1, −1], [−1, 1]]``) and one is refused
    word for word; outputs and targets of different shapes are refused; ``rank_bound``'s default
    is one position per layer (a dense layer); one WN step is a scalar."""
    assert float(predict.nc_kappa(0.1, 0.04, 2)) == pytest.approx(2 * 0.1 / 0.04, rel=1e-15, abs=0)
    np.testing.assert_array_equal(predict.etf_gram(2), [[1.0, -1.0], [-1.0, 1.0]])
    for fn, args in ((predict.nc_kappa, (0.1, 0.04)), (predict.etf_gram, ())):
        with pytest.raises(ValueError) as info:
            fn(*args, 1)
        name = fn.__name__
        assert str(info.value) == f"{name}: num_classes=1 is not allowed; use C >= 2"
    f, y = np.ones((4, 3)), np.ones((4, 1))
    for call in (lambda: predict.rho_eq(f, y, 0.1), lambda: predict.rho_relaxation(1.0, f, y, 0.1)):
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == "f has shape (4, 3) and y has shape (4, 1); they must match"
    # one step of WN growth is a scalar, several a cumulative sum
    one = predict.wn_norm_growth(2.0, 0.5, 3.0)
    assert one.shape == () and float(one) == 2.75
    np.testing.assert_array_equal(
        predict.wn_norm_growth(2.0, 0.5, np.array([3.0, 1.0])), [2.75, 3.0]
    )
    k, bound = predict.rank_bound(8, 0.1, 0.01, 0.1, 10.0)
    assert float(k) == math.ceil(math.log(10.0 / 0.1) / (0.1 * 0.01)) and float(bound) == 8 * k


def test_lm_last_is_told_apart_from_the_all_layer_decays():
    """LM-last's decay is ``ρ²``; its weights ``(V_1, ..., ρ V_L)`` have
    ``Σ ||W_k||² = L − 1 + ρ²``: they differ by 1 for two layers, and by a relative 2e-6 when
    ρ = 1000 (three layers of norm 10). Either way the report has LM-last's rows (4.1, 4.3,
    4.4) and none of 4.2 or 4.5."""
    for widths, scale in (((4,), 1.0), ((4, 5), 10.0)):
        p = _problem("lm-last", 0.1, widths=widths)
        net = p.model.with_weights(tuple(scale * w / np.linalg.norm(w) for w in p.model.weights))
        data = Dataset("toy", np.asarray(p.x_train), np.asarray(p.y_train))
        p = gf.Problem(net, data, weight_decay=0.1, normalization="lm-last")
        rows = predict.report(p, {"run": _run(_moved(net.weights, 10), 1.0)})
        assert [r["theory"] for r in rows] == ["4.1", "4.3", "4.4"]


def test_balanced_equilibria_say_their_stability_and_refuse_by_name():
    """L = 2 (THEORY 4.2): ρ = 0 is unstable with slope ``g'(0) = 2 (2a/n − λ) > 0`` and
    ``(a − nλ/2)/b`` stable, each with its word; a bad L or flow is refused word for word,
    LM-last with the pointer to its own law."""
    a, b, n, lam = 8.0, 10.0, 10, 0.05
    zero, top = predict.balanced_equilibria(a, b, n, lam, 2)
    assert zero.rho == 0 and zero.slope == pytest.approx(2 * (2 * a / n - lam), rel=1e-12, abs=0)
    assert (zero.stability, top.stability) == ("unstable", "stable")
    for L in (True, 0, 2.0):
        with pytest.raises(ValueError) as info:
            predict.balanced_equilibria(a, b, n, lam, L)
        assert str(info.value) == (
            f"balanced equilibria: L={L!r} is not allowed; use an integer >= 1"
        )
    allowed = "is not allowed; use one of ['lm-all', 'plain', 'wn']"
    with pytest.raises(ValueError) as info:
        predict.balanced_equilibria(a, b, n, lam, 2, flow="lm-last")
    assert str(info.value) == (
        f"balanced equilibria: flow='lm-last' {allowed} (LM-last has one scale: use "
        "predict.rho_relaxation)"
    )
    with pytest.raises(ValueError) as info:
        predict.balanced_equilibria(a, b, n, lam, 2, flow="batch")
    assert str(info.value) == f"balanced equilibria: flow='batch' {allowed}"


def test_a_double_root_is_found_and_semi_stable():
    """L = 3 with λ at the peak of ``h = (2/n) ρ^{1/3} (a − ρ b) − λ`` (THEORY 4.2): the positive
    roots merge into one tangent root at ``ρ* = (1/3) a / ((4/3) b) = a/(4b)``, where g ≤ 0 on
    both sides (semi-stable: attracting from above only); ρ = 0 is stable (g'(0) = −3λ)."""
    a, b, n, L = 8.0, 10.0, 10, 3
    peak_rho = a / (4 * b)
    lam = 2 / n * peak_rho ** (1 / 3) * (a - peak_rho * b)
    zero, double = predict.balanced_equilibria(a, b, n, lam, L)
    assert zero.rho == 0 and zero.stability == "stable"
    assert zero.slope == pytest.approx(-3 * lam, rel=1e-12, abs=0)
    assert double.rho == pytest.approx(peak_rho, rel=1e-12, abs=0)
    assert double.stability == "semi-stable" and abs(double.slope) < 1e-12


def test_balanced_equilibria_for_small_or_negative_alignment():
    """L = 1 is 4.1's ``ρ_eq = a / (b + nλ/2)`` also for ``0 < a < 1``; for ``a ≤ 0`` no positive
    root exists (``ρ ≤ a/b``), so L = 1 has none (ρ = 0 only at a = 0) and L = 2 only ρ = 0;
    one sample is enough,
    and ``n = 0``, ``b = 0`` or ``λ < 0`` are refused word for word."""
    (one,) = predict.balanced_equilibria(0.5, 2.0, 1, 0.2, 1)
    assert one.rho == pytest.approx(0.5 / (2.0 + 0.1), rel=1e-13, abs=0) and one.stable
    # a = 0, L = 1: g(ρ) = −(2b/n + λ) ρ vanishes at ρ = 0 only, which attracts
    (zero,) = predict.balanced_equilibria(0.0, 2.0, 4, 0.2, 1)
    assert zero.rho == 0.0 and zero.stable
    assert predict.balanced_equilibria(-0.5, 2.0, 4, 0.2, 1) == []
    assert [e.rho for e in predict.balanced_equilibria(-0.5, 2.0, 4, 0.2, 2)] == [0.0]
    for b, n, lam in ((2.0, 0, 0.2), (0.0, 4, 0.2), (2.0, 4, -0.1)):
        with pytest.raises(ValueError) as info:
            predict.balanced_equilibria(0.5, b, n, lam, 2)
        assert str(info.value) == (
            "balanced_equilibria: need b = Σ||f_n||² > 0, n > 0 and weight_decay >= 0; "
            f"got b={b!r}, n={n!r}, weight_decay={lam!r}"
        )
