"""The gradient-flow ODE (THEORY 3): invariants, closed forms, reporting, bad input."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import gradflow as gf
import gradflow.testing as gft
from gradflow.models import MLP, DeepLinear

NORMS = ("none", "lm-all", "lm-last", "wn")


def _data(n=32, dim=5, classes=2, seed=0, n_test=16):
    return gf.data.load(
        "gaussian-mixture", n_train=n, n_test=n_test, dim=dim, classes=classes, seed=seed
    )


def _mlp(dim=5, widths=(6, 6), out=1, seed=0, scale=1.0):
    return MLP(dim, widths, out, init_scale=scale, key=jax.random.PRNGKey(seed))


#: The architectures of the Hypothesis tests below (gradflow.testing draws seeds and scales).
MLP3 = gft.architecture("mlp-5-6-6-3", lambda k, s: MLP(5, (6, 6), 3, init_scale=s, key=k), (5,), 3)
BALANCE = {
    act: gft.architecture(
        f"mlp-5-12-3-1-{act}",
        lambda k, s, act=act: MLP(5, (12, 3), 1, activation=act, init_scale=s, key=k),
        (5,),
        1,
    )
    for act in ("relu", "linear")
}


@pytest.mark.parametrize(
    "normalization",
    # CI: the plain flow; the normalized ones in the long tier (CI descends an LM-last ReLU
    # flow in test_rkc.py::test_lm_last_relu_mlp_keeps_unit_norms_and_descends)
    [n if n == "none" else pytest.param(n, marks=pytest.mark.long) for n in NORMS],
)
@settings(max_examples=4)
@given(data=st.data())
def test_total_loss_never_increases(normalization, data):
    p = data.draw(
        gft.problems(
            MLP3,
            normalizations=normalization,
            weight_decay=[0.0, 1e-3, 0.1],
            init_scale=st.floats(0.25, 0.6),
            n_train=32,
            n_test=16,
        )
    )
    tr = gf.flow(p, t1=10.0, save_every=0.25)
    loss = tr["loss"]
    assert np.all(np.isfinite(loss))
    assert gft.loss_increase(tr) <= 1e-12, gft.loss_increase(tr)
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("normalization", ["lm-all", "lm-last"])
@settings(max_examples=3)
@given(data=st.data())
def test_lm_flows_keep_unit_norms(normalization, data):
    p = data.draw(
        gft.problems(
            "mlp-small",
            normalizations=normalization,
            weight_decay=[1e-2, 0.1],
            init_scale=0.5,
            n_train=32,
            n_test=16,
        )
    )
    tr = gf.flow(p, t1=10.0, save_every=1.0)  # the ReLU flow crawls at its kinks: t1 = 10 is
    assert tr.t[-1] == 10.0  # hundreds of projected steps, a fifth of t1 = 50's CPU time
    # the recorded observable and the final state (measured ~1e-15: the solver projects)
    assert gft.unit_norm_error(tr) <= 1e-13
    assert gft.tangency_error(p, tr.final_state) <= 1e-12


@pytest.mark.parametrize("activation", ["relu", pytest.param("linear", marks=pytest.mark.long)])
@settings(max_examples=3)
@given(data=st.data(), lam=st.sampled_from([0.0, 0.05, 0.3]))
def test_balancedness_law(activation, data, lam):
    """3.1 / 4.5: ρ_k² − ρ_{k+1}² = gap(0) e^{−2λt} (constant when λ = 0).

    For ReLU the floor must be small: a forced step across a switching surface perturbs
    the invariant by O(dtmin²) (dtmin = 1e-4 gave 2.6e-6 relative drift by t = 5).
    """
    p = data.draw(
        gft.problems(
            BALANCE[activation],
            normalizations="none",
            weight_decay=lam,
            init_scale=1.0,
            n_train=32,
            n_test=16,
        )
    )
    assert gft.balance_rate_error(p, p.initial_state()) <= 1e-9  # the law of the vector field
    tr = gf.flow(p, t1=2.0, save_every=0.25, rtol=1e-10, atol=1e-12, dtmin=2e-5)
    assert gft.balance_law_error(tr, lam) <= 1e-6  # elementwise relative, as assert_allclose


@pytest.mark.parametrize("activation", [pytest.param("linear", marks=pytest.mark.long), "relu"])
def test_wn_reproduces_lm_all_and_keeps_v_norm(activation):
    """3.3: WN from ||v_k|| = 1 is the LM-all flow; ||v_k|| is constant along the flow.

    Tight tolerances on the smooth (linear-activation) net; the ReLU net crosses switching
    surfaces, where both runs go through the step floor, so it is held to 10x its drift.
    """
    net = MLP(5, (7, 5), 1, activation=activation, init_scale=0.5, key=jax.random.PRNGKey(3))
    data = _data(seed=3)
    tight = activation == "linear"
    kw = dict(
        t1=2.0,
        save_every=0.5,
        rtol=1e-10 if tight else 1e-8,
        atol=1e-12 if tight else 1e-10,
        dtmin=None if tight else 1e-4,
    )
    wn = gf.flow(gf.Problem(net, data, weight_decay=0.05, normalization="wn"), **kw)
    lm = gf.flow(gf.Problem(net, data, weight_decay=0.05, normalization="lm-all"), **kw)
    # linear: ~100x the errors measured at t1 = 10 (||v|| 1.4e-14, weights 4.9e-12 relative to
    # the largest, loss 4.3e-13); both runs now end at t1 = 2. The ReLU run slides at the
    # floor from the start (forced steps of h = dtmin: 18,384 to t1 = 2); each adds
    # O(h² ||∇_v L||²) to ||v||², as a GD step does (THEORY 3.3): measured drift of ||v||
    # 9.8e-7 at t1 = 10 and 4.8e-8 at t1 = 2 (dtmin = 1e-4). At t1 = 2: ||v|| 4.8e-8, weights
    # 9.4e-7, loss 7.9e-8; the tolerances are 10x those.
    v_tol, w_tol, loss_tol = (1e-12, 5e-10, 5e-11) if tight else (5e-7, 1e-5, 1e-6)
    np.testing.assert_allclose(wn["v_norm"], 1.0, rtol=v_tol)
    for a, b in zip(wn.final_params, lm.final_params):
        np.testing.assert_allclose(a, b, rtol=w_tol, atol=w_tol * np.abs(b).max())
    np.testing.assert_allclose(wn["loss"], lm["loss"], rtol=loss_tol)


@given(data=st.data(), lam=st.sampled_from([0.0, 1e-3, 0.2]))
def test_frozen_directions_relax_rho_as_closed_form(data, lam):
    """4.1: with V frozen, ρ(t) = ρ_eq + (ρ0 − ρ_eq) e^{−κt}, κ = (2/N)Σ||f_n||² + λ.

    With V frozen the ρ-equation is smooth, so no step floor (a forced floor step would
    cap the accuracy at the floor's, not at rtol's). The problems come from gradflow.testing
    (data and network drawn per example, one compilation for all of them).
    """
    p = data.draw(
        gft.problems(
            "mlp-small",
            normalizations=gf.LMLast(freeze_directions=True),
            weight_decay=lam,
            init_scale=1.0,
            n_train=32,
            n_test=16,
        )
    )
    net = p.model
    # the closed form, from the definitions (not from the library)
    w = net.weights
    norms = [jnp.linalg.norm(x) for x in w]
    v = tuple(x / n for x, n in zip(w, norms))
    f = np.asarray(jax.vmap(net.apply, (None, 0))(v, p.x_train))
    y, n = np.asarray(p.y_train), p.n_train
    rho_eq = np.sum(y * f) / (np.sum(f**2) + n * lam / 2)
    kappa = 2 / n * np.sum(f**2) + lam
    rho0 = float(np.prod(norms))
    tr = gf.flow(p, t1=10.0, save_every=0.5, rtol=1e-10, atol=1e-12, dtmin=None)
    expected = rho_eq + (rho0 - rho_eq) * np.exp(-kappa * tr.t)
    # The state's ρ is signed and crosses 0 when ρ_eq < 0; the observable ρ = Π||W_k|| is |ρ|,
    # and the network then is |ρ|·(−V_L), whose ρ_eq is −ρ_eq.
    np.testing.assert_allclose(tr["rho"], np.abs(expected), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(tr["rho_eq"], np.sign(expected) * rho_eq, rtol=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_one_layer_linear_flow_is_a_matrix_exponential(lam):
    """dW/dt = −W M + (2/N) YᵀX with M = (2/N) XᵀX + λI: W(t) = W* + (W0 − W*) e^{−Mt}."""
    data = _data(n=24, dim=4, classes=3, seed=5)
    net = DeepLinear(4, (), 3, key=jax.random.PRNGKey(2))
    p = gf.Problem(net, data, weight_decay=lam)
    X, Y, n = data.x_train, data.y_train, data.n_train
    M = 2 / n * X.T @ X + lam * np.eye(4)
    w_star = np.linalg.solve(M.T, (2 / n * Y.T @ X).T).T
    w0 = np.asarray(net.weights[0])
    for t1 in (0.3, 2.0):
        tr = gf.flow(p, t1=t1, rtol=1e-11, atol=1e-13, dtmin=None, solver="tsit5")
        expected = w_star + (w0 - w_star) @ scipy.linalg.expm(-M * t1)
        np.testing.assert_allclose(tr.final_params[0], expected, rtol=1e-8, atol=1e-10)


def test_default_run_reports_steps_and_finishes():
    """Defaults on the 96-sample, 2×16 ReLU MLP reach t = 400 (timing: benchmarks/)."""
    data = gf.data.load("gaussian-mixture", n_train=96, n_test=32, dim=10, classes=2, seed=0)
    net = MLP(10, (16, 16), 1, key=jax.random.PRNGKey(0))
    tr = gf.flow(gf.Problem(net, data, weight_decay=1e-3, normalization="lm-last"), t1=400.0)
    s = tr.stats
    assert s["status"] == "success" and s["t_reached"] == 400.0
    assert s["num_steps"] == s["num_accepted_steps"] + s["num_rejected_steps"]
    assert 0 <= s["num_floor_steps"] <= s["num_accepted_steps"]
    assert tr.t[-1] == 400.0


def test_max_steps_is_an_error_naming_the_time_reached():
    p = gf.Problem(_mlp(), _data(), weight_decay=1e-3)
    with pytest.raises(RuntimeError, match=r"stopped at t=\S+ of t1=100.0 after 50 steps"):
        gf.flow(p, t1=100.0, max_steps=50, dtmin=1e-3)
    tr = gf.flow(p, t1=100.0, max_steps=50, dtmin=1e-3, throw=False)
    assert tr.stats["status"] == "max_steps"
    assert 0 < tr.stats["t_reached"] < 100.0
    assert tr.t[-1] <= tr.stats["t_reached"] and len(tr.t) >= 1


class _HalfSteps(diffrax.AbstractStepSizeController):
    """Fixed steps of ``dt0 / 2``: a controller neither adaptive nor ``ConstantStepSize``, so
    the flow runs as one whole solve (it cannot go in segments)."""

    def wrap(self, direction):
        return self

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        return t0 + dt0 / 2, dt0 / 2

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        return True, t1, t1 + state, False, state, diffrax.RESULTS.successful


def test_a_controller_that_cannot_go_in_segments_steps_as_it_says():
    """A flow with a controller of its own (neither adaptive nor ``ConstantStepSize``: one whole
    solve, its stats naming the solver and the controller) takes its steps: Euler steps of
    dt0/2 = 0.1, ``w <- w + 0.1 v(w)`` five times to t = 0.5; out of steps it returns
    ``status == "max_steps"`` with ``throw=False`` (the solve itself never raises)."""
    p = gf.Problem(_mlp(), _data(), weight_decay=1e-3)  # plain: v = -grad L, no projection
    own = dict(solver="euler", dt0=0.2, stepsize_controller=_HalfSteps(), max_steps=5)
    tr = gf.flow(p, t1=0.5, ts=[0.0, 0.5], **own)
    w = p.initial_state()
    for _ in range(5):
        w = jax.tree.map(lambda a, v: a + 0.1 * v, w, p.velocity(w))
    assert tr.stats["status"] == "success" and tr.stats["num_steps"] == 5
    assert tr.stats["solver"] == "Euler" and tr.stats["controller"] == "_HalfSteps"
    assert tr.t.tolist() == pytest.approx([0.0, 0.5], rel=1e-12, abs=0)
    assert tr["loss"][-1] == pytest.approx(float(p.loss(w)), rel=1e-5, abs=0)  # float32
    short = gf.flow(p, t1=1.0, ts=[0.0, 1.0], throw=False, **own)  # 10 steps needed
    assert short.stats["status"] == "max_steps" and short.stats["num_steps"] == 5


def test_step_to_takes_exactly_its_steps():
    """``diffrax.StepTo(ts)`` sets the steps itself (no dt0): Euler over the uneven
    ``ts = 0, 0.05, 0.2, 0.3, 0.55, 1`` is ``w <- w + (t_{i+1} - t_i) v(w)`` five times, saved
    at 0.3 and 1; a dt0 beside it, or ``ts`` not spanning [t0, t1], is refused in one line."""
    p = gf.Problem(_mlp(), _data(), weight_decay=1e-3)  # plain: v = -grad L, no projection
    ts = [0.0, 0.05, 0.2, 0.3, 0.55, 1.0]
    own = dict(solver="euler", stepsize_controller=diffrax.StepTo(ts))
    tr = gf.flow(p, t1=1.0, ts=[0.0, 0.3, 1.0], **own)
    w, losses = p.initial_state(), [float(p.loss(p.initial_state()))]
    for a, b in zip(ts[:-1], ts[1:]):
        w = jax.tree.map(lambda x, v, h=b - a: x + h * v, w, p.velocity(w))
        if b in (0.3, 1.0):
            losses.append(float(p.loss(w)))
    assert tr.stats["status"] == "success" and tr.stats["num_steps"] == 5
    assert tr.stats["controller"] == "StepTo" and tr.stats["num_gradient_evaluations"] == 5
    np.testing.assert_allclose(tr["loss"], losses, rtol=1e-5)  # float32 problem
    with pytest.raises(ValueError, match=r"^flow: dt0=0\.1 is not allowed; StepTo sets the st"):
        gf.flow(p, t1=1.0, dt0=0.1, **own)
    with pytest.raises(ValueError, match=r"its ts must start at t0=0\.0 and end at t1=2\.0$"):
        gf.flow(p, t1=2.0, **own)


def test_trajectory_round_trips_through_netcdf(tmp_path):
    p = gf.Problem(_mlp(), _data(), weight_decay=1e-3, normalization="wn")
    tr = gf.flow(p, t1=2.0, save_every=0.5)
    ds = tr.to_xarray()
    for name in (
        "loss",
        "data_loss",
        "train_acc",
        "test_acc",
        "rho",
        "rho_k",
        "balance_gap",
        "margin_min",
        "margin_mean",
        "margin_std",
        "v_norm",
    ):
        assert name in ds, name
    assert ds["rho_k"].dims == ("t", "layer") and ds["balance_gap"].dims == ("t", "layer_pair")
    path = tr.save(tmp_path / "run.nc")
    back = gf.load(path)
    np.testing.assert_array_equal(back.t, tr.t)
    for k in tr.observables:
        np.testing.assert_array_equal(back[k], tr[k])
    for a, b in zip(back.final_params, tr.final_params):
        np.testing.assert_array_equal(a, b)
    assert back.config["problem"]["normalization"] == "wn"
    assert "jax" in back.to_xarray().attrs["versions"]
    assert back.stats == tr.stats


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n, d: gf.Problem(n, d, normalization="batch"), r"normalization='batch'.*one of"),
        (lambda n, d: gf.Problem(n, d, weight_decay=-0.1), r"weight_decay=-0.1.*>= 0"),
        (lambda n, d: gf.flow(gf.Problem(n, d), t1=0.0), r"t1=0.0.*> 0"),
        (lambda n, d: gf.flow(gf.Problem(n, d), t1=-3), r"t1=-3"),
        (lambda n, d: gf.flow(gf.Problem(n, d), t1=1.0, solver="rk9"), r"solver='rk9'"),
        (
            lambda n, d: gf.Problem(MLP(7, (3,), 1, key=jax.random.PRNGKey(0)), d),
            r"sample shape \(5,\)",
        ),
        (lambda n, d: gf.Problem(MLP(5, (3,), 4, key=jax.random.PRNGKey(0)), d), r"4 outputs.*C=1"),
    ],
)
def test_bad_input_names_argument_value_and_allowed(make, match):
    with pytest.raises(ValueError, match=match):
        make(_mlp(), _data())


def test_a_tolerance_sweep_compiles_once():
    """rtol, atol, dtmin travel to the jitted integrator as traced scalars, not constants."""
    from compile_counter import CompileCounter

    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=4, seed=3)
    problem = gf.Problem(MLP(4, (5,), 1, key=jax.random.PRNGKey(7)), data, weight_decay=1e-3)
    gf.flow(problem, t1=0.5, rtol=1e-3, atol=1e-5, dtmin=1e-3)
    with CompileCounter("run_block", "_integrate") as count:
        for rtol in (1e-4, 1e-5):
            gf.flow(problem, t1=0.5, rtol=rtol, atol=rtol * 1e-2, dtmin=rtol)
    assert count.compiles == 0 and count.traces == 0, vars(count)
    with CompileCounter(
        "run_block", "_integrate"
    ) as control:  # the counter does see a new compilation
        gf.flow(problem, t1=0.5, rtol=1e-4, atol=1e-6, dtmin=None)
    assert control.compiles == 1, vars(control)


def test_flows_with_different_numbers_of_saves_share_one_compilation():
    """The save times reach the controller padded with +inf to a power of two
    (``padded_step_ts``): 21 and 31 save points run the same compiled program, the padding
    never clips a step (the longer run's ρ at the first 21 save times is the shorter run's, bit
    for bit), and another bucket (11 points) compiles anew."""
    from compile_counter import CompileCounter
    from gradflow.dynamics._core import padded_step_ts

    assert padded_step_ts(np.linspace(0.0, 1.0, 21)).shape == (32,)
    assert padded_step_ts(np.linspace(0.0, 1.0, 32)).shape == (32,)
    assert padded_step_ts(np.linspace(0.0, 1.0, 33)).shape == (64,)
    assert padded_step_ts(np.linspace(0.0, 1.0, 3)).shape == (16,)
    assert np.all(np.isinf(np.asarray(padded_step_ts(np.linspace(0.0, 1.0, 3)))[3:]))
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=4, seed=3)
    problem = gf.Problem(MLP(4, (5,), 1, key=jax.random.PRNGKey(7)), data, weight_decay=1e-3)
    a = gf.flow(problem, t1=1.0, save_every=0.05)  # 21 save times
    with CompileCounter("run_block", "_integrate", "_start") as count:
        b = gf.flow(problem, t1=1.5, save_every=0.05)  # 31
    assert count.compiles == 0 and count.traces == 0, vars(count)
    np.testing.assert_allclose(b.t[:21], a.t, rtol=0, atol=1e-15)
    # the same steps up to t = 1 (clipped at the same save times): the same weights there
    np.testing.assert_array_equal(b["rho"][:21], a["rho"])
    with CompileCounter("run_block", "_integrate", "_start") as control:
        gf.flow(problem, t1=1.0, save_every=0.1)  # 11: the 16 bucket
    assert control.compiles >= 1, vars(control)


def test_simulate_is_the_flow_and_a_sweep_runs_the_same_advance():
    """``gf.flow`` is ``gf.simulate(problem, gf.ODE(...))``; a sweep (``plan`` +
    ``run_plans``: the whole run as one compiled call of the same ``init`` and ``advance``)
    equals the direct, segmented call bit for bit when it runs alone, and to 1e-12 when two
    λ are ``vmap``ped together (a batched matrix product may round differently)."""
    import diffrax

    from gradflow.dynamics._batch import groups_of, plan, run_plans

    data = _data(n=16, dim=3, n_test=0)
    problems = [
        gf.Problem(_mlp(dim=3, widths=(4,), scale=0.5), data, weight_decay=lam)
        for lam in (0.01, 0.3)
    ]
    kw = dict(t1=0.5, save_every=0.25)
    direct = [gf.flow(p, **kw) for p in problems]
    same = gf.simulate(problems[0], gf.ODE(diffrax.Heun()), **kw)
    np.testing.assert_array_equal(same["loss"], direct[0]["loss"])
    assert same.stats["num_steps"] == direct[0].stats["num_steps"]
    [alone] = run_plans([plan(gf.flow, problems[0], **kw)])
    for name in ("loss", "rho", "balance_gap"):
        np.testing.assert_array_equal(alone[name], direct[0][name])
    assert alone.stats["num_steps"] == direct[0].stats["num_steps"]
    plans = [plan(gf.flow, p, **kw) for p in problems]
    assert groups_of(plans) == [[0, 1]]  # one compiled, vmapped call
    for got, want in zip(run_plans(plans), direct, strict=True):
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-12, atol=0)
        assert got.stats["num_steps"] == want.stats["num_steps"]
    assert not np.allclose(direct[0]["loss"], direct[1]["loss"], rtol=1e-6)  # can fail
