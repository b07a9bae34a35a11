"""``gf.predict.balanced_equilibria`` and its reduced ODE against THEORY 4.2, case by case.

Under balance ``ρ_k = ρ^{1/L}`` the all-layer-decay flows reduce to

    dρ/dt = g(ρ) = L ρ h(ρ),   h(ρ) = (2/n) ρ^{1−2/L} (a − ρ b) − λ,

so the positive equilibria are the roots of h in (0, a/b] and their stability is the sign of
``g'(ρ) = L ρ h'(ρ)`` (read from the sign of g on each side where g' = 0). Every expected root
here is a closed form (L = 1, 2; λ = 0: ``ρ = a/b``; the tangent root ``ρ* = a/(4b)`` at L = 3) or
comes from SciPy's ``brentq`` on an h written in this file, and every stability word from the
sign of a slope or of g computed here, not from the library. Eager and cheap (no JAX), for
benchmarks/mutation/screen.py; the cases are the branches of the root scan and of the
classification that the other tests of ``tests/test_predict*.py`` do not reach: a root at
``a/b`` with λ = 0, a tiny ``a/b``, a double root at a large scale, ``a ≤ 0``, and the module's
symbols read at call time. The second half checks the normalized solve (roots found in
``u = ρb/a`` with the parameters ``(1, 1, n, λ/κ)``): the homogeneity identity itself,
symbolically, and closed forms at a and b from 1e-300 to 1e300.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import sympy as sp

from gradflow import predict


def _g(a, b, n, lam, L):
    """THEORY 4.2's reduced right-hand side, written out here."""
    return lambda r: L * r * (2 / n * r ** (1 - 2 / L) * (a - r * b) - lam)


@pytest.mark.parametrize("a,L", [(-0.5, 3), (0.0, 2), (0.0, 4), (-0.5, 5)])
def test_rho_zero_attracts_when_the_alignment_is_not_positive(a, L):
    """``a ≤ 0``: no positive root (ρ ≤ a/b), and ``g(ρ) = L ρ [(2/n) ρ^{1−2/L}(a − ρb) − λ] < 0``
    on all of ρ > 0, so ρ = 0 attracts from the only side there is: ``"stable"``, also where
    ``g'(0) = 0`` (λ = 0 and L ≥ 3, or a = λ = 0 and L = 2), where the sides are read."""
    b, n, lam = 2.0, 4, 0.0
    g = _g(a, b, n, lam, L)
    assert all(g(r) < 0 for r in np.logspace(-8, 3, 12))
    (zero,) = predict.balanced_equilibria(a, b, n, lam, L)
    assert zero.rho == 0.0 and zero.slope == 0.0
    assert zero.stability == "stable"


def _slope_word(slope):
    return "stable" if slope < 0 else "unstable"


@pytest.mark.parametrize("a", [1e-13, 1e-30])
def test_a_root_at_a_over_b_without_decay_at_a_tiny_scale(a):
    """λ = 0, L = 2: ``h = (2/n)(a − ρb)`` vanishes at ``ρ = a/b`` exactly, and
    ``g' = L(h + ρh')`` is ``4a/n`` at 0 (unstable) and ``−4a/n`` at a/b (stable). At
    ``a/b = 1e-13`` and below both slopes are under the classification's zero cut-off
    (``1e-12`` of g's size, here ~``4b/n``), so the words come from the sign of g on each side;
    the root must still be a/b to rounding (a root finder's default absolute tolerance,
    ``2e-12``, would not resolve it). The scan must stay quiet: its grid reaches
    ``1e-300 a/b``, where the L = 1 law divides by ρ = 0 after underflow."""
    b, n = 1.0, 1
    zero, top = predict.balanced_equilibria(a, b, n, 0.0, 2)
    assert zero.rho == 0.0 and top.rho == pytest.approx(a / b, rel=1e-13, abs=0)
    assert zero.slope == pytest.approx(4 * a / n, rel=1e-12, abs=0)
    assert top.slope == pytest.approx(-4 * a / n, rel=1e-12, abs=0)
    assert abs(top.slope) < 1e-12 * (4 * b / n)  # the sides decide
    assert (zero.stability, top.stability) == (_slope_word(4 * a / n), _slope_word(-4 * a / n))
    # L = 3: g ~ ρ^{4/3} at 0 (g'(0) = 0, g > 0 just right of it: unstable); at a/b
    # g' = −3 (2/n) b (a/b)^{4/3} < 0
    g = _g(a, b, n, 0.0, 3)
    zero, top = predict.balanced_equilibria(a, b, n, 0.0, 3)
    assert zero.rho == 0.0 and zero.slope == 0.0 and g(1e-3 * a / b) > 0
    assert zero.stability == "unstable"
    assert top.rho == pytest.approx(a / b, rel=1e-13, abs=0)
    assert top.slope == pytest.approx(-3 * 2 / n * b * (a / b) ** (4 / 3), rel=1e-9, abs=0)
    assert top.stability == "stable"
    # L = 1 with decay: 4.1's ρ_eq = a/(b + nλ/2), with no warning from the scan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (one,) = predict.balanced_equilibria(a, b, n, 0.5, 1)
    assert one.rho == pytest.approx(a / (b + n * 0.5 / 2), rel=1e-13, abs=0) and one.stable


