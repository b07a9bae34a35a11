"""RKC2 and the stiffness record (THEORY 3.5): the method's polynomial, its order, its
stability on stiff flows, the running spectral estimate, and the places it must work in."""

import json
import os
import subprocess
import sys
import types

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.experimental import io_callback
from numpy.polynomial import chebyshev as cheb

import gradflow as gf
from gradflow.diffrax_ext import RKC2, FloorController, ProjectedSolver, stability_boundary
from gradflow.diffrax_ext._rkc import chebyshev_weights
from gradflow.diffrax_ext._spectral import power_iteration
from gradflow.models import MLP, DeepLinear


def _regression(eigenvalues, n=48, seed=0, outputs=1):
    """Linear regression whose ``M = (2/N) XᵀX`` has the given eigenvalues, the problem of
    ``DeepLinear(d, (), outputs)`` on it, and the closed form of its flow (THEORY 3.1 with one
    linear layer: ``W(t) = W* + (W0 − W*) e^{−Mt}``)."""
    rng = np.random.default_rng(seed)
    d = len(eigenvalues)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    u, _ = np.linalg.qr(rng.normal(size=(n, d)))
    x = u @ np.diag(np.sqrt(np.asarray(eigenvalues) * n / 2)) @ q.T
    y = np.sign(x @ rng.normal(size=(d, outputs)) + 0.3 * rng.normal(size=(n, outputs)))
    problem = gf.Problem(
        DeepLinear(d, (), outputs, key=jax.random.PRNGKey(seed)),
        gf.data.Dataset(name="designed", x_train=x, y_train=y),
    )
    m = 2 / n * x.T @ x
    w_star = np.linalg.solve(m, (2 / n * y.T @ x).T).T

    def exact(w0, t):
        return w_star + (w0 - w_star) @ scipy.linalg.expm(-m * t)

    return problem, q, w_star, exact


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


# ---- the method ------------------------------------------------------------------------------


@eqx.filter_jit
def _rkc2_step(solver, term, h, y0, state):
    return solver.step(term, jnp.zeros_like(h), h, y0, None, state, False)


@pytest.mark.parametrize("h", [0.04, 0.1, 0.4, 1.5])
def test_one_step_is_the_damped_shifted_chebyshev_polynomial(h):
    """On y' = λy one step multiplies by P_s(z) = a_s + b_s T_s(w0 + w1 z), z = hλ (numpy's
    Chebyshev series, not the solver's recursion); |P_s| ≤ 1 on [−β(s), 0], where −β maps to
    the end −1 of [−1, 1] (beyond it T_s grows), and P_s(z) = 1 + z + z²/2 + O(z³)."""
    lam = -25.0
    term = diffrax.ODETerm(lambda t, y, args: lam * y)
    solver = RKC2()
    y0 = jnp.ones(1)
    state = solver.init(term, 0.0, h, y0, None)
    y1, _, _, state, _ = _rkc2_step(solver, term, jnp.asarray(h), y0, state)
    s = int(state.record.stages_max)
    assert float(state.record.rho) == pytest.approx(25.0, rel=1e-6, abs=0)
    w0, w1, beta = (float(x) for x in chebyshev_weights(s))
    assert beta >= 1.2 * h * 25.0 and s >= 2  # the fewest stages for safety · hρ
    t_s = [0] * s + [1]
    b_s = cheb.chebval(w0, cheb.chebder(t_s, 2)) / cheb.chebval(w0, cheb.chebder(t_s)) ** 2
    poly = lambda z: 1 - b_s * cheb.chebval(w0, t_s) + b_s * cheb.chebval(w0 + w1 * z, t_s)  # noqa: E731
    assert float(y1[0]) == pytest.approx(poly(h * lam), rel=1e-10, abs=1e-13)
    z = -np.linspace(0, beta, 2001)
    assert np.max(np.abs(poly(z))) <= 1 + 1e-12
    assert w0 - w1 * beta == pytest.approx(-1.0, abs=1e-12)
    assert abs(poly(-2 * beta)) > 1
    assert beta == pytest.approx(0.6534 * (s**2 - 1), rel=2e-3, abs=0)
    for z in (-1e-2, -1e-3):  # the z³ term is O(1): consistency of order exactly 2
        assert abs(poly(z) - (1 + z + z**2 / 2)) <= 0.2 * abs(z) ** 3


