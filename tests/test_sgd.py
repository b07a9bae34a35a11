"""Discrete SGD / GD (``gf.sgd``) against the flow and against exact discrete identities.

THEORY 1 (time map ``t = η j``), 3.3 (WN: ``||v||`` creeps up under GD, exactly), 4.5
(balancedness drifts by O(η²) per step, O(η) over a fixed time). Convergence orders are
*fitted* slopes; exact identities are checked to float64 rounding.
"""

import re

import equinox as eqx
import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from compile_counter import CompileCounter
from gradflow.dynamics._sgd import batch_indices
from gradflow.models import MLP, DeepLinear

LRS = np.array([0.04, 0.02, 0.01, 0.005])  # η ladder (all well below 2/λ_max ≈ 0.5 here)
T = 2.0  # the fixed flow time at which GD and the flow are compared
TIGHT = dict(rtol=1e-10, atol=1e-12, dtmin=None, solver="tsit5")  # smooth problems only


def _data(n=32, dim=5, classes=2, seed=0, n_test=0):
    return gf.data.load(
        "gaussian-mixture", n_train=n, n_test=n_test, dim=dim, classes=classes, seed=seed
    )


def _relu(seed=2, scale=0.5, widths=(6, 6), out=1):
    return MLP(5, widths, out, init_scale=scale, key=jax.random.PRNGKey(seed))


def _slope(x, y):
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _gd(problem, lr, **kw):
    """GD = ``gf.sgd`` with the full batch, saved at ``t = 0`` and ``t = T``."""
    return gf.sgd(
        problem,
        lr=lr,
        batch_size=problem.n_train,
        t1=T,
        ts=[0.0, T],
        key=jax.random.PRNGKey(0),
        **kw,
    )


# ---- GD converges to the flow (first order in η) --------------------------------------


