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
symbols read at call time.
"""

from __future__ import annotations

import numpy as np
import pytest

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
