"""Balanced equilibria of the all-layer-decay flows (THEORY 4.2), derived with sympy.

The directions ``V`` are frozen, so ``a = Σ_n ⟨y_n, f_n⟩`` and ``b = Σ_n ||f_n||²`` are constants
and ``s = (2/N)(a − ρ b)``. Each layer scale obeys (THEORY 3.1 and 3.2 LM-all alike)

    dρ_k/dt = (ρ/ρ_k) s − λ ρ_k ,

and ``ρ = Π_k ρ_k`` obeys ``dρ/dt = Σ_k (ρ/ρ_k) dρ_k/dt``. Under balance, ``ρ_k = ρ^{1/L}`` (kept
by the flow, and attracting for λ > 0 by 4.5), this is the reduced scalar ODE

    dρ/dt = g(ρ) = L [ (2/N) ρ^{2−2/L} (a − ρ b) − λ ρ ] ,

whose positive roots solve ``λ ρ^{2/L} = ρ s`` (THEORY 4.2). ``ρ = 0`` is a root for ``L ≥ 2``,
attracting for ``L ≥ 3`` and λ > 0 (``g'(0) = −Lλ``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize

if TYPE_CHECKING:
    import sympy as sp


def _sympy():
    """sympy, imported on first use: it is a fifth of ``import gradflow``'s time (measured with
    ``python -X importtime``), which every run, worker and test subprocess would pay, and only
    the two symbolic predictions of this module need it."""
    import sympy

    return sympy


@functools.cache
def _symbols() -> dict:
    sp = _sympy()
    return {
        "RHO": sp.Symbol("rho", positive=True),
        "A": sp.Symbol("a", real=True),
        "N_SAMPLES": sp.Symbol("n", positive=True),
        "B": sp.Symbol("b", nonnegative=True),
        "LAM": sp.Symbol("lambda", nonnegative=True),
    }


def __getattr__(name: str):
    """The module's symbols ``RHO``, ``A``, ``B``, ``N_SAMPLES``, ``LAM`` (built on first use)."""
    if name in ("RHO", "A", "N_SAMPLES", "B", "LAM"):
        return _symbols()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _scale_law(rho, rho_k, s, lam):
    """THEORY 3.1 / 3.2 (LM-all) / 3.3 (WN scales): ``dρ_k/dt = (ρ/ρ_k) s − λ ρ_k``."""
    return rho / rho_k * s - lam * rho_k


# The flows whose per-layer scale law is ``_scale_law``: the plain flow 3.1 (d||W_k||/dt =
# ⟨V_k, −∇_{W_k}L⟩ with Euler's identity), LM-all 3.2 (identical: only dV_k/dt differs) and WN 3.3
# (coincides with LM-all). LM-last has a single scale: its ρ law is 4.1 (``rho_relaxation``).
_FLOWS = {"plain": _scale_law, "lm-all": _scale_law, "wn": _scale_law}


@dataclasses.dataclass(frozen=True)
class Equilibrium:
    """One equilibrium ``ρ`` of the reduced ODE ``dρ/dt = g(ρ)``.

    ``slope = g'(ρ)`` (units 1/time); ``stability`` is ``"stable"`` (``g' < 0``), ``"unstable"``
    (``g' > 0``) or, where ``g' = 0``, read from the sign of ``g`` on each side (``"semi-stable"``
    when it attracts from one side only).
    """

    rho: float
    slope: float
    stability: str

    @property
    def stable(self) -> bool:
        return self.stability == "stable"


def _check(num_layers: int, flow: str) -> None:
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise ValueError(
            f"balanced equilibria: L={num_layers!r} is not allowed; use an integer >= 1"
        )
    if flow not in _FLOWS:
        hint = " (LM-last has one scale: use predict.rho_relaxation)" if flow == "lm-last" else ""
        raise ValueError(
            f"balanced equilibria: flow={flow!r} is not allowed; use one of {sorted(_FLOWS)}{hint}"
        )


@functools.lru_cache(maxsize=64)
def balanced_rhs_symbolic(num_layers: int, flow: str = "plain") -> sp.Expr:
    """The reduced right-hand side ``g(ρ)`` of ``dρ/dt`` under balance, derived by sympy.

    Builds ``dρ_k/dt`` for ``L`` symbolic layer scales, applies the chain rule
    ``dρ/dt = Σ_k (ρ/ρ_k) dρ_k/dt`` and substitutes ``ρ_k = ρ^{1/L}``. Symbols: ``RHO`` (ρ), ``A``,
    ``B``, ``N_SAMPLES`` (N) and ``LAM`` (λ) of this module. ``flow`` is ``"plain"`` (3.1),
    ``"lm-all"`` (3.2) or ``"wn"`` (3.3); all three have the same scale law, hence the same result.
    """
    _check(num_layers, flow)
    sp, sym = _sympy(), _symbols()
    RHO, A, B, N_SAMPLES, LAM = (sym[k] for k in ("RHO", "A", "B", "N_SAMPLES", "LAM"))
    scales = sp.symbols(f"rho_1:{num_layers + 1}", positive=True)
    rho = sp.Mul(*scales)
    s = 2 / N_SAMPLES * (A - rho * B)
    rates = [_FLOWS[flow](rho, rk, s, LAM) for rk in scales]
    drho = sp.Add(*[sp.diff(rho, rk) * rate for rk, rate in zip(scales, rates, strict=True)])
    balanced = drho.subs({rk: RHO ** sp.Rational(1, num_layers) for rk in scales})
    return sp.simplify(sp.powsimp(sp.expand(balanced)))