def test_a_double_root_at_a_large_scale_is_semi_stable():
    """L = 3 with λ at the peak of ``h = (2/n) ρ^{1/3}(a − ρb) − λ``: one tangent root at
    ``ρ* = a/(4b)`` where g ≤ 0 on both sides (semi-stable), at ``a/b = 1e4``, where g and g' are
    of order 1e5 and g'(ρ*) = 0 is computed only to rounding (~1e-9 here): the word must come from
    the sides, not from the sign of that rounding error. λ is the peak value times
    ``1 + 4e-15`` (h(ρ*) = −4e-15 λ, within the tangency tolerance ``1e-13`` of h's size), so that
    rounding cannot split the tangent root into two simple ones."""
    a, b, n, L = 1e4, 1.0, 1, 3
    peak_rho = a / (4 * b)
    lam = 2 / n * peak_rho ** (1 / 3) * (a - peak_rho * b) * (1 + 4e-15)
    g = _g(a, b, n, lam, L)
    assert g(peak_rho * (1 - 1e-3)) < 0 and g(peak_rho * (1 + 1e-3)) < 0
    zero, double = predict.balanced_equilibria(a, b, n, lam, L)
    assert zero.rho == 0.0 and zero.stability == "stable"  # g'(0) = −3λ
    assert zero.slope == pytest.approx(-3 * lam, rel=1e-12, abs=0)
    assert double.rho == pytest.approx(peak_rho, rel=1e-12, abs=0)
    assert abs(double.slope) < 1e-12 * 3 * lam and double.stability == "semi-stable"


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_a_slope_within_rounding_of_zero_is_read_from_the_sides(scale):
    """``Equilibrium.stability``'s rule: ``g' < 0`` stable, ``g' > 0`` unstable, and where g' is
    zero to rounding (``|g'| <= 1e-12`` of g's size, inclusive) the sign of g on each side: g > 0
    below and < 0 above attracts (stable), the reverse repels (unstable), a side where g does not
    change sign or vanishes attracts from one side at most (semi-stable). Toy right-hand sides
    with a root at ρ = 1 whose sides are known exactly."""
    classify = predict._balanced._classify
    cut = 1e-12 * scale
    sides = {  # g near ρ = 1, and the word its sides give
        "stable": lambda r: 1.0 - r,
        "unstable": lambda r: r - 1.0,
        "semi-stable": lambda r: -((r - 1.0) ** 2),
    }
    flat_below = {  # g = 0 on one side: neither attracts nor repels from there
        "semi-stable": [
            lambda r: min(1.0 - r, 0.0),
            lambda r: max(1.0 - r, 0.0),
            lambda r: min(r - 1.0, 0.0),
            lambda r: max(r - 1.0, 0.0),
        ]
    }
    for slope in (0.0, cut, -cut, 0.5 * cut):
        for word, g in sides.items():
            assert classify(g, 1.0, slope, scale, 1.0, math.inf) == word, (slope, word)
        for g in flat_below["semi-stable"]:
            assert classify(g, 1.0, slope, scale, 1.0, math.inf) == "semi-stable", slope
    for slope in (2 * cut, -2 * cut):  # above the cut-off the slope's sign decides
        assert classify(sides["semi-stable"], 1.0, slope, scale, 1.0, math.inf) == _slope_word(
            slope
        )
    # the sides are read closer than half the distance to a neighbouring root: g = (1 − r)(1.5 − r)
    # has a stable root at 1 (g > 0 just below, < 0 just above) and the next root 0.5 away; with
    # the next root 1e-9 above, g < 0 below and > 0 between the two roots: unstable (a probe of
    # 1e-6, past the neighbour, would read g < 0 on both sides: semi-stable)
    two = lambda r: (1.0 - r) * (1.5 - r)  # noqa: E731
    assert classify(two, 1.0, 0.0, scale, 1.0, 0.5) == "stable"
    # the probe scales with the root: at ρ = 1e8 a step of 1e-6·ρ = 100 reads the sides, where
    # a step below ρ's ulp (1.5e-8) would read g(ρ) = 0 twice
    assert classify(lambda r: 1e8 - r, 1e8, 0.0, scale, 1e8, math.inf) == "stable"
    near = lambda r: (1.0 - r) * (r - 1.0 - 1e-9)  # noqa: E731
    assert classify(near, 1.0, 0.0, scale, 1.0, 1e-9) == "unstable"