@pytest.fixture(scope="module")
def linear_runs():
    """A smooth deep linear problem: the tight flow and GD at every η of the ladder."""
    net = DeepLinear(5, (4, 3), 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    p = gf.Problem(net, _data())
    flow = gf.flow(p, t1=T, ts=[0.0, T], **TIGHT)
    return p, flow, [_gd(p, lr) for lr in LRS]


def test_gd_error_against_the_flow_is_first_order_in_lr(linear_runs):
    """Euler's global error at fixed t is O(η): fitted log-log slope 1 ± 0.2."""
    _, flow, gds = linear_runs
    assert all(tr.kind == "gd" and tr.t[-1] == pytest.approx(T, abs=1e-12) for tr in gds)
    err = np.array([gf.compare(tr, flow).attrs["param_distance"] for tr in gds])
    assert np.all(np.diff(err) < 0), err
    assert abs(_slope(LRS, err) - 1.0) <= 0.2, (err, _slope(LRS, err))
    # the loss at t = T converges too
    dloss = np.array([abs(tr["loss"][-1] - flow["loss"][-1]) for tr in gds])
    assert np.all(np.diff(dloss) < 0), dloss


def test_gd_error_on_a_relu_mlp_falls_with_lr():
    """ReLU (non-smooth) MLP at small init: the error falls monotonically as η falls."""
    p = gf.Problem(_relu(), _data())
    flow = gf.flow(p, t1=T, ts=[0.0, T], rtol=1e-9, atol=1e-11, dtmin=1e-4)
    err = np.array([gf.compare(_gd(p, lr), flow).attrs["param_distance"] for lr in LRS])
    assert np.all(np.diff(err) < 0), err
    assert err[-1] < 0.25 * err[0], err  # ~8x over the ladder; at least 4x


# ---- balancedness: conserved by the flow, O(η) drift under GD (THEORY 3.1, 4.5) -------


def test_plain_gd_balance_drift_is_first_order_in_lr(linear_runs):
    """λ = 0: the drift of ρ_k² − ρ_{k+1}² over [0, T] is O(η); the flow's is ≪ that."""
    _, flow, gds = linear_runs
    drift = np.array([np.abs(tr["balance_gap"][-1] - tr["balance_gap"][0]) for tr in gds])
    for k in range(drift.shape[1]):
        assert abs(_slope(LRS, drift[:, k]) - 1.0) <= 0.2, (k, drift[:, k])
    flow_drift = np.abs(flow["balance_gap"][-1] - flow["balance_gap"][0])
    assert np.all(flow_drift < 1e-3 * drift[-1]), (flow_drift, drift[-1])


def test_plain_gd_balance_step_is_exactly_lr_squared_gradient_gap():
    """One GD step: ρ_k² changes by −2η⟨W_k, G_k⟩ + η²||G_k||², and ⟨W_k, G_k⟩ is the same
    for every layer (Euler's identity, σ'(0) = 0 included), so the gap moves by exactly
    η²(||G_k||² − ||G_{k+1}||²). Checked step by step on a ReLU MLP, against gradients
    computed here with ``jax.grad``."""
    lr, steps = 0.05, 30
    p = gf.Problem(_relu(seed=4, scale=1.0), _data(seed=1))
    tr = gf.sgd(
        p, lr=lr, batch_size=p.n_train, steps=steps, save_every=lr, key=jax.random.PRNGKey(0)
    )
    assert tr["balance_gap"].shape == (steps + 1, 2)

    def data_loss(ws):
        f = jax.vmap(p.model.apply, (None, 0))(ws, p.x_train)
        return jnp.mean(jnp.sum((f - p.y_train) ** 2, axis=1))

    grad = jax.jit(jax.grad(data_loss))
    ws = tuple(jnp.asarray(w) for w in p.model.weights)
    gaps, incr = [], []
    for _ in range(steps):
        g = grad(ws)
        sq = np.array([float(jnp.sum(x**2)) for x in g])
        inner = np.array([float(jnp.vdot(w, x)) for w, x in zip(ws, g, strict=True)])
        np.testing.assert_allclose(inner, inner[0], rtol=1e-12, atol=1e-15)
        norms = np.array([float(jnp.sum(w**2)) for w in ws])
        gaps.append(norms[:-1] - norms[1:])
        incr.append(lr**2 * (sq[:-1] - sq[1:]))
        ws = tuple(w - lr * x for w, x in zip(ws, g, strict=True))
    gaps, incr = np.array(gaps), np.array(incr)
    np.testing.assert_allclose(gaps, tr["balance_gap"][:-1], rtol=1e-12, atol=1e-14)
    step = np.diff(tr["balance_gap"], axis=0)
    np.testing.assert_allclose(step, incr, rtol=1e-8, atol=1e-13)


# ---- weight normalization: ||v|| creeps up under GD, exactly (THEORY 3.3) -------------


def test_wn_gd_v_norm_grows_by_lr_squared_gradient_norm_each_step():
    """||v_{j+1}||² = ||v_j||² + η²||∇_v L(state_j)||² at every step (no decay on v)."""
    lr, steps = 0.05, 50
    p = gf.Problem(_relu(), _data(), weight_decay=1e-2, normalization="wn")
    tr = gf.sgd(
        p, lr=lr, batch_size=p.n_train, steps=steps, save_every=lr, key=jax.random.PRNGKey(0)
    )
    v_norm = tr["v_norm"]  # (steps + 1, L)
    assert v_norm.shape == (steps + 1, 3)
    np.testing.assert_allclose(tr.t, lr * np.arange(steps + 1), rtol=1e-15)

    # independent GD on (g, v): plain gradients of the total loss, computed here
    grad = jax.jit(jax.grad(p.loss))
    state = p.initial_state()
    gnorm2, vnorm2 = [], []
    for _ in range(steps):
        g = grad(state)
        v = state["v"]
        vnorm2.append([float(jnp.sum(x**2)) for x in v])
        gnorm2.append([float(jnp.sum(x**2)) for x in g["v"]])
        # the v-gradient is orthogonal to v (scale invariance), which is what makes the
        # identity exact
        for x, gx in zip(v, g["v"], strict=True):
            assert abs(float(jnp.vdot(x, gx))) <= 1e-13 * float(
                jnp.linalg.norm(x) * jnp.linalg.norm(gx)
            )
        state = jax.tree.map(lambda a, b: a - lr * b, state, g)
    vnorm2.append([float(jnp.sum(x**2)) for x in state["v"]])
    vnorm2, gnorm2 = np.array(vnorm2), np.array(gnorm2)
    # the identity, on the independent iterates and on gf.sgd's
    for n2 in (vnorm2, v_norm**2):
        np.testing.assert_allclose(n2[1:], n2[:-1] + lr**2 * gnorm2, rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.diff(v_norm**2, axis=0), lr**2 * gnorm2, rtol=1e-8)
    assert np.all(np.diff(v_norm, axis=0) > 0)  # a visible creep, not rounding
    assert np.all(v_norm[-1] - 1.0 > 1e-3)


def test_wn_flow_keeps_v_norm_while_gd_does_not():
    p = gf.Problem(_relu(), _data(), weight_decay=1e-2, normalization="wn")
    flow = gf.flow(p, t1=2.5, save_every=0.25, rtol=1e-9, atol=1e-11, dtmin=1e-4)
    gd = gf.sgd(
        p, lr=0.05, batch_size=p.n_train, t1=2.5, save_every=0.25, key=jax.random.PRNGKey(0)
    )
    flow_err = np.max(np.abs(flow["v_norm"] - 1.0))
    assert flow_err <= 1e-6
    assert flow_err < 1e-2 * np.min(gd["v_norm"][-1] - 1.0)


# ---- B = N is GD exactly; keys ------------------------------------------------------


@pytest.mark.parametrize("normalization", ["none", "lm-all", "lm-last", "wn"])
def test_full_batch_without_replacement_is_gd(normalization):
    """``batch_size = N`` equals ``state ← project(state + η·velocity(state))`` exactly."""
    lr, steps = 0.05, 40
    p = gf.Problem(_relu(seed=0), _data(), weight_decay=1e-2, normalization=normalization)

    @eqx.filter_jit
    def gd(problem, state):
        def body(_, s):
            vel = problem.velocity(s)
            return problem.project(jax.tree.map(lambda a, b: a + lr * b, s, vel))

        return jax.lax.fori_loop(0, steps, body, state)

    ref = jax.tree.leaves(gd(p, p.initial_state()))
    tr = gf.sgd(p, lr=lr, batch_size=p.n_train, steps=steps, key=jax.random.PRNGKey(3))
    assert tr.kind == "gd"
    got = jax.tree.leaves(tr.final_state)
    if normalization == "none":  # the same floating-point operations: bit for bit
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)
    else:  # WN may fuse ||v|| differently: one or two ulps
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15 * np.max(np.abs(b)))
    # the key is irrelevant at B = N
    other = gf.sgd(p, lr=lr, batch_size=p.n_train, steps=steps, key=jax.random.PRNGKey(9))
    for a, b in zip(jax.tree.leaves(other.final_state), got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_full_batch_momentum_is_heavy_ball():
    """``momentum=m``: ``b ← ∇L + m b``, ``W ← W − η b`` (Optax's trace), as a hand loop."""
    lr, m, steps = 0.05, 0.9, 30
    p = gf.Problem(_relu(seed=0), _data(), weight_decay=1e-2)
    tr = gf.sgd(p, lr=lr, batch_size=p.n_train, steps=steps, momentum=m, key=jax.random.PRNGKey(0))
    grad = jax.jit(jax.grad(p.loss))
    s = p.initial_state()
    buf = jax.tree.map(jnp.zeros_like, s)
    for _ in range(steps):
        buf = jax.tree.map(lambda b, g: g + m * b, buf, grad(s))
        s = jax.tree.map(lambda a, b: a - lr * b, s, buf)
    for a, b in zip(jax.tree.leaves(tr.final_state), jax.tree.leaves(s), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14 * np.max(np.abs(b)))


@pytest.mark.parametrize("sampling", ["without-replacement", "with-replacement"])
def test_same_key_same_run_other_key_other_run(sampling):
    p = gf.Problem(_relu(), _data(), weight_decay=1e-3)
    kw = dict(lr=0.05, batch_size=8, steps=40, save_every=0.5, sampling=sampling)
    a = gf.sgd(p, key=jax.random.PRNGKey(1), **kw)
    b = gf.sgd(p, key=jax.random.PRNGKey(1), **kw)
    c = gf.sgd(p, key=jax.random.PRNGKey(2), **kw)
    assert a.kind == "sgd" and np.all(np.isfinite(a["loss"]))
    for name in a.observables:
        np.testing.assert_array_equal(a[name], b[name])
    for x, y in zip(a.final_params, b.final_params, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a["loss"][1:], c["loss"][1:], rtol=1e-6, atol=0)
    assert a["loss"][-1] < a["loss"][0]


def test_batch_indices_partition_each_epoch():
    """Without replacement, the N//B batches of one epoch are disjoint (a permutation)."""
    key, n, b = jax.random.PRNGKey(0), 32, 8
    for epoch in range(2):
        idx = np.concatenate(
            [
                np.asarray(batch_indices(key, epoch * 4 + j, n, b, "without-replacement"))
                for j in range(4)
            ]
        )
        np.testing.assert_array_equal(np.sort(idx), np.arange(n))
    wr = np.asarray(batch_indices(key, 0, n, 32, "with-replacement"))
    assert wr.shape == (32,) and wr.min() >= 0 and wr.max() < n
    assert len(np.unique(wr)) < n  # 32 draws from 32 almost surely repeat one


# ---- compilation -------------------------------------------------------------------


def test_new_lr_weight_decay_or_key_does_not_recompile():
    net, data = _relu(seed=5), _data()
    kw = dict(batch_size=8, steps=40)
    p = gf.Problem(net, data, weight_decay=1e-3)
    gf.sgd(p, lr=0.05, save_every=0.5, key=jax.random.PRNGKey(0), **kw)  # warm
    with CompileCounter("run_block", "_run", "_vmapped") as count:
        for lr, lam, seed in [
            (0.05, 1e-3, 0),
            (0.02, 1e-3, 0),
            (0.05, 0.3, 0),
            (0.05, 1e-3, 7),
            (0.11, 0.0, 3),
        ]:
            q = gf.Problem(net, data, weight_decay=lam)
            tr = gf.sgd(q, lr=lr, save_every=10 * lr, key=jax.random.PRNGKey(seed), **kw)
            assert tr.config["lr"] == lr and tr.config["problem"]["weight_decay"] == lam
    assert count.compiles == 0 and count.traces == 0, vars(count)
    with CompileCounter(
        "run_block", "_run", "_vmapped"
    ) as control:  # the counter does see compiles
        gf.sgd(p, lr=0.05, save_every=0.5, key=jax.random.PRNGKey(0), batch_size=5, steps=40)
    assert control.compiles == 1, vars(control)
    with CompileCounter(
        "run_block", "_run", "_vmapped"
    ) as again:  # a new save grid of the same length
        gf.sgd(p, lr=0.07, save_every=0.7, key=jax.random.PRNGKey(11), **kw)
    assert again.compiles == 0, vars(again)


def test_seeds_add_a_dimension_of_independent_runs_with_one_compilation():
    p = gf.Problem(_relu(seed=6), _data(), weight_decay=1e-3)
    key = jax.random.PRNGKey(4)
    kw = dict(batch_size=4, steps=24, save_every=0.3)
    with CompileCounter("run_block", "_run", "_vmapped") as first:
        tr = gf.sgd(p, lr=0.05, key=key, seeds=3, **kw)
    assert first.compiles <= 1
    assert tr["loss"].shape == (3, len(tr.t)) and tr["rho_k"].shape == (3, len(tr.t), 3)
    assert [w.shape[0] for w in tr.final_params] == [3, 3, 3]
    assert tr.to_xarray()["loss"].dims == ("seed", "t")
    for i in range(3):
        for j in range(i):
            assert not np.allclose(tr["loss"][i, 1:], tr["loss"][j, 1:], rtol=1e-6, atol=0)
    # seed i is the single run with the i-th key of split(key)
    keys = jax.random.split(key, 3)
    for i in (0, 2):
        one = gf.sgd(p, lr=0.05, key=keys[i], **kw)
        np.testing.assert_allclose(tr["loss"][i], one["loss"], rtol=1e-12)
    with CompileCounter("run_block", "_run", "_vmapped") as second:
        gf.sgd(p, lr=0.03, key=jax.random.PRNGKey(8), seeds=3, **{**kw, "save_every": 0.18})
    assert second.compiles == 0, vars(second)


# ---- divergence and the stable learning rate -----------------------------------------


def _one_layer(lam=0.0):
    data = _data(n=24, dim=4, classes=3, seed=5)
    p = gf.Problem(DeepLinear(4, (), 3, key=jax.random.PRNGKey(2)), data, weight_decay=lam)
    x = np.asarray(data.x_train)
    # Hessian of (1/N)Σ||W x_n − y_n||² + (λ/2)||W||² in vec(W): (2/N) XᵀX ⊗ I_C + λI
    lam_max = np.linalg.eigvalsh(2 / len(x) * x.T @ x)[-1] + lam
    return p, data, lam_max


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_stable_learning_rate_matches_the_closed_form_hessian(lam):
    p, _, lam_max = _one_layer(lam)
    eta, lam_hat = gf.stable_learning_rate(p)
    assert lam_hat == pytest.approx(lam_max, rel=1e-8, abs=0)
    assert eta == pytest.approx(2 / lam_max, rel=1e-8, abs=0)


def test_divergence_raises_with_step_loss_and_stable_lr():
    p, data, lam_max = _one_layer()
    lr, steps = 4.0 / lam_max, 600  # |1 − η λ_max| = 3: the loss grows ~9x per step
    # where float64 overflows, from an independent numpy GD loop
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    w, losses = np.array(p.model.weights[0]), []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            r = x @ w.T - y
            losses.append(np.mean(np.sum(r**2, axis=1)))
            if not np.isfinite(losses[-1]):
                break
            w = w - lr * (2 / len(x)) * r.T @ x
    first_bad = len(losses) - 1
    assert 50 < first_bad < steps

    with pytest.raises(gf.Diverged) as info:
        gf.sgd(
            p, lr=lr, batch_size=p.n_train, steps=steps, save_every=lr, key=jax.random.PRNGKey(0)
        )
    msg = str(info.value)
    step = int(re.search(r"at step (\d+)", msg).group(1))
    last = float(re.search(r"last finite batch loss was (\S+?)\.\s", msg).group(1))
    suggested = float(re.search(r"2/λ_max = (\S+) ", msg).group(1))
    assert abs(step - first_bad) <= 1, (step, first_bad)
    assert last == pytest.approx(losses[step - 1], rel=1e-5, abs=0)
    assert suggested == pytest.approx(2 / lam_max, rel=1e-3, abs=0)
    assert f"lr={lr}" in msg
    partial = info.value.trajectory
    assert partial.stats["status"] == "diverged" and partial.stats["diverged_at_step"] == step
    assert partial.t[-1] <= step * lr + 1e-12 and partial.t[-1] < steps * lr
    assert np.all(np.isfinite(partial["loss"][:-1]))
    # throw=False gives the same partial trajectory without raising
    tr = gf.sgd(
        p,
        lr=lr,
        batch_size=p.n_train,
        steps=steps,
        save_every=lr,
        key=jax.random.PRNGKey(0),
        throw=False,
    )
    assert tr.stats["status"] == "diverged"
    np.testing.assert_array_equal(tr.t, partial.t)
    # and a stable lr does not diverge
    ok = gf.sgd(
        p,
        lr=0.9 * 2 / lam_max,
        batch_size=p.n_train,
        steps=steps,
        save_every=lr,
        key=jax.random.PRNGKey(0),
    )
    assert ok.stats["status"] == "success" and ok["loss"][-1] < ok["loss"][0]


# ---- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(lr=0.0), r"lr=0\.0 is not allowed"),
        (dict(lr=-0.1), r"lr=-0\.1 is not allowed"),
        (dict(batch_size=33), r"batch_size=33 is not allowed.*N=32"),
        (dict(batch_size=0), r"batch_size=0 is not allowed"),
        (dict(sampling="poisson"), r"sampling='poisson' is not allowed.*without-replacement"),
        (dict(steps=10), r"t1=1\.0 is not allowed.*exactly one of t1 and steps"),
        (dict(t1=None), r"t1=None is not allowed.*exactly one of t1 and steps"),
        (dict(steps=0, t1=None), r"steps=0 is not allowed"),
        (dict(seeds=0), r"seeds=0 is not allowed"),
        (dict(on_divergence="ignore"), r"on_divergence='ignore' is not allowed"),
    ],
)
def test_bad_input_names_argument_and_value(kw, match):
    p = gf.Problem(_relu(), _data())
    args = dict(lr=0.1, batch_size=8, t1=1.0, key=jax.random.PRNGKey(0))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        gf.sgd(p, **args)