@functools.lru_cache(maxsize=64)
def _compiled(num_layers: int, flow: str):
    """Lambdified ``g``, ``g'`` and ``h = g/(Lρ)`` (whose positive roots are those of g), and the
    critical points of ``h`` in ρ (solved symbolically, for the scan grid)."""
    g = balanced_rhs_symbolic(num_layers, flow)
    sp, sym = _sympy(), _symbols()
    RHO, A, B, N_SAMPLES, LAM = (sym[k] for k in ("RHO", "A", "B", "N_SAMPLES", "LAM"))
    h = sp.simplify(g / (num_layers * RHO))
    args = (RHO, A, B, N_SAMPLES, LAM)
    critical = sp.solve(sp.diff(h, RHO), RHO)
    return (
        sp.lambdify(args, g, "numpy"),
        sp.lambdify(args, sp.diff(g, RHO), "numpy"),
        sp.lambdify(args, h, "numpy"),
        [sp.lambdify(args[1:], c, "numpy") for c in critical],
    )


def _classify(g, rho: float, slope: float, scale: float, upper: float, gap: float) -> str:
    if abs(slope) > 1e-12 * scale:
        return "stable" if slope < 0 else "unstable"
    # ρ = 0 with a ≤ 0 (upper = 0) has no scale of its own: probe at 1e-6 (g < 0 on all of
    # ρ > 0 there, so any positive probe reads it; a zero step would read g(0) = 0 twice);
    # never past half the distance ``gap`` to the next root (the sides are this root's)
    delta = min(1e-6 * (max(rho, upper) or 1.0), gap / 2)
    right = g(rho + delta)
    left = g(rho - delta) if rho > 0 else -right  # ρ ≥ 0: only the right side exists at 0
    if left > 0 > right:
        return "stable"
    if left < 0 < right:
        return "unstable"
    return "semi-stable"