def test_the_module_symbols_are_read_at_call_time():
    """``RHO``, ``A``, ``N_SAMPLES``, ``B``, ``LAM`` are the symbols g is written in, with the
    assumptions of THEORY 4.2 (ρ > 0, a real, n > 0, b ≥ 0, λ ≥ 0), built on first use by the
    module's ``__getattr__`` (read here through ``getattr`` inside the test, so a broken lookup
    shows; an import at the top of a test module runs it once, before any check); another name
    is refused as Python refuses a missing module attribute."""
    module = predict._balanced
    expected = {
        "RHO": ("rho", "positive"),
        "A": ("a", "real"),
        "N_SAMPLES": ("n", "positive"),
        "B": ("b", "nonnegative"),
        "LAM": ("lambda", "nonnegative"),
    }
    symbols = {}
    for attr, (name, assumption) in expected.items():
        symbols[attr] = getattr(module, attr)
        assert isinstance(symbols[attr], sp.Symbol) and symbols[attr].name == name
        assert getattr(symbols[attr], f"is_{assumption}") is True, attr
    assert predict.balanced_rhs_symbolic(2).free_symbols == set(symbols.values())
    for name in ("rho", "Rho", "XX"):
        with pytest.raises(AttributeError) as info:
            getattr(module, name)
        assert str(info.value) == f"module 'gradflow.predict._balanced' has no attribute {name!r}"
    assert not hasattr(module, "lam")


@pytest.mark.parametrize("flow", ["plain", "lm-all", "wn"])
def test_the_reduced_ode_is_derived_afresh_from_the_scale_law(flow):
    """THEORY 3.1's per-layer law ``dρ_k/dt = (ρ/ρ_k) s − λρ_k`` reduces under balance to
    ``g = L[(2/n) ρ^{2−2/L}(a − ρb) − λρ]`` (written out here), for every flow that shares the
    law. ``balanced_rhs_symbolic`` keeps its results in an ``lru_cache``; its undecorated function
    (``__wrapped__``) derives the expression afresh, so a broken scale law shows even after an
    earlier test filled the cache."""
    rho, a, b, n, lam = (
        getattr(predict._balanced, k) for k in ("RHO", "A", "B", "N_SAMPLES", "LAM")
    )
    derive = predict.balanced_rhs_symbolic.__wrapped__
    for L in (1, 2, 3):
        expected = L * (2 / n * rho ** (2 - sp.Rational(2, L)) * (a - rho * b) - lam * rho)
        assert sp.simplify(derive(L, flow) - expected) == 0, L


