"""Filippov equilibria of a ReLU flow (THEORY 3.6, 4.9), checked by a gradient written here.

The problem: a bias-free ReLU MLP 6-8-1 on 16 Gaussian-mixture points, λ = 0.1, plain weights.
It is settled by gradient descent (the flow's Euler scheme, η = 0.01) to t = 200 (λ·t = 20): at
that point some pre-activations are held at zero (sliding) and some units are dying, so the
smooth Newton of the linear path has no solution there and the Filippov solve is needed.

Independent of the library, this file recomputes with NumPy: the forward pass and pre-activations,
the gradient with ReLU slopes ``α`` on ``S`` (backpropagation by hand), and THEORY 4.9's Gram
matrices ``K¹_{mn} = (Σ_j W2_j² a_mj a_nj) ⟨x_m, x_n⟩`` and ``K²_{mn} = ⟨h_m, h_n⟩``.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow.models import MLP

LAM, N, DIM, WIDTH = 0.1, 16, 6, 8


def _problem():
    data = gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=0)
    net = MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(0))
    return gf.Problem(net, data, weight_decay=LAM, normalization="none")


def _gd_end(problem, t1):
    key = jax.random.PRNGKey(0)
    return gf.sgd(problem, lr=0.01, batch_size=N, t1=t1, key=key, save_every=t1).final_state


@pytest.fixture(scope="module")
def settled():
    problem = _problem()
    start = _gd_end(problem, 200.0)
    return problem, start, gf.equilibrium(problem, start, spectrum=False)


@pytest.fixture(scope="module")
def unsettled():
    problem = _problem()
    start = _gd_end(problem, 10.0)  # λ·t = 1
    return problem, start, gf.equilibrium(problem, start, spectrum=True, lanczos_iter=20)


# ---- the independent computation ------------------------------------------------------------


def _forward(w1, w2, x, slopes=None):
    z = x @ w1.T
    a = (z > 0).astype(float) if slopes is None else slopes
    h = a * z
    return z, a, h, h @ w2.T


def _gradient(w1, w2, x, y, a):
    """``∇L`` with slopes ``a`` (``h = a ⊙ z``), ``L = (1/N)Σ(F − y)² + (λ/2)Σ||W||²``, by hand;
    also the norms of its data and decay parts."""
    z = x @ w1.T
    h = a * z
    f = h @ w2.T
    df = 2 * (f - y) / len(x)
    g2 = df.T @ h
    g1 = ((df @ w2) * a).T @ x
    data = np.sqrt(np.sum(g1**2) + np.sum(g2**2))
    decay = LAM * np.sqrt(np.sum(w1**2) + np.sum(w2**2))
    return g1 + LAM * w1, g2 + LAM * w2, data + decay


def _weights(problem, state):
    return [np.asarray(w) for w in problem.to_weights(state)]


# ---- a settled flow: certified --------------------------------------------------------------


def test_a_settled_relu_flow_ends_at_a_certified_filippov_equilibrium(settled):
    problem, start, fp = settled
    c = fp.certificate
    assert fp.certified and c.verdict == "certified", fp.describe()
    assert c.relative_residual <= 1e-12 and c.n_switching > 0 and c.n_dying > 0
    # polished past tol to the rounding floor (1.1e-16 here; a damped first polishing step
    # leaves 3.4e-14, and the second one, a full step, takes it down)
    assert fp.relative_residuals[-1] <= 1e-15
    assert c.alpha_range[0] >= 0 and c.alpha_range[1] <= 1
    assert c.sign_flips == 0 and c.flow_sign_changes == 0 and c.flow_drift <= 1e-4
    assert fp.describe().startswith("fixed point (Filippov")
    assert fp.message == "tolerance reached, every α in [0, 1]"
    assert type(c.n_flat) is int and c.n_flat >= 0  # the dense Jacobian's numerically zero values
    assert np.any(fp.steps == 1.0)  # full Newton steps (a join's cut is a fraction below 1)
    # the active set's joins keep the residual (issue 24): it does not rise across a join
    rels, flips = np.asarray(fp.relative_residuals), np.asarray(fp.pattern_flips)
    joins = np.flatnonzero(np.diff(flips) > 0)
    assert joins.size > 0 and np.all(rels[joins + 1] <= rels[joins])

    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)
    w1, w2 = _weights(problem, fp.state)
    z, pattern, _, _ = _forward(w1, w2, x)
    z0 = _forward(*_weights(problem, start), x)[0]
    n, j = c.switching.T
    rms = np.sqrt(np.mean(z**2))
    assert np.max(np.abs(z[n, j])) <= 1e-12 * rms  # S is held at zero
    dying = np.zeros(WIDTH, bool)
    dying[[u for layer, u in c.dying]] = True
    assert np.all(w1[dying] == 0) and np.all(w2[:, dying] == 0)  # exactly zero
    off = np.ones(z.shape, bool)
    off[n, j] = False
    off[:, dying] = False
    assert np.all(np.sign(z[off]) == np.sign(z0[off]))  # no sign flip off S since the start

    slopes = pattern.copy()
    slopes[n, j] = c.alpha
    g1, g2, scale = _gradient(w1, w2, x, y, slopes)
    independent = np.sqrt(np.sum(g1**2) + np.sum(g2**2)) / scale
    print(f"\nindependent relative |G(W, alpha)| = {independent:.2e}; {c.describe()}")
    assert independent <= 1e-12

    # THEORY 4.9 per layer, (2/N) K^k r = λ F, with the Gram matrices written out
    _, _, h, f = _forward(w1, w2, x, slopes)
    r = y - f
    k2 = h @ h.T
    k1 = ((slopes * w2[0] ** 2) @ slopes.T) * (x @ x.T)
    for k in (k1, k2):
        lhs, rhs = 2 / N * k @ r, LAM * f
        assert np.linalg.norm(lhs - rhs) <= 1e-9 * np.linalg.norm(rhs)
    assert max(c.identity_defects) <= 1e-9

    # the certificate as a results file holds it: plain JSON, every attribute but the arrays,
    # and the property flow_limit
    record = json.loads(json.dumps(c.record()))
    names = {f.name for f in dataclasses.fields(c)} - {"switching", "alpha", "dying"}
    assert set(record) == names | {"flow_limit"}
    assert record["certified"] is True and record["verdict"] == "certified"
    assert record["relative_residual"] == c.relative_residual
    assert record["alpha_range"] == list(c.alpha_range)
    assert record["identity_defects"] == list(c.identity_defects)
    assert record["n_switching"] == c.n_switching == len(c.switching)
    assert record["thresholds"] == dict(c.thresholds)


def test_the_certificate_fails_with_slopes_that_are_not_the_filippov_ones(settled):
    """The independent check can fail: with the slopes of ReLU itself (σ'(0) = 0 on S) the
    gradient at the certified point is far from zero."""
    problem, _, fp = settled
    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)
    w1, w2 = _weights(problem, fp.state)
    _, pattern, _, _ = _forward(w1, w2, x)
    n, j = fp.certificate.switching.T
    pattern[n, j] = 0.0
    g1, g2, scale = _gradient(w1, w2, x, y, pattern)
    assert np.sqrt(np.sum(g1**2) + np.sum(g2**2)) / scale >= 1e-4


# ---- a flow that has not settled: honest failure --------------------------------------------


def test_an_unsettled_flow_is_not_certified_and_says_why(unsettled):
    problem, start, fp = unsettled
    c = fp.certificate
    assert not fp.certified and c.verdict == "not settled", fp.describe()
    assert any("had not settled" in r for r in c.reasons)
    assert fp.describe().startswith("NOT a fixed point")
    assert fp.relative_residuals[-1] <= fp.relative_residuals[0]  # never worse than the start
    assert fp.spectrum.kind == "uncertified" and fp.kind == "uncertified"
    rows = gf.predict.report(problem, equilibrium=fp)
    assert "uncertified point" in rows[0] and "fixed point" not in rows[0]


def test_the_certificate_says_whether_the_point_is_the_flows_limit(settled):
    """The settled net's certified point is 0.08% from the flow's end, but one of its dying
    units could revive (sampled stability ratio ≥ 1), so its Hessian on S is a saddle: "a
    saddle near the start", not "the flow's limit". Planted: farther than LIMIT_DISTANCE it is
    "another equilibrium"; a minimum as near is "the flow's limit"; uncertified, no answer."""
    from gradflow.analysis._certificate import LIMIT_DISTANCE

    _, _, fp = settled
    c = fp.certificate
    assert c.certified and c.distance < LIMIT_DISTANCE
    assert c.dying_ratio >= 1 and c.hessian_kind == "saddle"
    assert c.flow_limit == "a saddle near the start" == c.record()["flow_limit"]
    assert "a saddle near the start, not shown to be the flow's limit" in fp.describe()
    far = dataclasses.replace(c, distance=2 * LIMIT_DISTANCE)
    assert far.flow_limit == "another equilibrium"
    assert "another equilibrium, not shown to be the flow's limit: 2% from" in far.describe()
    near = dataclasses.replace(c, hessian_kind="minimum")
    assert near.flow_limit == "the flow's limit"
    assert "the flow's limit: 0.0" in near.describe() and "(within 1%)" in near.describe()
    edge = dataclasses.replace(c, hessian_kind="degenerate", distance=LIMIT_DISTANCE)
    assert edge.flow_limit == "the flow's limit"
    assert dataclasses.replace(c, certified=False).flow_limit is None


def _halvings_missed(rels) -> list:
    """Per iteration, how many in a row have not halved the relative residual since it last
    did (the rule of ``max_stall``, written from its docstring; no drop in these traces)."""
    anchor, since, out = np.inf, 0, []
    for r in rels:
        anchor, since = (r, 0) if r <= 0.5 * anchor else (anchor, since + 1)
        out.append(since)
    return out


def test_max_stall_stops_a_crawling_solve_where_the_residual_has_not_halved(unsettled):
    """From the unsettled start the solve crawls (1.9e-2 → 1.4e-2 over five iterations); with
    ``max_stall = 5`` it stops at the fifth iteration without halving, on the same path as the
    unbounded solve, and says so; the unbounded one went on to max_iter."""
    problem, start, unbounded = unsettled
    fp = gf.equilibrium(problem, start, spectrum=False, max_stall=5)
    full = list(unbounded.relative_residuals)
    missed = _halvings_missed(full)
    stop = missed.index(5)  # the first iteration that is the fifth in a row without halving
    assert fp.message.startswith("stalled: the relative residual has not halved in 5 Newton")
    assert fp.iterations == stop < unbounded.iterations
    np.testing.assert_allclose(fp.relative_residuals, full[: stop + 1], rtol=1e-12)
    assert not fp.certified and fp.certificate.verdict == "not settled"


def test_max_stall_leaves_a_solve_that_halves_in_time_alone(settled):
    """The settled start's certified solve misses three halvings (its joins) before Newton's
    quadratic phase: ``max_stall = 4`` certifies the same point in the same iterations,
    ``max_stall = 3`` stops it (so the count is exact, not a loose budget)."""
    problem, start, fp = settled
    missed = _halvings_missed(fp.relative_residuals)
    assert max(missed) == 3, fp.relative_residuals
    kept = gf.equilibrium(problem, start, spectrum=False, max_stall=4)
    assert kept.certified and kept.iterations == fp.iterations
    for a, b in zip(jax.tree.leaves(kept.state), jax.tree.leaves(fp.state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-14)
    cut = gf.equilibrium(problem, start, spectrum=False, max_stall=3)
    assert not cut.certified and cut.message.startswith("stalled")
    assert cut.iterations == missed.index(3)


def test_a_solve_that_ends_worse_than_its_start_returns_the_start(monkeypatch, settled):
    """Planted: the solve's point is moved off by 1% and its residual reported as 10× the
    start's; gf.equilibrium must return the start itself, and say so."""
    import gradflow.analysis._equilibrium as eq

    problem, start, _ = settled
    real = eq.filippov_solve

    def worse(problem, state, **options):
        sol, template, manifold, flat0 = real(problem, state, **options)
        if options["max_iter"] > 0:
            rng = np.random.default_rng(0)
            sol.flat = sol.flat + 0.01 * np.linalg.norm(sol.flat) * rng.standard_normal(
                sol.flat.shape
            ) / np.sqrt(sol.flat.size)
            sol.relative_residuals = sol.relative_residuals + [10 * sol.relative_residuals[0]]
        return sol, template, manifold, flat0

    monkeypatch.setattr(eq, "filippov_solve", worse)
    fp = gf.equilibrium(problem, start, spectrum=False, flow_time=0.0)
    assert "the start is returned" in fp.message, fp.describe()
    for a, b in zip(jax.tree.leaves(fp.state), jax.tree.leaves(start)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not fp.certified


def test_equilibrium_refuses_a_run_that_stopped_at_max_steps():
    problem = _problem()
    tr = gf.flow(problem, t1=10.0, max_steps=4, throw=False)
    assert tr.stats["status"] == "max_steps"
    with pytest.raises(ValueError, match=r"equilibrium: state=<a Trajectory with status "):
        gf.equilibrium(problem, tr)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"switch_tol": 0.0},
            r"equilibrium: switch_tol=0.0 is not allowed; use a number in \(0, 1\)",
        ),
        ({"flow_time": -1.0}, r"equilibrium: flow_time=-1.0 is not allowed; use a number in \[0, "),
        ({"max_changes": 1.5}, r"equilibrium: max_changes=1.5 is not allowed; use an integer >= 0"),
        ({"identity_tol": float("nan")}, r"equilibrium: identity_tol=nan is not allowed"),
        ({"max_stall": 0}, r"equilibrium: max_stall=0 is not allowed; use an integer >= 1, or "),
        ({"max_stall": 2.0}, r"equilibrium: max_stall=2.0 is not allowed; use an integer >= 1"),
    ],
)
def test_filippov_bad_input_is_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        gf.equilibrium(_problem(), **kwargs)
    assert "\n" not in str(info.value)
