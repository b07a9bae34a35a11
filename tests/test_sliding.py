"""The sliding (Filippov) flow (THEORY 3.6): :class:`gradflow.diffrax_ext.SlidingSolver`.

Checked against computations written here: the Jacobian ``C`` of the pre-activations held at
zero by ``jax.jacrev`` of the whole network (not the solver's per-sample rows), the projection
``−P(∇L + Cᵀμ)`` by a dense least-squares solve, and, on a one-hidden-layer net, the Filippov
residual of the flow's end by a NumPy gradient written by hand.
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow._switching import forward  # the library's own numbering
from gradflow.diffrax_ext import SlidingSolver, _sliding
from gradflow.dynamics._core import run_stats
from gradflow.models import MLP

LAM = 0.1


def _problem(normalization="none", width=8, n=16, precision=None):
    data = gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=6, seed=0)
    net = MLP(6, (width, width), 1, key=jax.random.PRNGKey(0))
    return gf.Problem(net, data, weight_decay=LAM, normalization=normalization, precision=precision)


def _flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])


def _held(problem, state, count=6):
    """``count`` entries of both hidden layers with the smallest ``|z|`` (as a candidate S)."""
    z = forward(problem.model, problem.to_weights(state), problem.x_train)[1]
    order = np.argsort(np.abs(np.asarray(z)).ravel())
    return jnp.asarray(order[:count], jnp.int32)


def _parts(problem, state, rows):
    """The sliding field ``v`` with every candidate held (α test off, γ = 0), its active
    mask, ``v₀``, and, computed here: ``C = ∂z_S/∂state`` (|S| × P) by reverse mode through the
    whole network, and ``P Cᵀ`` (the velocity map applied to each row of C)."""
    v0 = problem.velocity(state)
    mask = jnp.ones(rows.shape, bool)
    wide = SlidingSolver(alpha_tol=np.inf, signal_tol=0.0)
    v, active = _sliding.sliding_velocity(wide, problem, state, v0, rows, mask, 0.0)

    def z_s(s):
        z = forward(problem.model, problem.to_weights(s), problem.x_train)[1]
        return jnp.ravel(z)[rows]

    flat, unflat = jax.flatten_util.ravel_pytree(state)
    c = jax.jacrev(lambda f: z_s(unflat(f)))(flat)
    pc = jax.vmap(lambda r: -_flat(problem.velocity_from_grad(state, unflat(r))))(c)
    return _flat(v), active, _flat(v0), c, pc


_jit_parts = eqx.filter_jit(_parts)


@functools.lru_cache
def _check(normalization):
    problem = _problem(normalization)
    state = problem.initial_state()
    rows = _held(problem, state)
    return [np.asarray(a) for a in _jit_parts(problem, state, rows)]


@pytest.mark.parametrize("normalization", ["none", "lm-last", "wn"])
def test_the_sliding_field_keeps_z_s_fixed_and_differs_from_the_velocity_by_p_c_transpose(
    normalization,
):
    """C v = 0, and v − v₀ = −P Cᵀ μ for some μ (the projection in the parametrization's
    metric), both to float64 precision, against a dense C from jax.jacrev."""
    v, active, v0, c, pc = _check(normalization)
    assert active.all()
    scale = np.linalg.norm(c, axis=1) * np.linalg.norm(v0)
    assert np.max(np.abs(c @ v) / scale) < 1e-12
    assert np.max(np.abs(c @ v0) / scale) > 1e-3  # the constraint is not trivial
    mu, *_ = np.linalg.lstsq(pc.T, v0 - v, rcond=None)
    assert np.linalg.norm(pc.T @ mu - (v0 - v)) <= 1e-12 * np.linalg.norm(v0)


def test_a_planted_euclidean_projection_fails_the_metric_check(monkeypatch):
    """The check above fails for LM-last when the projection forgets the metric P."""
    monkeypatch.setattr(_sliding, "_metric_rows", lambda problem, y, rows: rows)
    fresh = eqx.filter_jit(lambda *a: _parts(*a))  # a new function: traced with the patch
    v, _, v0, c, _ = [np.asarray(a) for a in fresh(*_args("lm-last"))]
    scale = np.linalg.norm(c, axis=1) * np.linalg.norm(v0)
    assert np.max(np.abs(c @ v) / scale) > 1e-6


def _args(normalization):
    problem = _problem(normalization)
    state = problem.initial_state()
    return problem, state, _held(problem, state)


def test_plain_projection_equals_the_orthogonal_projector():
    """Plain weights: the field is −Π ∇L with Π = I − Cᵀ(CCᵀ)⁻¹C, formed densely (to the
    solver's relative Cholesky jitter, 1e3·eps, times the conditioning of CCᵀ)."""
    v, _, v0, c, _ = _check("none")
    assert np.linalg.matrix_rank(c) == c.shape[0]
    ref = v0 - c.T @ np.linalg.solve(c @ c.T, c @ v0)
    assert np.linalg.norm(v - ref) <= 1e-10 * np.linalg.norm(v0)


# ---- the flow ---------------------------------------------------------------------------------


def _one_layer(n=16, width=8):
    data = gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=6, seed=0)
    net = MLP(6, (width,), 1, key=jax.random.PRNGKey(0))
    return gf.Problem(net, data, weight_decay=LAM, normalization="none")


def _solve(problem, solver, t1, rtol, y0=None):
    term = diffrax.ODETerm(lambda t, y, args: args.velocity(y))
    controller = gf.diffrax_ext.FloorController(diffrax.PIDController(rtol=rtol, atol=rtol), 1e-4)

    @eqx.filter_jit
    def go(y0):
        sol = diffrax.diffeqsolve(
            term,
            solver,
            0.0,
            t1,
            1e-3,
            y0,
            args=problem,
            stepsize_controller=controller,
            saveat=diffrax.SaveAt(ts=jnp.linspace(0, t1, 5), solver_state=True),
            max_steps=100_000,
        )
        return sol.ys, sol.stats, sol.solver_state

    return go(problem.initial_state() if y0 is None else y0)