def test_a_tangency_is_a_double_root_to_1e13_of_the_size_of_h():
    """Just above the peak of h (L = 3) the two positive roots have merged into none; a tangency
    is told from a miss to rounding: ``h(ρ*)`` within ``1e-13`` of h's natural size
    ``S = λ + (2/n)(a/b)^{1−2/L} a`` (its two terms at ρ = a/b) is a double root at
    ``ρ* = a/(4b)``, semi-stable, and 10 % further out there is no positive root. At
    ``a/b = 1e4`` and n = 4 the size is dominated by its second term (``1e5`` against ``5e4``) and
    ``h(ρ*)`` is computed to ~1e-11, far inside the 1.6e-8 of the cut."""
    a, b, n, L = 1e4, 1.0, 4, 3
    peak_rho = a / (4 * b)
    peak = 2 / n * peak_rho ** (1 / 3) * (a - peak_rho * b)
    size = peak + 2 / n * (a / b) ** (1 - 2 / L) * a
    inside, outside = peak + 0.9e-13 * size, peak + 1.1e-13 * size
    zero, double = predict.balanced_equilibria(a, b, n, inside, L)
    assert zero.rho == 0.0 and zero.stability == "stable"
    assert double.rho == pytest.approx(peak_rho, rel=1e-12, abs=0)
    assert double.stability == "semi-stable"
    assert [e.rho for e in predict.balanced_equilibria(a, b, n, outside, L)] == [0.0]


@pytest.mark.parametrize("a,b", [(8.0, 2.0), (8.0, 10.0)])
def test_a_slope_at_rho_zero_is_zero_below_1e12_of_the_size_of_g(a, b):
    """L = 2 (THEORY 4.2): ``g'(0) = 2(2a/n − λ) = s`` and the second root
    ``ρ₂ = (a − nλ/2)/b = s n/(4b)`` has slope ``−s``. A slope counts as zero below ``1e-12`` of
    g's size ``L(2/n (|a| + b max(a/b, 1)) + λ)``: at 1.2 times that cut the words are the slopes'
    (0 unstable, ρ₂ stable); at 0.8 times it they come from the sides of each root, read within
    half the distance to the other (1e-12 of a/b): g > 0 just right of 0 (unstable) and g > 0
    below, < 0 above ρ₂ (stable) — the same words. (Probed at ``1e-6 a/b``, past the other
    root, they read "stable" and "semi-stable".) With a/b = 4 and 0.8 the size's terms
    ``b max(a/b, 1)`` and λ ≈ 2a/n are told apart."""
    n, L = 10, 2
    for factor, words in ((1.2, ("unstable", "stable")), (0.8, ("unstable", "stable"))):
        lam0 = 2 * a / n
        cut = 1e-12 * L * (2 / n * (abs(a) + b * max(a / b, 1.0)) + lam0)
        lam = lam0 - factor * cut / 2  # s = 2(2a/n − λ) = factor · cut
        s = 2 * (2 * a / n - lam)
        zero, second = predict.balanced_equilibria(a, b, n, lam, L)
        assert zero.rho == 0.0 and zero.slope == pytest.approx(s, rel=1e-3, abs=0)
        assert second.rho == pytest.approx((a - n * lam / 2) / b, rel=1e-3, abs=0)
        assert second.slope == pytest.approx(-s, rel=1e-3, abs=0)
        assert (zero.stability, second.stability) == words, factor


@pytest.mark.parametrize("n", [10, 1000])
def test_just_below_the_peak_two_simple_roots_and_no_spurious_double_root(n):
    """L = 3, a = 8, b = 10: h peaks at ``ρ* = a/(4b) = 0.2``. With λ a relative 1e-14 below the
    peak, h(ρ*) > 0 and h changes sign in the scan's cells beside ρ*: the equilibria are the two
    simple roots ``0.2 ∓ ~4e-8`` there (unstable, then stable) — ρ* itself, within the tangency
    cut of h's size, is not reported a third time as a double root (it was: "semi-stable" at
    0.2 between them). At n = 1000 too: h(ρ*) is 1e-14 of the peak, a hundred times its
    rounding, and the slopes ``g' = 3ρh'``, about 1e-7 of g's size ``3(2/n)(a + b·a/b)``, are
    far above the zero cut (1e-12 of it): not merged into a double root."""
    a, b, L = 8.0, 10.0, 3
    peak_rho = a / (4 * b)
    peak = 2 / n * peak_rho ** (1 / 3) * (a - peak_rho * b)
    zero, low, high = predict.balanced_equilibria(a, b, n, peak * (1 - 1e-14), L)
    assert zero.rho == 0.0 and zero.stability == "stable"
    assert low.rho < peak_rho < high.rho and high.rho - low.rho < 1e-6
    assert (low.stability, high.stability) == ("unstable", "stable")