def _hand_scan(p, key, lr, beta, wd, steps, batch_size, nesterov=False):
    """SGD with decoupled weight decay and momentum written out, step by step in one
    ``lax.scan``: ``g = ∇L_S + wd·W``, ``b ← g + β b`` and ``W ← W − η b`` (heavy ball) or
    ``W ← W − η (g + β b)`` (Nesterov), batches as :func:`batch_indices` draws them."""
    n = p.n_train

    def body(carry, j):
        w, b = carry
        idx = batch_indices(key, j, n, batch_size, "without-replacement")
        g = jax.grad(p.loss)(w, p.x_train[idx], p.y_train[idx])
        g = jax.tree.map(lambda g, w: g + wd * w, g, w)
        b = jax.tree.map(lambda g, b: g + beta * b, g, b)
        step = jax.tree.map(lambda g, b: g + beta * b, g, b) if nesterov else b
        w = jax.tree.map(lambda w, s: w + (-lr) * s, w, step)
        return (w, b), None

    w0 = p.initial_state()
    (w, _), _ = jax.lax.scan(body, (w0, jax.tree.map(jnp.zeros_like, w0)), jnp.arange(steps))
    return w


def test_an_optax_chain_is_the_hand_written_momentum_loop_bit_for_bit():
    """``optimizer=optax.chain(add_decayed_weights(wd), sgd(lr, momentum=0.9))`` (the paper's
    protocol: decay in the optimizer, λ = 0 in the loss) equals :func:`_hand_scan` exactly, and
    the built-in Nesterov form equals its hand loop too (``normalization="none"``: the
    velocity is minus the gradient, no projection)."""
    lr, beta, wd, steps, b = 0.05, 0.9, 1e-2, 12, 8
    p = gf.Problem(_relu(seed=0), _data(), weight_decay=0.0, normalization="none")
    key = jax.random.PRNGKey(4)
    chain = optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=beta))
    tr = gf.sgd(p, lr=lr, batch_size=b, steps=steps, optimizer=chain, key=key)
    assert tr.config["optimizer"] == "custom" and tr.stats["status"] == "success"
    want = _hand_scan(p, key, lr, beta, wd, steps, b)
    for a, w in zip(jax.tree.leaves(tr.final_state), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, w)
    # Nesterov through the built-in form (β and η in the optimizer's state), no decay
    tr = gf.sgd(p, lr=lr, batch_size=b, steps=steps, momentum=beta, nesterov=True, key=key)
    want = _hand_scan(p, key, lr, beta, 0.0, steps, b, nesterov=True)
    for a, w in zip(jax.tree.leaves(tr.final_state), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, w)  # (heavy ball instead fails it by ~0.09)