def test_without_switching_the_sliding_solver_is_its_inner_solver():
    """Over a span where no pre-activation reaches zero, S stays empty and the run is the
    inner solver's, step for step (the field is v₀ + 0)."""
    problem = _one_layer()
    ys_in, stats_in, _ = _solve(problem, diffrax.Heun(), 0.05, 1e-6)
    ys, stats, state = _solve(problem, SlidingSolver(diffrax.Heun()), 0.05, 1e-6)
    record = gf.diffrax_ext.sliding_record(state)
    assert int(record.num_joins) == 0 and int(record.size_max) == 0
    assert int(stats["num_steps"]) == int(stats_in["num_steps"])
    np.testing.assert_array_equal(np.asarray(ys["w"][0]), np.asarray(ys_in["w"][0]))


def test_float32_problem_with_a_float64_state_as_diffrax_holds_it():
    """A float32 problem's state is float64 inside Diffrax (x64 on): the field comes back in the
    state's dtype and keeps z_S fixed to float32 precision."""
    problem = _problem("lm-last", precision="float32")
    state = jax.tree.map(lambda a: a.astype(jnp.float64), problem.initial_state())
    rows = _held(problem, state)
    parts = _jit_parts(problem, state, rows)
    assert parts[0].dtype == jnp.float64
    v, _, v0, c, _ = [np.asarray(a, np.float64) for a in parts]
    scale = np.linalg.norm(c, axis=1) * np.linalg.norm(v0)
    assert np.max(np.abs(c @ v) / scale) < 1e-5
    assert np.max(np.abs(c @ v0) / scale) > 1e-3


@pytest.mark.parametrize("normalization", ["none", "lm-all", "lm-last", "wn"])
def test_factored_gram_equals_the_dense_one(normalization):
    """The MLP path's ``C P Cᵀ``, ``C ẇ₀`` and ``Cᵀμ`` from the rows' factors equal the dense
    path's (rows by reverse mode, the metric applied row by row) to float64 precision."""
    problem, state, rows = _args(normalization)

    @eqx.filter_jit
    def both(problem, state, rows):
        v0 = problem.velocity(state)
        weights = problem.network_weights(state)
        w_state, w_dot = jax.jvp(problem.to_weights, (state,), (v0,))
        out = []
        for system in (_sliding._mlp_system, _sliding._dense_system):
            z, g, gram, rhs, transpose = system(
                problem, state, v0, rows, weights, tuple(w_state), w_dot
            )
            mu = jnp.linspace(-1.0, 1.0, rows.shape[0])
            out.append((z, g, gram, rhs, _flat(transpose(mu))))
        return out

    fast, dense = both(problem, state, rows)
    for a, b in zip(fast, dense):
        a, b = np.asarray(a), np.asarray(b)
        assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))


def test_run_stats_carry_the_sliding_record_found_in_a_wrapped_state():
    """The hook of ``gf.flow``'s stats: the :class:`SlidingRecord` is found inside a wrapped
    solver state (as ``ProjectedSolver`` nests it) and its counts land in the stats; a state
    without one adds none. (Cheap: no compilation. The same through ``gf.flow`` on a 6-4-4-1
    net was checked once, at about 15 s of compilation: ``sliding_steps`` equal to
    ``num_accepted_steps``.)"""
    record = _sliding.SlidingRecord(*[jnp.asarray(v, jnp.int32) for v in (3, 7, 20, 5, 9, 6, 0, 4)])
    state = ((jnp.zeros(2), {"inner": record}), None)
    found = gf.diffrax_ext.sliding_record(state)
    raw = {
        "stats": {"num_steps": 6, "num_accepted_steps": 5, "num_rejected_steps": 1},
        "success": True,
        "max_steps_reached": False,
        "t": np.array([0.0, 1.0]),
        "obs": {"loss": np.array([1.0, 0.5])},
        "t_end": 1.0,
        "num_floor_steps": 0,
        "num_floor_rejections": 0,
        "sliding": found,
    }
    stats = run_stats(raw)
    assert stats["sliding_size"] == 3 and stats["sliding_size_max"] == 7
    assert stats["sliding_size_mean"] == 4.0 and stats["sliding_steps"] == 5
    assert (stats["sliding_joins"], stats["sliding_leaves"], stats["sliding_resets"]) == (9, 6, 4)
    assert gf.diffrax_ext.sliding_record(state[0][0]) is None
    assert not any(k.startswith("sliding_") for k in run_stats(dict(raw, sliding=None)))


def test_an_entry_held_at_index_zero_stays_held_beside_padding_rows():
    """The set S is padded with index 0 (``_select`` fills with 0, masked out): rebuilding the
    held mask must not let a padding row's False overwrite a held row 0 (a scatter with
    repeated indices keeps one write; that bug dropped entry 0 from S at every step)."""
    rows = jnp.asarray([0, 3, 0, 0], jnp.int32)
    mask = jnp.asarray([True, True, False, False])
    keep = mask  # both valid rows stay
    held = _sliding._held(rows, mask, keep, 5)
    np.testing.assert_array_equal(np.asarray(held), [True, False, False, True, False])
    # a valid row that leaves is unset, a padding row changes nothing
    held = _sliding._held(rows, mask, jnp.asarray([False, True, False, False]), 5)
    np.testing.assert_array_equal(np.asarray(held), [False, False, False, True, False])