def balanced_equilibria(
    a: float,
    b: float,
    n: int,
    weight_decay: float,
    num_layers: int,
    flow: str = "plain",
    grid_points_per_decade: int = 20,
) -> list[Equilibrium]:
    """Every equilibrium ``ρ ≥ 0`` of the reduced ODE of THEORY 4.2, with its stability [exact
    for frozen directions and balanced scales; numerical roots to ~machine precision].

    Args:
        a: ``Σ_n ⟨y_n, f_n⟩`` of the normalized outputs. b: ``Σ_n ||f_n||²`` (> 0). n: N.
        weight_decay: λ ≥ 0. num_layers: L. flow: ``"plain"``, ``"lm-all"`` or ``"wn"`` (same ODE).

    Positive roots satisfy ``s ≥ 0``, i.e. ``ρ ≤ a/b``, and lie in (0, a/b] (none if a ≤ 0). h is
    linear in (a, b, λ), so with ``ρ = u a/b``, ``p = 1 − 2/L`` and ``κ = a (a/b)^p``,
    ``h(ρ; a, b, n, λ) = κ h(u; 1, 1, n, λ/κ)`` and ``g'(ρ) = κ g'(u; 1, 1, n, λ/κ)``: the roots
    are found and classified in ``u ∈ (0, 1]`` with these normalized parameters, whatever the
    magnitudes of a and b (``a/b`` must be a positive finite float). They are bracketed by
    scanning h on a log grid from ``u = 1e-300`` to just past 1 (``grid_points_per_decade``
    points a decade; roots below ``1e-300 a/b`` are missed: for L = 1 with ``λ/b`` above ~1e300)
    plus the critical points of h (so two roots never share a cell), and polished by ``brentq``;
    a double root at a critical point is reported as such. ``ρ = 0`` is included when
    ``g(0) = 0``. Sorted by ρ; Python floats (not jit-able).
    """
    _check(num_layers, flow)
    if not b > 0 or not n > 0 or not weight_decay >= 0:
        raise ValueError(
            f"balanced_equilibria: need b = Σ||f_n||² > 0, n > 0 and weight_decay >= 0; "
            f"got b={b!r}, n={n!r}, weight_decay={weight_decay!r}"
        )
    g_fn, dg_fn, h_fn, critical = _compiled(num_layers, flow)
    if not a > 0:  # no positive root (ρ ≤ a/b ≤ 0): ρ = 0 alone, in the original parameters
        original = (float(a), float(b), float(n), float(weight_decay))
        if g_fn(0.0, *original) != 0:
            return []
        scale = num_layers * (2 / n * (abs(a) + b) + weight_decay)
        slope = float(dg_fn(0.0, *original))
        word = _classify(lambda r: float(g_fn(r, *original)), 0.0, slope, scale, 0.0, math.inf)
        return [Equilibrium(0.0, slope, word)]
    upper = a / b
    if not 0 < upper < math.inf:
        raise ValueError(
            f"balanced_equilibria: a/b = {a!r}/{b!r} is not a positive finite float (the "
            f"positive roots lie in (0, a/b])"
        )
    # κ = a (a/b)^p = m 2^e with m of order 1, from the binary exponents (exact integer
    # arithmetic, as a logarithm would not be): κ and λ/κ to a few ulps, and only a final
    # ldexp under- or overflows (κ below 1e-308 where λ/κ is not; λ/κ = inf: no root in (0, 1])
    mant_a, exp_a = math.frexp(a)
    mant_u, exp_u = math.frexp(upper)
    shift, rest = divmod((num_layers - 2) * exp_u, num_layers)
    mant = mant_a * mant_u ** (1 - 2 / num_layers) * 2 ** (rest / num_layers)
    mant_l, exp_l = math.frexp(weight_decay)
    with np.errstate(all="ignore"):
        kappa = float(np.ldexp(mant, exp_a + shift))
        lam = float(np.ldexp(mant_l / mant, exp_l - exp_a - shift))
    original = (float(a), float(b), float(n), float(weight_decay))
    if lam == math.inf:  # h < 0 on all of (0, 1]: ρ = 0 alone, g'(0) < 0 (L = 2: λ ≫ a)
        if g_fn(0.0, *original) != 0:
            return []  # L = 1: its root, below 1e-300 a/b, is missed
        return [Equilibrium(0.0, float(dg_fn(0.0, *original)), "stable")]
    params = (1.0, 1.0, float(n), lam)

    def g(u):
        return float(g_fn(u, *params))

    roots: list[float] = []
    # just past u = 1, h < -λ <= 0: a root at 1 itself (λ = 0) still changes sign
    grid = np.logspace(-300, 0, 300 * grid_points_per_decade + 1) * (1 + 1e-6)
    extra = [float(np.real(c(*params))) for c in critical]
    extra = [x for x in extra if np.isfinite(x) and 0 < x < 1]
    grid = np.unique(np.concatenate([grid, extra]))
    with np.errstate(all="ignore"):
        signs = np.sign(np.asarray(h_fn(grid, *params), dtype=float))
    for lo, hi, s_lo, s_hi in zip(grid[:-1], grid[1:], signs[:-1], signs[1:], strict=True):
        if s_lo == 0:
            roots.append(float(lo))
        elif s_lo * s_hi < 0:
            roots.append(
                scipy.optimize.brentq(
                    h_fn, lo, hi, args=params, xtol=1e-300, rtol=4 * np.finfo(float).eps
                )
            )
    # h's natural size: each of its two terms at u = 1; g's: L (2/n (a + b max(a/b, 1)) + λ)
    scale_h = lam + 2 / n
    scale = num_layers * (4 / n + lam)
    for x in extra:  # a double (tangent) root sits at a critical point of h
        # ... unless the scan resolved two simple roots in the grid cells beside x (x is a grid
        # point strictly inside the grid; λ just below h's peak). Roots there whose slopes are
        # zero to rounding are x itself, or a tangency split by rounding: two simple roots
        # with slopes 1e-12 of g's size lie ~1e-12 apart, where h is ~1e-24 of its size
        i = int(np.searchsorted(grid, x))
        near = [r for r in roots if grid[i - 1] <= r <= grid[i + 1]]
        if abs(float(h_fn(x, *params))) <= 1e-13 * scale_h and all(
            abs(float(dg_fn(r, *params))) <= 1e-12 * scale for r in near
        ):
            roots = [r for r in roots if r not in near] + [x]
    if g_fn(0.0, *original) == 0:
        roots.append(0.0)
    result = []
    found = sorted(set(roots))
    for i, u in enumerate(found):
        slope = float(dg_fn(u, *params))
        gap = min([abs(u - q) for q in found[:i] + found[i + 1 :]], default=math.inf)
        word = _classify(g, u, slope, scale, 1.0, gap)
        # g'(0) in the original parameters: κ may overflow where g'(0) = −Lλ (L ≥ 3) does not
        slope = float(dg_fn(0.0, *original)) if u == 0 else kappa * slope
        result.append(Equilibrium(u * upper, slope, word))
    return result