@pytest.mark.parametrize("flow", ["plain", "lm-all", "wn"])
def test_h_and_g_are_homogeneous_in_the_magnitudes(flow):
    """THEORY 4.2's h = g/(Lρ) = (2/n) ρ^p (a − ρb) − λ, ``p = 1 − 2/L``, is linear in (a, b, λ):
    with ``ρ = u a/b`` and ``κ = a (a/b)^p`` (a, b > 0),
    ``h(ρ; a, b, n, λ) = κ h(u; 1, 1, n, λ/κ)``,
    ``g(ρ; a, b, n, λ) = (a/b) κ g(u; 1, 1, n, λ/κ)`` and ``g'(ρ) = κ g'(u; 1, 1, n, λ/κ)``,
    the identities by which ``balanced_equilibria`` solves at O(1) magnitudes whatever a and b.
    Checked here symbolically on the derived g (not assumed), for L = 1 … 4."""
    rho, a_real, b_real, lam = (getattr(predict._balanced, k) for k in ("RHO", "A", "B", "LAM"))
    u, a, b = sp.symbols("u a_pos b_pos", positive=True)
    for L in (1, 2, 3, 4):
        g = predict.balanced_rhs_symbolic.__wrapped__(L, flow)
        kappa = a * (a / b) ** (1 - sp.Rational(2, L))
        funcs = {"g": (g, (a / b) * kappa), "g'": (sp.diff(g, rho), kappa)}
        funcs["h"] = (g / (L * rho), kappa)
        for name, (expr, factor) in funcs.items():
            scaled = expr.subs({a_real: a, b_real: b}).subs(rho, u * a / b)
            unit = expr.subs({rho: u, a_real: 1, b_real: 1, lam: lam / kappa}, simultaneous=True)
            assert sp.simplify(scaled - factor * unit) == 0, (L, name)


# a/b from 1e-200 to 1e300, a and b from 1e-300 to 1e300; every one of these broke the old scan
EXTREMES = [
    (1e-300, 1e-300),
    (1e-221, 1.0),
    (1e-200, 1.0),
    (1e-300, 1e-100),
    (1e300, 1e300),
    (1e300, 1e290),
    (1e-100, 1e-300),
    (1e200, 1e-100),
]


def _normal(x):
    return 1e-290 < abs(x) < 1e290