def test_stability_boundaries_of_explicit_tableaus():
    """β of R(z) = 1 + z bᵀ(I − zA)⁻¹1: Euler and Heun 2, Bosh3 2.5127 (any 3-stage
    order-3 method), classical RK4 2.7853; RKC2 β(2) = (1 + w0)/w0."""
    assert stability_boundary(diffrax.Euler()) == pytest.approx(2.0)
    assert stability_boundary(diffrax.Heun()) == pytest.approx(2.0, rel=1e-9, abs=0)
    assert stability_boundary(diffrax.Bosh3()) == pytest.approx(2.5127453, rel=1e-6, abs=0)
    assert 3.4 < stability_boundary(diffrax.Tsit5()) < 3.6
    rk4 = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1, 2, 2, 1]) / 6,
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    )
    assert stability_boundary(types.SimpleNamespace(tableau=rk4)) == pytest.approx(
        2.785293563, rel=1e-8
    )
    w0 = 1 + (2 / 13) / 4
    assert stability_boundary(RKC2()) == pytest.approx((1 + w0) / w0, rel=1e-12, abs=0)
    assert stability_boundary(diffrax.Kvaerno3()) is None


def test_power_iteration_finds_the_top_eigenvalue_and_ignores_a_jump():
    """On F(y) = −My the estimate converges to λ_max(M). With a unit jump of F across the
    surface y_0 = 0 and y on it, the one-sided difference reports jump/δ; the two-sided one
    keeps the side without the jump and is exact for the top eigenvector."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    m = jnp.asarray(q @ np.diag([0.3, 1, 2, 5, 9, 40.0]) @ q.T)
    top = q[:, -1] * np.sign(q[0, -1])  # the top eigenvector, with top[0] > 0
    y = jnp.asarray(rng.normal(size=6)).at[0].set(0.0)
    rho, _ = power_iteration(lambda y: -m @ y, y, -m @ y, jnp.ones(6) / 6**0.5, 60)
    assert float(rho) == pytest.approx(40.0, rel=1e-6, abs=0)

    def jumpy(y):
        return -m @ y - 3.0 * (y[0] > 0) * jnp.eye(6)[0]

    v = jnp.asarray(top)
    one, _ = power_iteration(jumpy, y, jumpy(y), v, 1, two_sided=False)
    two, _ = power_iteration(jumpy, y, jumpy(y), v, 1, two_sided=True)
    assert float(one) > 1e6
    assert float(two) == pytest.approx(40.0, rel=1e-5, abs=0)


# ---- convergence and stiffness ---------------------------------------------------------------


def test_fixed_step_rkc2_converges_with_order_two():
    """Fixed-step RKC2 on a one-layer linear flow (a matrix exponential) with eigenvalues
    {0.5, 1, 2, 400}: every step has s ≥ 4 stages (h λ_max ≥ 6), and the fitted log-log slope
    of the error at t = 2 is 2. The start has no component on the stiff eigenvector: RKC2's
    polynomial damps a stiff mode only to |P_s| ≤ 1 (0.95 per step at z = −5, s = 4), so a
    fixed step cannot remove a stiff transient, which adaptive control resolves instead."""
    problem, q, w_star, exact = _regression([0.5, 1.0, 2.0, 400.0], n=32, seed=3)
    w0 = w_star + 0.7 * np.sum(q[:, :3], axis=1)[None, :]  # slow eigenvectors only
    state0 = problem.to_state((jnp.asarray(w0),))
    t1, hs, errors = 2.0, [], []
    for k in (16, 32, 64, 128):
        tr = gf.flow(
            problem,
            t1=t1,
            ts=[0.0, t1],
            solver="rkc2",
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=t1 / k,
            state0=state0,
        )
        assert tr.stats["stages_mean"] >= 4, tr.stats["stages_mean"]
        hs.append(t1 / k)
        errors.append(_rel(tr.final_params[0], exact(w0, t1)))
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    print(f"RKC2 fixed-step errors {errors}, slope {slope:.3f}")
    assert 1.8 <= slope <= 2.3, (slope, errors)


def test_stiff_regression_rkc2_beats_heun_by_far_on_gradient_evaluations():
    """λ_max T = 2e4 (eigenvalues 0.1 … 1e3, T = 20), same tolerances: both adaptive runs reach
    the closed form to 1e-4, adaptive Heun at h ≈ 2/λ_max (stability-bound: it is 20x more
    accurate than asked, and no cheaper at a looser tolerance), RKC2 at steps with
    h λ_max ≫ 2; RKC2's running estimate of ρ is λ_max. Measured: 26,398 against 3,466
    evaluations (7.6x), errors 3.8e-6 and 4.4e-5, mean accepted h λ_max 53."""
    problem, _, _, exact = _regression(np.logspace(-1, 3, 8), seed=0)
    w0 = np.asarray(problem.model.weights[0])
    t1, kw = 20.0, dict(ts=[0.0, 20.0], rtol=1e-5, atol=1e-7, dtmin=None)
    heun = gf.flow(problem, t1=t1, solver="heun", **kw)
    rkc = gf.flow(problem, t1=t1, solver="rkc2", **kw)
    expected = exact(w0, t1)
    errors = [_rel(r.final_params[0], expected) for r in (heun, rkc)]
    evals = [r.stats["num_gradient_evaluations"] for r in (heun, rkc)]
    s = rkc.stats
    mean_h_lambda = t1 * 1e3 / s["num_accepted_steps"]  # the mean accepted step, times λ_max
    print(
        f"errors heun {errors[0]:.2e} rkc2 {errors[1]:.2e}; gradient evaluations heun {evals[0]} "
        f"rkc2 {evals[1]} (ratio {evals[0] / evals[1]:.1f}; {s['num_rejected_steps']} rejected "
        f"RKC2 steps charged {s['num_gradient_evaluations_rejected']}); RKC2 stages mean "
        f"{s['stages_mean']:.1f} max {s['stages_max']}, mean h·λ_max {mean_h_lambda:.0f}, max "
        f"{s['hrho_max']:.0f}, stability-bound {s['stability_bound_fraction']:.2f}"
    )
    assert max(errors) <= 1e-4, errors
    assert evals[0] == 2 * heun.stats["num_steps"]
    assert evals[0] >= 5 * evals[1], evals
    assert s["rho_max"] == pytest.approx(1e3, rel=1e-3, abs=0)
    assert mean_h_lambda >= 10 and s["hrho_max"] >= 100
    assert s["stages_max"] > 2 and s["num_capped_steps"] == 0


def test_counted_evaluations_are_the_evaluations_made():
    """The solver-state count equals the number of vector-field calls (counted on the host)
    when no step is rejected; Diffrax discards a rejected step's solver state, so with
    rejections the state counts the accepted steps only (``gf.flow`` charges the rejected
    ones; benchmarks/stiff.py compares that charge with a host count)."""
    problem, _, _, _ = _regression(np.logspace(-1, 2.5, 5), n=24, seed=2)
    calls = [0]

    def count(y):
        calls[0] += 1 if y.ndim == 2 else y.shape[0]  # a vmapped call counts its batch
        return np.zeros((), y.dtype)

    def velocity(t, y, args):
        w = y["w"][0]
        tick = io_callback(count, jax.ShapeDtypeStruct((), w.dtype), w, ordered=False)
        return jax.tree.map(lambda a: a + 0 * tick, args.velocity(y))

    @eqx.filter_jit
    def run(tolerance, dt0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(velocity),
            RKC2(),
            0.0,
            4.0,
            dt0,
            problem.initial_state(),
            args=problem,
            saveat=diffrax.SaveAt(t1=True, solver_state=True),
            stepsize_controller=diffrax.PIDController(rtol=tolerance, atol=tolerance),
        )
        return sol.solver_state.record.num_evaluations, sol.stats["num_rejected_steps"]

    found = []
    for tolerance in (1e3, 1e-5):  # no error estimate fails 1e3; 1e-5 rejects some steps
        calls[0] = 0
        counted, rejected = (int(x) for x in run(jnp.asarray(tolerance), jnp.asarray(0.05)))
        jax.effects_barrier()
        found.append((counted, calls[0], rejected))
    (exact, made, none), (accepted, made_b, rejected) = found
    assert none == 0 and exact == made, found
    assert rejected > 0 and accepted < made_b, found


# ---- the places it must work in ---------------------------------------------------------------


def test_lm_last_relu_mlp_keeps_unit_norms_and_descends():
    """LM-last on a ReLU MLP with the default floored controller: the retraction keeps
    ||V_k|| = 1 to rounding, the total loss never rises between saves, and the run agrees
    with a ten times tighter one."""
    data = gf.data.load("gaussian-mixture", n_train=32, n_test=0, dim=5, classes=2, seed=3)
    net = MLP(5, (6, 6), 1, init_scale=0.5, key=jax.random.PRNGKey(3))
    problem = gf.Problem(net, data, weight_decay=0.1, normalization="lm-last")
    loose = gf.flow(problem, t1=2.0, save_every=0.25, solver="rkc2")
    tight = gf.flow(problem, t1=2.0, save_every=0.25, solver="rkc2", rtol=1e-5, atol=1e-7)
    loss = loose["loss"]
    assert np.max(loose["unit_norm_error"]) <= 1e-13
    assert np.all(np.diff(loss) <= 1e-9 * loss[:-1]) and loss[-1] < 0.6 * loss[0]
    np.testing.assert_allclose(loss, tight["loss"], rtol=2e-3)
    assert loose.stats["num_gradient_evaluations"] > loose.stats["num_steps"] * 2


def test_vmap_over_initial_states_compiles_once():
    """One jit of a vmapped diffeqsolve with RKC2 inside the projection wrapper and the floored
    controller: two ensembles of initial states reuse one compilation, and every member
    matches its own closed form (the members take different steps and stages)."""
    from compile_counter import CompileCounter

    problem, _, _, exact = _regression(np.logspace(-1, 3, 6), n=32, seed=4)
    solver = ProjectedSolver(RKC2(), problem.parametrization)
    controller = FloorController(diffrax.PIDController(rtol=1e-7, atol=1e-9), 1e-6)

    @eqx.filter_jit
    def _ensemble_rkc2(w0s):
        def one(w0):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(lambda t, y, args: args.velocity(y)),
                solver,
                0.0,
                3.0,
                None,
                problem.to_state((w0,)),
                args=problem,
                saveat=diffrax.SaveAt(t1=True, solver_state=True),
                stepsize_controller=controller,
            )
            return sol.ys["w"][0][-1], sol.solver_state.record.num_steps

        return jax.vmap(one)(w0s)

    shape = problem.model.weights[0].shape
    batches = [jax.random.normal(jax.random.PRNGKey(k), (3, *shape)) * (1 + 4 * k) for k in (1, 2)]
    _ensemble_rkc2(batches[0] * 0.5)
    with CompileCounter("_ensemble_rkc2") as count:
        outs = [_ensemble_rkc2(b) for b in batches]
    assert count.compiles == 0, vars(count)
    for batch, (final, _) in zip(batches, outs):
        for w0, w in zip(np.asarray(batch), np.asarray(final)):
            assert _rel(w, exact(w0, 3.0)) <= 1e-5
    assert len({int(n) for _, steps in outs for n in steps}) > 1


FLOAT32 = """
import json, jax, numpy as np, scipy.linalg
import gradflow as gf
from gradflow.models import DeepLinear
rng = np.random.default_rng(0)
lam = np.logspace(-1, 3, 6)
q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
u, _ = np.linalg.qr(rng.normal(size=(32, 6)))
x = u @ np.diag(np.sqrt(lam * 16)) @ q.T
y = np.sign(x @ rng.normal(size=(6, 1)))
p = gf.Problem(DeepLinear(6, (), 1, key=jax.random.PRNGKey(0)),
               gf.data.Dataset(name="designed", x_train=x, y_train=y))