def test_sgd_far_above_its_stable_rate_is_a_failure_value():
    """Plain GD / SGD at 17× ``2/λ_max`` (measured before this check: the loss rose from 2.35
    to 594 (B = N) and 9.3e3 (B = 4), ρ from 5 to 5e4 and 9e5, and the run said "success"):
    the loss beyond ``SGD.blow_up`` = 100 times ``max(its start, 1)`` makes it "blew_up",
    raised as :class:`gf.Diverged` or returned with ``throw=False``; the same run at 0.5× is a
    success (the control)."""
    data = gf.data.load("gaussian-mixture", n_train=16, n_test=0, dim=3, seed=0)
    p = gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), data, weight_decay=0.01)
    eta, _ = gf.stable_learning_rate(p)
    kw = dict(steps=200, key=jax.random.PRNGKey(0))
    with pytest.raises(gf.Diverged, match=r"blew up .* 2/λ_max") as info:
        gf.sgd(p, lr=17 * eta, batch_size=16, **kw)
    assert info.value.status == "blew_up"
    tr = gf.sgd(p, lr=17 * eta, batch_size=4, throw=False, **kw)
    assert tr.result is gf.RESULTS.blew_up and tr.stats["status"] == "blew_up"
    loss = np.asarray(tr["loss"])
    assert np.all(np.isfinite(loss)) and loss.max() > 100 * max(loss[0], 1.0)
    ok = gf.sgd(p, lr=0.5 * eta, batch_size=4, **kw)
    assert ok.result is gf.RESULTS.successful