def _pow(x, e):
    """``x**e`` in float64, inf past the largest float (Python's float power raises there)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float64(x) ** e)


@pytest.mark.parametrize("a,b", EXTREMES)
def test_without_decay_the_roots_are_zero_and_a_over_b_at_any_magnitude(a, b):
    """λ = 0 (THEORY 4.2): ``h = (2/n) ρ^{1−2/L} (a − ρb)`` vanishes at ``ρ = a/b`` only, with
    ``g'(a/b) = −L (2/n) b (a/b)^{2−2/L} < 0`` (stable); ρ = 0 is a root for L ≥ 2, unstable
    (L = 2: ``g'(0) = 4a/n > 0``; L ≥ 3: g'(0) = 0 and g > 0 just right of 0). n = 1. The
    slopes are compared where they are normal floats; the words everywhere."""
    n = 1
    for L in (1, 2, 3, 4):
        equilibria = predict.balanced_equilibria(a, b, n, 0.0, L)
        top = equilibria[-1]
        assert len(equilibria) == (1 if L == 1 else 2), L
        assert top.rho == pytest.approx(a / b, rel=1e-13, abs=0)
        expected = -L * 2 / n * b * _pow(a / b, 2 - 2 / L)
        if _normal(expected):
            assert top.slope == pytest.approx(expected, rel=1e-12, abs=0), L
        assert top.stability == "stable", L
        if L >= 2:
            zero = equilibria[0]
            assert zero.rho == 0.0 and zero.stability == "unstable", L
            assert zero.slope == pytest.approx(4 * a / n if L == 2 else 0.0, rel=1e-12, abs=0)


@pytest.mark.parametrize("a,b", EXTREMES)
def test_with_decay_the_closed_form_roots_at_any_magnitude(a, b):
    """THEORY 4.2 with λ > 0, n = 1. L = 1: ``ρ = a/(b + nλ/2)`` (4.1), ``g' = −(2b/n + λ)``;
    here λ = b and λ = 1e10 b. L = 2: ``ρ₂ = (a − nλ/2)/b`` with ``g'(ρ₂) = −(4/n)(a − nλ/2)``
    and ``g'(0) = 2(2a/n − λ) > 0``; here λ = 0.6 a/n (ρ₂ = 0.7 a/b). L = 3: λ chosen so that
    ``ρ₀ = a/(8b)`` is a root, ``λ = (2/n) ρ₀^{1/3} (7/8) a``, where
    ``g'(ρ₀) = 3 ρ₀ h'(ρ₀) = (8/n) b ρ₀^{4/3} > 0`` (unstable); ρ = 0 is stable
    (``g'(0) = −3λ``) and the third root, past h's peak at ``a/(4b)``, stable."""
    n = 1
    for lam in (b, 1e10 * b if b < 1e290 else 1e-10 * b):
        (one,) = predict.balanced_equilibria(a, b, n, lam, 1)
        assert one.rho == pytest.approx(a / (b + n * lam / 2), rel=1e-13, abs=0)
        assert one.slope == pytest.approx(-(2 * b / n + lam), rel=1e-12, abs=0)
        assert one.stability == "stable"
    lam = 0.6 * a / n
    zero, two = predict.balanced_equilibria(a, b, n, lam, 2)
    assert zero.rho == 0.0 and zero.stability == "unstable"
    assert zero.slope == pytest.approx(2 * (2 * a / n - lam), rel=1e-12, abs=0)
    assert two.rho == pytest.approx((a - n * lam / 2) / b, rel=1e-13, abs=0)
    assert two.slope == pytest.approx(-4 / n * (a - n * lam / 2), rel=1e-12, abs=0)
    assert two.stability == "stable"
    rho0 = a / (8 * b)
    lam = 2 / n * _pow(rho0, 1 / 3) * 7 / 8 * a
    if not _normal(lam):
        return
    zero, low, high = predict.balanced_equilibria(a, b, n, lam, 3)
    assert (zero.stability, low.stability, high.stability) == ("stable", "unstable", "stable")
    assert zero.rho == 0.0 and zero.slope == pytest.approx(-3 * lam, rel=1e-12, abs=0)
    assert low.rho == pytest.approx(rho0, rel=1e-12, abs=0)
    expected = 8 / n * b * _pow(rho0, 4 / 3)
    if _normal(expected):
        assert low.slope == pytest.approx(expected, rel=1e-11, abs=0)
    assert a / (4 * b) < high.rho < a / b


@pytest.mark.parametrize("a", [1e-221, 1e-230, 1e-300])
def test_underflow_makes_no_spurious_roots(a):
    """The reported defect: at ``a = 1e-221`` (b = 1, n = 10, λ = 0, L = 3) h underflowed to 0 on
    most of the scan's grid (which reached down to ``1e-300 a/b``) and every such point was
    returned as a "semi-stable" root (345 of them). The roots are ρ = 0 (unstable: g > 0 just
    right of it) and ``ρ = a/b``, stable: ``g'(a/b) = −3 (2/n) b (a/b)^{4/3} < 0`` — "stable" even
    where that slope underflows (a = 1e-300)."""
    zero, top = predict.balanced_equilibria(a, 1.0, 10, 0.0, 3)
    assert zero.rho == 0.0 and zero.stability == "unstable"
    assert top.rho == pytest.approx(a, rel=1e-13, abs=0) and top.stability == "stable"


def test_a_root_finder_bracket_whose_product_underflows():
    """The reported defect: ``balanced_equilibria(1e-200, 1, 1, 0, 2)`` raised brentq's "Failed
    to converge" (h at the bracket's ends, 2e-201 and −2e-206, multiply to 0 in float64). L = 2,
    λ = 0: ρ = 0 with ``g'(0) = 4a/n`` and ``ρ = a/b`` with ``g' = −4a/n``."""
    a, n = 1e-200, 1
    zero, top = predict.balanced_equilibria(a, 1.0, n, 0.0, 2)
    assert zero.rho == 0.0 and zero.slope == pytest.approx(4 * a / n, rel=1e-12, abs=0)
    assert top.rho == pytest.approx(a, rel=1e-13, abs=0)
    assert top.slope == pytest.approx(-4 * a / n, rel=1e-12, abs=0)
    assert (zero.stability, top.stability) == ("unstable", "stable")


@pytest.mark.parametrize("a,b", [(1e300, 1e-300), (1e-300, 1e300)])
def test_an_alignment_ratio_outside_the_floats_is_refused(a, b):
    """``a/b`` bounds the positive roots (they lie in (0, a/b]); where it overflows or underflows
    in float64 they cannot be reported, and the call is refused word for word."""
    with pytest.raises(ValueError) as info:
        predict.balanced_equilibria(a, b, 1, 0.0, 3)
    assert str(info.value) == (
        f"balanced_equilibria: a/b = {a!r}/{b!r} is not a positive finite float (the positive "
        f"roots lie in (0, a/b])"
    )


def _quiet(*args):
    """``balanced_equilibria`` with every warning an error: the normalized solve raises none,
    also where κ or λ/κ leave the floats."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return predict.balanced_equilibria(*args)


@pytest.mark.parametrize("a,b", EXTREMES)
def test_the_normalized_solve_is_quiet_at_any_magnitude(a, b):
    """No overflow or underflow warning from ``κ = a (a/b)^p`` (which leaves the floats for
    several of these a, b) or ``λ/κ``, for L = 1 … 4 and λ = 0 (the root ``ρ = a/b`` is found)
    or λ from 1e-300 to 1e300. For L ≥ 3, ρ = 0 is then an equilibrium with ``g'(0) = −Lλ``,
    and every positive root lies in (0, a/b] with a slope (±inf where it overflows), also
    where ``λ/κ`` overflows (h < 0 on all of (0, a/b]: no positive root, and ρ = 0 stable)."""
    for L in (1, 2, 3, 4):
        assert _quiet(a, b, 1, 0.0, L)[-1].rho == pytest.approx(a / b, rel=1e-13, abs=0)
        for lam in (1e-300, 1.0, 1e300):
            equilibria = _quiet(a, b, 1, lam, L)
            if L >= 3:
                assert equilibria[0].rho == 0.0 and equilibria[0].slope == -L * lam
            for e in equilibria[1:]:
                assert 0 < e.rho <= a / b and not math.isnan(e.slope), (L, lam, e)
    # λ/κ = 1e300/1e-200 overflows at a = 1e-200, b = 1: only ρ = 0, stable (g'(0) < 0)
    if (a, b) == (1e-200, 1.0):
        for L in (2, 3):
            (zero,) = _quiet(a, b, 1, 1e300, L)
            assert zero.rho == 0.0 and zero.stability == "stable"
            assert zero.slope == (2 * (2 * a - 1e300) if L == 2 else -L * 1e300)


@pytest.mark.parametrize("a,b,n", [(8.0, 2.0, 10), (1e-250, 1.0, 2), (1e250, 1e-40, 1)])
def test_at_the_merge_of_the_second_root_with_zero(a, b, n):
    """L = 2 with ``λ = 2a/n`` exactly (here ``λ/κ = λ/a = 2/n`` exactly): the root
    ``ρ₂ = (a − nλ/2)/b`` merges with ρ = 0, ``g'(0) = 2(2a/n − λ) = 0``, and
    ``g = 2ρ((2/n)(a − ρb) − λ) = −(4b/n) ρ² < 0`` on all of ρ > 0: ρ = 0, the only
    equilibrium, attracts from the only side there is (stable)."""
    (zero,) = _quiet(a, b, n, 2 * a / n, 2)
    assert zero.rho == 0.0 and zero.slope == 0.0 and zero.stability == "stable"


def test_a_tangency_with_one_sample_is_semi_stable():
    """As ``test_a_tangency_is_a_double_root_to_1e13_of_the_size_of_h`` with n = 1 (L = 3,
    ``a/b = 1e4``): λ = the peak of h plus 0.9e-13 of h's size ``S = λ + (2/n)(a/b)^{1/3} a`` is
    a double root at ``ρ* = a/(4b)``, where g < 0 on both sides: semi-stable, whatever the
    rounding of ``g'(ρ*) = 3 ρ* h'(ρ*) + 3 h(ρ*) ≈ −3 · 0.9e-13 S`` (not the sign of that slope,
    which is 2e-12 of h's size in the normalized parameters, beside a zero cut of 1.5e-11)."""
    a, b, n, L = 1e4, 1.0, 1, 3
    peak_rho = a / (4 * b)
    peak = 2 / n * peak_rho ** (1 / 3) * (a - peak_rho * b)
    size = peak + 2 / n * (a / b) ** (1 / 3) * a
    lam = peak + 0.9e-13 * size
    g = _g(a, b, n, lam, L)
    assert g(peak_rho * (1 - 1e-3)) < 0 and g(peak_rho * (1 + 1e-3)) < 0
    zero, double = predict.balanced_equilibria(a, b, n, lam, L)
    assert zero.rho == 0.0 and zero.stability == "stable"
    assert double.rho == pytest.approx(peak_rho, rel=1e-12, abs=0)
    assert double.stability == "semi-stable"


@pytest.mark.parametrize("L", [3, 4])
def test_within_ulps_of_the_peak_a_double_root_or_two_simple_ones(L):
    """λ within 30 ulps of the peak of ``h = (2/n) ρ^p (a − ρb) − λ`` (p = 1 − 2/L, peak at
    ``ρ* = p a/((1 + p) b)``): rounding decides whether the two positive roots are resolved, but
    the answer is one of the two consistent ones, ρ = 0 stable (g'(0) = −Lλ) and either one
    semi-stable double root at ρ*, or two simple roots around ρ* within 1e-6 of it, unstable
    below (h increasing) and stable above — never a "semi-stable" simple root or three positive
    roots (a tangency split by rounding into two roots whose slopes are rounding noise)."""
    words = {}
    for a, b, n in ((1.0, 1.0, 1), (8.0, 10.0, 10), (3.0, 7.0, 1)):
        p = 1 - 2 / L
        peak_rho = p / (1 + p) * a / b
        peak = 2 / n * peak_rho**p * (a - peak_rho * b)
        for k in range(-30, 31):
            zero, *positive = predict.balanced_equilibria(a, b, n, peak * (1 + k * 2.0**-52), L)
            assert zero.rho == 0.0 and zero.stability == "stable"
            key = tuple(e.stability for e in positive)
            words[key] = words.get(key, 0) + 1
            assert key in (("semi-stable",), ("unstable", "stable")), (a, b, n, k, positive)
            for e in positive:
                assert e.rho == pytest.approx(peak_rho, rel=1e-6, abs=0)
            if len(positive) == 2:
                assert positive[0].rho < peak_rho < positive[1].rho
    assert len(words) == 2  # both answers occur


def test_a_root_exactly_on_the_scan_grid_is_reported_once():
    """The scan's grid in ``u = ρ b/a`` is documented: 20 points a decade from 1e-300 to just past
    1 (times ``1 + 1e-6``). L = 2, a = b = 1, n = 2: h = (1 − ρ) − λ, so with ``λ = 1 − u_k`` for
    a grid point ``u_k`` in [1/2, 1] (Sterbenz: ``1 − u_k`` and ``1 − λ = u_k`` are exact) h is
    exactly 0 at ``ρ₂ = (a − nλ/2)/b = u_k``, a root found on the grid itself, stable
    (``g'(ρ₂) = −(4/n)(a − nλ/2) = −2 u_k``); ρ = 0 unstable (``g'(0) = 2(2a/n − λ) = 2 u_k``)."""
    u_k = float(np.logspace(-300, 0, 300 * 20 + 1)[-4] * (1 + 1e-6))
    assert 0.5 <= u_k <= 1
    zero, two = predict.balanced_equilibria(1.0, 1.0, 2, 1 - u_k, 2)
    assert zero.rho == 0.0 and zero.stability == "unstable"
    assert zero.slope == pytest.approx(2 * u_k, rel=1e-15, abs=0)
    assert two.rho == u_k and two.stability == "stable"
    assert two.slope == pytest.approx(-2 * u_k, rel=1e-15, abs=0)