tr = gf.flow(p, t1=5.0, ts=[0.0, 5.0], solver="rkc2", rtol=1e-4, atol=1e-6, dtmin=1e-5)
m, w0 = 2 / 32 * x.T @ x, np.asarray(p.model.weights[0], np.float64)
ws = np.linalg.solve(m, (2 / 32 * y.T @ x).T).T
ex = ws + (w0 - ws) @ scipy.linalg.expm(-5.0 * m)
w = tr.final_params[0]
print(json.dumps({"dtype": str(w.dtype), "state": str(tr.final_state["w"][0].dtype),
                  "err": float(np.linalg.norm(w - ex) / np.linalg.norm(ex)),
                  "stages_max": tr.stats["stages_max"], "rho_max": tr.stats["rho_max"],
                  "status": tr.stats["status"]}))
"""


def test_float32_run_reaches_its_tolerance():
    """float32 (x64 off, in a subprocess): the state stays float32, the stages follow
    ρ ≈ λ_max = 1e3, and the final weights match the float64 closed form to the tolerance."""
    env = dict(os.environ, JAX_ENABLE_X64="0", JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", FLOAT32], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    print(got)
    assert got["state"] == "float32" and got["status"] == "success"
    assert got["rho_max"] == pytest.approx(1e3, rel=1e-2, abs=0)
    assert got["stages_max"] >= 5 and got["err"] <= 1e-3
