"""gf.equilibrium's options on a system large enough for the inexact Newton solves to matter.

The problem is the whitened two-layer linear network of ``test_equilibrium.py`` at 100
parameters (``f = W2 W1 x``, ``(1/N) Σ x_n x_nᵀ = I``, ``y_n = M x_n``), where the loss is
``||W2 W1 − M||_F² + const + (λ/2)(||W1||² + ||W2||²)`` and its gradient, written here in NumPy,

    ∇_{W1} L = 2 W2ᵀ (W2 W1 − M) + λ W1,        ∇_{W2} L = 2 (W2 W1 − M) W1ᵀ + λ W2,

gives the residual ``||velocity||`` independently of gradflow. At the balanced critical point on
the top ``d`` singular modes of ``M = U diag(s) Vᵀ``, ``W2 W1 = U_d diag(s_d − λ/2) V_dᵀ``.

On a 14-parameter system a Krylov solve asked for 10⁻³ returns far more, so a Newton method
with a *fixed* inner tolerance still looks quadratic there; at 100 parameters it does not
(measured: relative residuals 6.3e-3 → 9.9e-5 → 5.3e-6 → 3.6e-7 → 3.4e-8 with a fixed 10⁻³,
ratio ~0.1 per step), and the adaptive forcing ``η_k = min(10⁻³, 10⁻² r_k)`` is what makes it
quadratic (6.3e-3 → 9.1e-5 → 3.5e-7 → 2.6e-12).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
import gradflow.testing as gft
from gradflow.models import DeepLinear

N_IN, D, N_OUT, N = 10, 5, 10, 20
LAM = 0.5
SING = np.geomspace(10.0, 1.0, N_IN)
RNG = np.random.default_rng(0)
X = np.sqrt(N) * np.linalg.qr(RNG.normal(size=(N, N_IN)))[0]
U, V, Q = (np.linalg.qr(RNG.normal(size=(k, k)))[0] for k in (N_OUT, N_IN, D))
M = U @ np.diag(SING) @ V.T
MU = SING[:D] - LAM / 2
W1 = Q @ np.diag(np.sqrt(MU)) @ V[:, :D].T
W2 = U[:, :D] @ np.diag(np.sqrt(MU)) @ Q.T

ARCH = gft.architecture(
    "linear-100", lambda k, s: DeepLinear(N_IN, (D,), N_OUT, key=k), (N_IN,), N_OUT
)
PROBLEM = gf.Problem(
    gft.build_network(ARCH, 0), gf.data.Dataset("whitened", X, X @ M.T), weight_decay=LAM
)


def _start(size, seed=1):
    rng = np.random.default_rng(seed)
    return {"w": tuple(jnp.asarray(w + size * rng.normal(size=w.shape)) for w in (W1, W2))}


def _grad_norm(state):
    """``||∇L||`` from the closed-form gradient of the module docstring (NumPy)."""
    w1, w2 = (np.asarray(w) for w in state["w"])
    e = w2 @ w1 - M
    g1, g2 = 2 * w2.T @ e + LAM * w1, 2 * e @ w1.T + LAM * w2
    return float(np.sqrt(np.sum(g1**2) + np.sum(g2**2)))


def _fitted_order(r, floor=1e-12, last=3):
    """The exponent of r_{k+1} = C r_k^p over the last pairs with r_{k+1} above ``floor``: this
    system's rounding floor is ~1e-13 (measured: a last step 2.6e-12 → 1.1e-13, which would
    pull the fit to 0.77), so the floor is one decade above it."""
    pairs = [(r[k], r[k + 1]) for k in range(len(r) - 1) if r[k + 1] > floor][-last:]
    assert len(pairs) >= 2, r
    x, y = np.log(np.asarray(pairs)).T
    return np.polyfit(x, y, 1)[0]


def _assert_top_modes(state):
    w1, w2 = (np.asarray(w) for w in state["w"])
    target = U[:, :D] @ np.diag(MU) @ V[:, :D].T
    np.testing.assert_allclose(w2 @ w1, target, atol=1e-11 * np.abs(target).max())


def test_the_adaptive_forcing_makes_newton_quadratic_where_a_fixed_one_is_linear():
    """Default forcing: fitted order ≥ 1.6 above 1e-12; a fixed 10⁻³ (the default's cap):
    ≤ 1.2 on the same start, so a Newton method that ignores ``r_k`` fails the first half."""
    start = _start(0.01)
    fp = gf.equilibrium(PROBLEM, start, spectrum=False)
    r = fp.relative_residuals
    assert fp.converged and np.all(fp.steps == 1), fp.describe()
    order = _fitted_order(r)
    print(f"\nadaptive forcing: {r}, order {order:.2f}")
    assert order >= 1.6, r
    assert fp.residual == pytest.approx(_grad_norm(fp.state), rel=1e-6, abs=1e-14)
    _assert_top_modes(fp.state)
    fixed = gf.equilibrium(PROBLEM, start, spectrum=False, forcing=1e-3)
    order_fixed = _fitted_order(fixed.relative_residuals)
    print(f"fixed 1e-3: {fixed.relative_residuals}, order {order_fixed:.2f}")
    assert order_fixed <= 1.2, fixed.relative_residuals
    assert fixed.iterations >= fp.iterations + 3


def test_gmres_solves_each_newton_system_to_the_forcing_and_converges():
    """GMRES's inner residual ``||S J S δ + F|| / ||F||`` is at most the forcing ``η_k`` of
    each solve; Newton reaches the same product ``W2 W1`` as LSMR."""
    fp = gf.equilibrium(PROBLEM, _start(0.01), spectrum=False, linear_solver="gmres")
    r = fp.relative_residuals
    assert fp.converged and fp.relative_residual <= 1e-12, fp.describe()
    eta = np.minimum(1e-3, 1e-2 * r[:-1])
    # The last solve's right-hand side F is at rounding level (r = 2.6e-12): the Jacobian is
    # singular along the O(d) zero modes and no Krylov solver reaches η = 2.6e-14 there
    # (measured: 3.4e-7). The solves from r ≥ 1e-9 are checked (LSMR gives 7.5e-4, 7.0e-5,
    # 1.6e-7 against η = 6.3e-5, 9.1e-7, 3.5e-9 on them: it is not what ran here).
    solved = r[:-1] >= 1e-9
    assert solved.sum() >= 3, r
    assert np.all(fp.linear_residuals[solved] <= eta[solved]), (fp.linear_residuals, eta)
    assert _fitted_order(r) >= 1.6, r
    _assert_top_modes(fp.state)
    assert _grad_norm(fp.state) <= 1e-9  # measured 1.4e-10 (relative 5.7e-13)


def test_atol_stops_at_the_first_residual_below_it():
    """``atol`` alone (``tol`` out of reach): the solve stops at the first iterate whose
    ``||velocity||`` (the NumPy gradient's norm) is ≤ atol, not one iteration later."""
    atol = 1e-6
    fp = gf.equilibrium(PROBLEM, _start(0.01), spectrum=False, tol=1e-300, atol=atol)
    res = fp.residuals
    assert fp.converged and fp.message == "tolerance reached", fp.describe()
    assert res[-1] <= atol < res[-2], res
    # the two are the same quantity summed in another order: at ||∇L|| ≈ 6e-10 of cancelling
    # terms of order 1 they agree to rounding, which was 4.4e-15 (7e-6 relative) with NumPy
    # 2.4.6 / SciPy 1.17.1 and within 1e-6 relative before; 1e-13 is ~500 ε
    assert _grad_norm(fp.state) == pytest.approx(res[-1], rel=1e-6, abs=1e-13)
    assert fp.relative_residual > 1e-12  # the relative tolerance was not what stopped it


def test_steepest_descent_fallback_rescues_a_failed_newton_step():
    """From 20% off the fixed point with one trial step per line search, a full Newton step
    does not reduce ``||F||``; the fallback (``−S Jᵀ F``, recorded as a negative step) does,
    and Newton then converges (measured: one fallback step, 8 iterations). Without the
    fallback the solve stops at that failure. (The start is seed 7's: seed 2's, used before,
    stopped needing the fallback with the packages of 2026-12-07 — its full step happens to
    descend there; which random start needs it depends on the arithmetic.)"""
    fp = gf.equilibrium(PROBLEM, _start(0.2, seed=7), spectrum=False, max_backtracks=1)
    steps, res = fp.steps, fp.residuals
    assert np.any(steps < 0), steps
    assert np.all(np.diff(res) < 0), res  # every accepted step, Newton or fallback, descends
    assert fp.converged, fp.describe()
    assert _grad_norm(fp.state) <= 1e-9
