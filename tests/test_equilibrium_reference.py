"""gf.equilibrium against references written here: residuals, line search, fallback, texts.

The reference problem is ``test_equilibrium.py``'s whitened two-layer linear network
``f = W2 W1 x`` (``(1/N) Σ_n x_n x_nᵀ = I``, ``y_n = M x_n``), whose loss is
``||W2 W1 − M||_F² + const + (λ/2)(||W1||² + ||W2||²)``. Its gradient, written here in NumPy,

    ∇_{W1} L = 2 W2ᵀ (W2 W1 − M) + λ W1,        ∇_{W2} L = 2 (W2 W1 − M) W1ᵀ + λ W2,

is the sum of the three cancelling terms of ``gradflow.analysis._equilibrium``'s scale: the
fit ``(2 W2ᵀ W2 W1, 2 W2 W1 W1ᵀ)``, the signal ``(−2 W2ᵀ M, −2 M W1ᵀ)`` and the decay
``(λ W1, λ W2)``. The plain velocity is ``F = −∇L`` and its Jacobian ``J = −H`` (``H`` the
Hessian of the loss written here, by ``jax.hessian``), so the steepest-descent fallback of the
module docstring, ``d = −Jᵀ F = −H ∇L``, has the linearized optimum
``α* = −⟨F, J d⟩ / ||J d||² = ||H ∇L||² / ||H² ∇L||²``.

Where a branch of the solver is reached only by a failure (a Newton direction that does not
reduce ``||F||``, a fallback that cannot either, a Filippov solve that ends worse than its
start), the failure is planted by replacing the piece that fails, and the rest is checked
against the rule of the module docstring (``||F|| ≤ (1 − 10⁻⁴ α) ||F||_old``, halving ``α``
from 1) computed here. The texts (``describe``, ``repr``, every refusal) are compared in full.
"""

import dataclasses
import math
import types
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf
import gradflow.analysis._equilibrium as eq
import gradflow.testing as gft
from gradflow.analysis._certificate import THRESHOLDS
from gradflow.analysis._switching import entry_layer
from gradflow.models import MLP, DeepLinear

N_IN, D, N_OUT, N = 4, 2, 3, 12
SING = np.array([3.0, 2.0, 1.0])
LAM = 1.5
RNG = np.random.default_rng(0)
X = np.sqrt(N) * np.linalg.qr(RNG.normal(size=(N, N_IN)))[0]  # (1/N) XᵀX = I
U, V, Q = (np.linalg.qr(RNG.normal(size=(k, k)))[0] for k in (N_OUT, N_IN, D))
M = U @ np.diag(SING) @ V[:, : len(SING)].T
DATA = gf.data.Dataset("whitened", X, X @ M.T)
MU = SING[:D] - LAM / 2
W1 = Q @ np.diag(np.sqrt(MU)) @ V[:, :D].T  # the balanced global minimum
W2 = U[:, :D] @ np.diag(np.sqrt(MU)) @ Q.T

LINEAR = gft.architecture(
    "two-layer-linear",
    lambda k, s: DeepLinear(N_IN, (D,), N_OUT, init_scale=s, key=k),
    (N_IN,),
    N_OUT,
)


def _problem(**kwargs):
    return gf.Problem(gft.build_network(LINEAR, 0), DATA, weight_decay=LAM, **kwargs)


def _state(w1, w2):
    return {"w": (jnp.asarray(w1), jnp.asarray(w2))}


def _start(size, seed=1):
    rng = np.random.default_rng(seed)
    return _state(W1 + size * rng.normal(size=W1.shape), W2 + size * rng.normal(size=W2.shape))


def _weights(state):
    return tuple(np.asarray(w, dtype=float) for w in state["w"])


def _terms(w1, w2):
    """The gradients of the fit, signal and decay terms (module docstring)."""
    p = w2 @ w1
    return (
        (2 * w2.T @ p, 2 * p @ w1.T),
        (-2 * w2.T @ M, -2 * M @ w1.T),
        (LAM * w1, LAM * w2),
    )


def _flat(parts):
    return np.concatenate([np.ravel(p) for p in parts])


def _gradient(w1, w2):
    return sum(_flat(t) for t in _terms(w1, w2))


def _residual(w1, w2):
    """``(||F||, ||F|| / scale)`` from the NumPy gradient."""
    r = float(np.linalg.norm(_gradient(w1, w2)))
    scale = sum(float(np.linalg.norm(_flat(t))) for t in _terms(w1, w2))
    return r, (0.0 if r == 0 else r / scale)


def _unflat(z):
    return z[: D * N_IN].reshape(D, N_IN), z[D * N_IN :].reshape(N_OUT, D)


def _hessian(w1, w2):
    def loss(z):
        a, b = z[: D * N_IN].reshape(D, N_IN), z[D * N_IN :].reshape(N_OUT, D)
        return jnp.sum((b @ a - M) ** 2) + LAM / 2 * (jnp.sum(a**2) + jnp.sum(b**2))

    return np.asarray(jax.hessian(loss)(jnp.asarray(_flat((w1, w2)))))


# ---- FixedPoint: the fitted order and the texts ---------------------------------------------


def _fixed_point(relative, **changes):
    fields = dict(
        state=None,
        converged=True,
        iterations=len(relative) - 1,
        residuals=10 * np.asarray(relative),
        relative_residuals=np.asarray(relative),
        steps=np.ones(len(relative) - 1),
        linear_steps=np.zeros(len(relative) - 1, dtype=int),
        linear_residuals=np.zeros(len(relative) - 1),
        pattern_flips=None,
        pattern_changed=False,
        spectrum=None,
        message="tolerance reached",
    )
    return eq.FixedPoint(**{**fields, **changes})


def _slope(pairs):
    """Least squares slope of ``log r_{k+1}`` on ``log r_k``, written out."""
    x, y = np.log(np.asarray(pairs, dtype=float)).T
    return float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))


# a pre-asymptotic start, then r_{k+1} = 4 r_k^2, then a last residual at the rounding floor
PLANTED = [0.5, 0.45, 0.02, 1.6e-3, 1.024e-5, 4.194304e-10, 3e-17]


@pytest.mark.parametrize(
    "relative, kwargs, pairs",
    [
        # the last three pairs whose r_{k+1} is above the default floor 1e-14: exactly order 2
        (PLANTED, {}, [(0.02, 1.6e-3), (1.6e-3, 1.024e-5), (1.024e-5, 4.194304e-10)]),
        # last=5 reaches back into the pre-asymptotic pairs
        (
            PLANTED,
            {"last": 5},
            [
                (0.5, 0.45),
                (0.45, 0.02),
                (0.02, 1.6e-3),
                (1.6e-3, 1.024e-5),
                (1.024e-5, 4.194304e-10),
            ],
        ),
        # a floor above the last iterate drops its pair
        (PLANTED, {"floor": 1e-9}, [(0.45, 0.02), (0.02, 1.6e-3), (1.6e-3, 1.024e-5)]),
        # a residual exactly at the floor is not above it
        ([0.3, 0.1, 0.02, 1e-3, 1e-14], {}, [(0.3, 0.1), (0.1, 0.02), (0.02, 1e-3)]),
        # the last residual above the floor: its pair counts
        ([0.3, 0.1, 0.02, 1e-3, 1e-13], {}, [(0.1, 0.02), (0.02, 1e-3), (1e-3, 1e-13)]),
        # exactly two pairs: the line through them
        ([0.5, 0.1, 1e-3], {}, [(0.5, 0.1), (0.1, 1e-3)]),
        ([0.5, 0.1, 1e-3, 1e-20], {}, [(0.5, 0.1), (0.1, 1e-3)]),
    ],
)
def test_convergence_order_is_the_least_squares_exponent_above_the_floor(relative, kwargs, pairs):
    fp = _fixed_point(relative)
    assert fp.convergence_order(**kwargs) == pytest.approx(_slope(pairs), rel=1e-12, abs=0)


def test_convergence_order_on_an_exact_power_law_and_with_too_few_pairs():
    assert _fixed_point(PLANTED).convergence_order() == pytest.approx(2.0, rel=1e-9, abs=0)
    assert _fixed_point([1e-2, 1e-6, 1e-18]).convergence_order(floor=1e-10) != 2.0  # one pair
    assert math.isnan(_fixed_point([1e-2, 1e-6, 1e-18]).convergence_order(floor=1e-10))
    assert math.isnan(_fixed_point([1e-2, 1e-6]).convergence_order())
    assert math.isnan(_fixed_point([1e-2]).convergence_order())


class _Spectrum:
    def describe(self):
        return "1 negative, 2 zero (2 explained by symmetries), 11 positive: saddle"

    kind = "saddle"


HEAD = (
    "converged after 2 Newton iterations (tolerance reached); |velocity| = 1.235e-13 "
    "(relative 4.560e-15)"
)
RELATIVES = "relative residuals: 1.0e-02 3.0e-06 4.6e-15"


@pytest.mark.parametrize(
    "changes, lines",
    [
        ({}, []),
        ({"pattern_flips": np.array([0, 0, 0])}, ["pattern: unchanged"]),
        (
            {"pattern_flips": np.array([0, 3, 2]), "pattern_changed": True},
            ["pattern: changed (at most 3 entries)"],
        ),
        ({"spectrum": _Spectrum()}, ["spectrum"]),
        (
            {"pattern_flips": np.array([0, 1]), "pattern_changed": True, "spectrum": _Spectrum()},
            ["pattern: changed (at most 1 entries)", "spectrum"],
        ),
    ],
)
def test_describe_and_repr_of_a_smooth_fixed_point_in_full(changes, lines):
    fp = _fixed_point([1e-2, 3e-6, 4.56e-15], residuals=np.array([1.0, 1e-4, 1.235e-13]), **changes)
    extra = [
        "ReLU activation pattern on the training set: " + line.removeprefix("pattern: ")
        if line.startswith("pattern")
        else "Hessian: " + _Spectrum().describe()
        for line in lines
    ]
    assert fp.describe() == "\n".join([f"fixed point: {HEAD}", RELATIVES, *extra])
    assert repr(fp) == "FixedPoint: " + "\n  ".join([HEAD, *extra])
    not_converged = dataclasses.replace(fp, converged=False, message="max_iter = 2 reached")
    assert not_converged.describe().split("\n")[0] == (
        f"fixed point: NOT {HEAD.replace('tolerance reached', 'max_iter = 2 reached')}"
    )
    assert fp.certified and not not_converged.certified
    assert fp.kind == (None if fp.spectrum is None else "saddle")


@pytest.mark.parametrize(
    "certified, spectrum",
    [(True, None), (False, None), (True, _Spectrum()), (False, _Spectrum())],
)
def test_describe_and_repr_of_a_filippov_point_in_full(certified, spectrum):
    cert = types.SimpleNamespace(
        certified=certified,
        verdict="certified" if certified else "not settled",
        describe=lambda: "certificate: every check passed\n  (two lines)",
    )
    fp = _fixed_point(
        [2e-3, 5e-7, 8e-14],
        certificate=cert,
        spectrum=spectrum,
        converged=not certified,  # the certificate, not `converged`, decides
        message="Newton converged",
    )
    head = "fixed point" if certified else "NOT a fixed point"
    first = (
        f"{head} (Filippov, THEORY 3.6): {cert.verdict} after 2 Newton iterations "
        "(Newton converged)"
    )
    rest = [cert.describe()] + (
        [] if spectrum is None else ["Hessian (slopes 0 on S): " + spectrum.describe()]
    )
    assert fp.describe() == "\n".join([first, "relative residuals: 2.0e-03 5.0e-07 8.0e-14", *rest])
    lines = "\n".join([first, *rest]).split("\n")  # the certificate's lines indented too
    assert repr(fp) == "FixedPoint: " + "\n  ".join(lines)
    assert fp.certified is certified


# ---- refusals, word for word ------------------------------------------------------------------

INTEGER = "use an integer >= 1"
REFUSED = [
    ("tol", 0.0, "use a number > 0"),
    ("tol", -1e-3, "use a number > 0"),
    ("tol", math.inf, "use a number > 0"),
    ("tol", True, "use a number > 0"),
    ("tol", "1e-3", "use a number > 0"),
    ("atol", -1.0, "use a number >= 0"),
    ("atol", math.inf, "use a number >= 0"),
    ("atol", True, "use a number >= 0"),
    ("atol", "0", "use a number >= 0"),
    ("max_iter", 0, INTEGER),
    ("max_iter", True, INTEGER),
    ("max_iter", 2.5, INTEGER),
    ("max_backtracks", 0, INTEGER),
    ("max_backtracks", True, INTEGER),
    ("lanczos_iter", 0, INTEGER + ", or None"),
    ("lanczos_iter", 1.5, INTEGER + ", or None"),
    ("gmres_restart", 0, INTEGER + ", or None"),
    ("gmres_restart", True, INTEGER + ", or None"),
    ("zero_tol", 1.0, "use a number in [0, 1)"),
    ("zero_tol", 1.5, "use a number in [0, 1)"),
    ("zero_tol", -0.1, "use a number in [0, 1)"),
    ("zero_tol", True, "use a number in [0, 1)"),
    ("linear_solver", "cg", "use 'lsmr' or 'gmres'"),
    ("linear_solver", "LSMR", "use 'lsmr' or 'gmres'"),
    ("forcing", 0.0, "use a number in (0, 1), or None"),
    ("forcing", 1.0, "use a number in (0, 1), or None"),
    ("forcing", 1.5, "use a number in (0, 1), or None"),
    ("forcing", True, "use a number in (0, 1), or None"),
    ("switch_tol", 0.0, "use a number in (0, 1)"),
    ("switch_tol", 1.0, "use a number in (0, 1)"),
    ("switch_tol", -0.5, "use a number in (0, 1)"),
    ("switch_tol", math.nan, "use a number in (0, 1)"),
    ("switch_tol", True, "use a number in (0, 1)"),
    ("switch_tol", "a", "use a number in (0, 1)"),
    ("dying_tol", -0.1, "use a number in [0, 1)"),
    ("dying_tol", 1.0, "use a number in [0, 1)"),
    ("alpha_tol", -0.1, "use a number in [0, 1)"),
    ("alpha_tol", 1.0, "use a number in [0, 1)"),
    ("filippov_tol", 0.0, "use a number in (0, 1)"),
    ("filippov_tol", 1.0, "use a number in (0, 1)"),
    ("identity_tol", 0.0, "use a number in (0, 1)"),
    ("identity_tol", 1.0, "use a number in (0, 1)"),
    ("flow_tol", 0.0, "use a number in (0, 1)"),
    ("flow_tol", 1.0, "use a number in (0, 1)"),
    ("settled_tol", 0.0, "use a number in (0, inf)"),
    ("settled_tol", math.inf, "use a number in (0, inf)"),
    ("flow_time", -1.0, "use a number in [0, inf)"),
    ("flow_time", math.inf, "use a number in [0, inf)"),
    ("max_changes", -1, "use an integer >= 0"),
    ("max_changes", 1.5, "use an integer >= 0"),
    ("max_changes", True, "use an integer >= 0"),
    ("dense_max", -1, "use an integer >= 0"),
]


@pytest.mark.parametrize("name, value, allowed", REFUSED)
def test_every_refusal_word_for_word(name, value, allowed):
    with pytest.raises(ValueError) as info:
        gf.equilibrium(_problem(), **{name: value})
    assert str(info.value) == f"equilibrium: {name}={value!r} is not allowed; {allowed}"


def test_the_edges_of_every_range_are_accepted():
    """Each argument at the edge of its range (and NumPy scalars), at a fixed point, where
    Newton has nothing to do; the ReLU path's arguments are accepted and unused here."""
    edges = dict(
        tol=np.float64(1e-12),
        atol=0.0,
        max_iter=1,
        max_backtracks=np.int64(1),
        lanczos_iter=1,
        gmres_restart=1,
        zero_tol=0.0,
        forcing=0.999,
        switch_tol=0.999,
        dying_tol=0.0,
        alpha_tol=0.0,
        filippov_tol=1e-300,
        identity_tol=0.999,
        flow_tol=0.5,
        settled_tol=1e300,
        flow_time=0.0,
        max_changes=0,
        dense_max=0,
    )
    for solver in ("lsmr", "gmres"):
        fp = gf.equilibrium(
            _problem(), _state(W1, W2), spectrum=False, linear_solver=solver, **edges
        )
        assert fp.converged and fp.iterations == 0 and fp.message == "tolerance reached"


# ---- the start ---------------------------------------------------------------------------------


def _trajectory(params, status="success", **changes):
    stats = {"t_reached": 2.5} if status is None else {"status": status, "t_reached": 2.5}
    fields = dict(
        kind="flow",
        t=np.array([0.0, 2.5]),
        observables={},
        dims={},
        final_params=tuple(np.asarray(w) for w in params),
        stats=stats,
        config={},
    )
    return gf.Trajectory(**{**fields, **changes})


@pytest.mark.parametrize("status", ["diverged", "blew_up", "interrupted", "max_steps"])
def test_a_failed_run_is_refused_word_for_word(status):
    with pytest.raises(ValueError) as info:
        gf.equilibrium(_problem(), _trajectory((W1, W2), status))
    assert str(info.value) == (
        f"equilibrium: state=<a Trajectory with status {status!r}, t_reached = 2.5> is not "
        "allowed; its run failed, and its end is no flow's: start from a successful run, or "
        "pass a state explicitly"
    )


@pytest.mark.parametrize("status", ["success", None])
def test_non_finite_weights_are_refused_whatever_the_status(status):
    """A run without a status counts as successful; its non-finite end is refused all the same."""
    with pytest.raises(ValueError) as info:
        gf.equilibrium(_problem(), _trajectory((W1, W2 * np.nan), status))
    assert str(info.value) == (
        "equilibrium: state=<a Trajectory with status 'success', t_reached = 2.5> is not "
        "allowed; its run failed, and its end is no flow's: start from a successful run, or "
        "pass a state explicitly"
    )


def test_an_ensemble_and_a_state_of_the_wrong_shapes_are_refused_word_for_word():
    p = _problem()
    with pytest.raises(ValueError) as info:
        gf.equilibrium(p, _trajectory((W1, W2), seeds=np.arange(3)))
    assert str(info.value) == (
        "equilibrium: state='a Trajectory of 3 seeds' is not allowed; use one state, e.g. "
        "jax.tree.map(lambda x: x[i], trajectory.final_state)"
    )
    wrong = {"w": (np.zeros((D, N_IN)), np.zeros((D, N_OUT)))}  # the structure is right
    with pytest.raises(ValueError) as info:
        gf.equilibrium(p, wrong)
    assert str(info.value) == (
        "equilibrium: state=\"a dict of structure PyTreeDef({'w': (*, *)})\" is not allowed; use "
        "a state of this problem's parametrization (none): structure PyTreeDef({'w': (*, *)}), "
        f"leaf shapes [({D}, {N_IN}), ({N_OUT}, {D})]"
    )


def test_the_start_is_the_trajectory_end_or_the_initial_state():
    """A Trajectory starts from its final state (not its final weights, when it has both),
    from its final weights without one, and no state means the network's own weights: the
    first residual is the NumPy gradient's norm there."""
    p = _problem()
    near, far = _start(0.01), _start(0.05, seed=2)

    def first(state):
        return gf.equilibrium(p, state, max_iter=1, spectrum=False).residuals[0]

    with_state = _trajectory(_weights(far), final_state=near)
    assert first(with_state) == pytest.approx(_residual(*_weights(near))[0], rel=1e-9, abs=0)
    assert first(_trajectory(_weights(far))) == pytest.approx(
        _residual(*_weights(far))[0], rel=1e-9
    )
    own = tuple(np.asarray(w) for w in gft.build_network(LINEAR, 0).weights)
    assert first(None) == pytest.approx(_residual(*own)[0], rel=1e-9, abs=0)


def test_a_float32_problem_takes_its_start_in_float32():
    """The start is cast to the problem's precision: a float64 fixed point given to a float32
    problem is returned (no iteration is needed at tol = 1e-5) as float32 weights."""
    p = _problem(precision="float32")
    fp = gf.equilibrium(p, _state(W1, W2), tol=1e-5, spectrum=False)
    assert fp.converged and fp.iterations == 0
    assert [w.dtype for w in fp.state["w"]] == [jnp.float32, jnp.float32]
    np.testing.assert_allclose(_flat(_weights(fp.state)), _flat((W1, W2)), rtol=1e-6)


# ---- the smooth solve: residuals, stopping, the line search ----------------------------------


@pytest.mark.parametrize("size", [0.01, 1e-3])
def test_one_newton_step_and_its_residuals_against_numpy(size):
    """At 1% off the minimum and near the zero saddle (where the scale of the cancelling terms
    is below 1), the residuals before and after one Newton step are the NumPy gradient's."""
    p = _problem()
    start = _start(size) if size > 0.005 else _state(*(size * w for w in (W1, W2)))
    fp = gf.equilibrium(p, start, max_iter=1, spectrum=False)
    before, after = _residual(*_weights(start)), _residual(*_weights(fp.state))
    np.testing.assert_allclose(fp.residuals, [before[0], after[0]], rtol=1e-9)
    np.testing.assert_allclose(fp.relative_residuals, [before[1], after[1]], rtol=1e-9)
    if size < 0.005:
        assert sum(np.linalg.norm(_flat(t)) for t in _terms(*_weights(start))) < 1
    assert fp.converged is False and fp.message == "max_iter = 1 reached" and fp.iterations == 1
    assert fp.steps.tolist() == [1.0] and after[0] < before[0]
    assert fp.linear_steps.dtype.kind == "i" and fp.linear_steps.shape == (1,)
    assert fp.linear_steps[0] >= 1 and 0 <= fp.linear_residuals[0] < 1e-3
    assert fp.pattern_flips.tolist() == [0, 0] and fp.pattern_changed is False


def test_the_zero_state_is_a_fixed_point_with_relative_residual_zero():
    fp = gf.equilibrium(_problem(), _state(0 * W1, 0 * W2), spectrum=False)
    assert fp.converged and fp.iterations == 0 and fp.message == "tolerance reached"
    assert fp.residual == 0.0 and fp.relative_residual == 0.0 and fp.spectrum is None
    assert fp.linear_steps.dtype.kind == "i" and fp.linear_steps.size == 0


def test_the_tolerances_are_reached_at_equality():
    """``relative residual ≤ tol`` and ``||F|| ≤ atol`` stop the solve at equality, inside the
    loop and after its last iteration: rerun with tol (or atol) set to the residual reached."""
    p = _problem()
    start = _start(0.01)
    fp = gf.equilibrium(p, start, spectrum=False)
    k, rel, res = fp.iterations, fp.relative_residuals[-1], fp.residuals[-1]
    assert fp.converged and k >= 3
    for kwargs in ({"tol": rel}, {"tol": 1e-300, "atol": res}):
        for max_iter in (k, k + 5):  # the last iteration, and the check at its top
            again = gf.equilibrium(p, start, spectrum=False, max_iter=max_iter, **kwargs)
            assert again.converged and again.message == "tolerance reached", (kwargs, max_iter)
            assert again.iterations == k and again.residuals[-1] == res
    short = gf.equilibrium(p, start, spectrum=False, max_iter=k - 1)
    assert not short.converged and short.message == f"max_iter = {k - 1} reached"
    np.testing.assert_array_equal(short.residuals, fp.residuals[:k])


def _planted_newton(factor, calls):
    real = eq._newton_direction

    def planted(problem, manifold, state, eta, method, restart, max_steps):
        delta, nsteps, lres = real(problem, manifold, state, eta, method, restart, max_steps)
        calls.append(np.asarray(ravel_pytree(delta)[0]))
        return jax.tree.map(lambda x: factor * x, delta), nsteps, lres

    return planted


@pytest.mark.parametrize("factor, alpha", [(0.5, 1.0), (3.0, 0.5)])
def test_the_line_search_accepts_the_first_halving_with_sufficient_decrease(factor, alpha):
    """Planted: the Newton direction scaled by ``factor``. Half a Newton step is accepted at
    ``α = 1``; three Newton steps overshoot (``||F||`` doubles) and ``α = 1/2`` is accepted.
    The accepted ``α`` is the first of 1, 1/2, ... with ``||F|| ≤ (1 − 10⁻⁴ α) ||F||_old``,
    with ``||F||`` the NumPy gradient's norm."""
    p = _problem()
    start = _start(0.01)
    calls = []
    with mock.patch.object(eq, "_newton_direction", _planted_newton(factor, calls)):
        fp = gf.equilibrium(p, start, max_iter=1, spectrum=False)
    z0, delta = _flat(_weights(start)), factor * calls[0]
    r0 = _residual(*_weights(start))[0]
    trial = 1.0
    while _residual(*_unflat(z0 + trial * delta))[0] > (1 - 1e-4 * trial) * r0:
        trial /= 2
    assert trial == alpha and fp.steps.tolist() == [alpha]
    np.testing.assert_allclose(
        _flat(_weights(fp.state)), z0 + alpha * delta, rtol=1e-12, atol=1e-15
    )
    assert fp.residuals[1] == pytest.approx(
        _residual(*_unflat(z0 + alpha * delta))[0], rel=1e-9, abs=0
    )


def _zero_newton(problem, manifold, state, eta, method, restart, max_steps):
    return jax.tree.map(jnp.zeros_like, state), jnp.asarray(0), jnp.asarray(1.0)


@pytest.mark.parametrize("shrink, halvings", [(1.0, 0), (3.0, 1)])
def test_the_steepest_descent_fallback_is_the_linearized_optimum(shrink, halvings):
    """Planted: a Newton direction of zero, which no step length makes decrease ``||F||``. The
    fallback step is ``α* d`` with ``d = −H ∇L`` and ``α* = ||H ∇L||² / ||H² ∇L||²`` (module
    docstring), recorded as ``−α*``. With ``J d`` reported a third of its size, the first trial
    is ``3 α*``, which overshoots; one halving gives ``1.5 α*``."""
    p = _problem()
    start = _start(1e-3)
    w1, w2 = _weights(start)
    g, h = _gradient(w1, w2), _hessian(w1, w2)
    d, jd = -h @ g, h @ h @ g
    alpha = float(g @ h @ h @ g) / float(jd @ jd)
    assert float(jd @ jd) < 1 and alpha < 1  # neither is needed to take the step
    real = eq._descent_direction

    def shrunk(problem, manifold, state):
        d_, jd_, vel = real(problem, manifold, state)
        return d_, jax.tree.map(lambda x: x / shrink, jd_), vel

    with (
        mock.patch.object(eq, "_newton_direction", _zero_newton),
        mock.patch.object(eq, "_descent_direction", shrunk),
    ):
        fp = gf.equilibrium(p, start, max_iter=1, max_backtracks=3, spectrum=False)
    r0 = _residual(w1, w2)[0]
    step = shrink * alpha / 2**halvings
    for k in range(halvings):  # the rejected trials really do not decrease ||F||
        assert _residual(*_unflat(_flat((w1, w2)) + shrink * alpha / 2**k * d))[0] >= r0
    assert fp.steps[0] == pytest.approx(-step, rel=1e-9, abs=0) and fp.iterations == 1
    z = _flat((w1, w2)) + step * d
    np.testing.assert_allclose(_flat(_weights(fp.state)), z, rtol=1e-9, atol=1e-14)
    assert fp.residuals[1] == pytest.approx(_residual(*_unflat(z))[0], rel=1e-9, abs=0)
    assert fp.residuals[1] < r0


@pytest.mark.parametrize("planted", ["zero", "zero_jd", "no_decrease"])
def test_a_solve_that_no_step_improves_stops_and_says_so(planted):
    """Planted: Newton fails, and the fallback either has ``J d = 0`` (no step length: with
    ``d = 0``, or with a real ``d``) or a step ``d = 0`` that leaves ``||F||`` unchanged (which
    is not a decrease). The solve stops at the start."""
    real = eq._descent_direction

    def descent(problem, manifold, state):
        d, jd, vel = real(problem, manifold, state)
        zero = jax.tree.map(jnp.zeros_like, d)
        if planted == "zero":
            return zero, zero, vel
        if planted == "zero_jd":
            return d, zero, vel
        return zero, jax.tree.map(jnp.negative, vel), vel  # α = ||F||² / ||F||² = 1

    with (
        mock.patch.object(eq, "_newton_direction", _zero_newton),
        mock.patch.object(eq, "_descent_direction", descent),
    ):
        fp = gf.equilibrium(_problem(), _start(0.01), spectrum=False)
    assert fp.converged is False and fp.iterations == 0 and fp.steps.size == 0
    assert fp.message == "no step reduces the residual (at the rounding floor, or stuck)"
    assert fp.residuals.shape == (1,)
    assert fp.residuals[0] == pytest.approx(_residual(*_weights(_start(0.01)))[0], rel=1e-9, abs=0)


def test_gmres_restarts_are_capped_at_four_cycles():
    """GMRES with a Krylov dimension of 2 on the 14-dimensional Newton system runs ``4 · 2``
    restart cycles, its cap, in each solve, and the second solve ends above its forcing
    tolerance (with the default dimension, the system's size, 3 cycles reach it)."""
    p = _problem()
    fp = gf.equilibrium(
        p, _start(0.01), max_iter=2, spectrum=False, linear_solver="gmres", gmres_restart=2
    )
    assert fp.linear_steps.tolist() == [8, 8], fp.linear_steps
    eta = np.minimum(1e-3, 1e-2 * fp.relative_residuals[:-1])
    assert fp.linear_residuals[1] > eta[1], (fp.linear_residuals, eta)


# ---- the activation pattern on the smooth path -----------------------------------------------


class _Signed(DeepLinear):
    """A linear network that reports its hidden layer as pre-activations: the signs of
    ``W1 x_n`` are its "activation pattern" (the flow stays smooth)."""

    def pre_activations(self, weights, x):
        return (weights[0] @ jnp.reshape(x, (-1,)),)


class _Opaque(DeepLinear):
    def pre_activations(self, weights, x):
        raise NotImplementedError("no pre-activations")


def test_pattern_flips_count_the_sign_changes_of_the_pre_activations():
    """From 30% off the minimum, Newton moves one pre-activation ``W1 x_n`` across zero: the
    flips recorded at the end are the sign changes counted here, the start's are 0."""
    net = _Signed(N_IN, (D,), N_OUT, key=jax.random.PRNGKey(0))
    p = gf.Problem(net, DATA, weight_decay=LAM)
    start = _start(0.3)
    fp = gf.equilibrium(p, start, spectrum=False)
    signs = [np.asarray(X @ _weights(s)[0].T > 0) for s in (start, fp.state)]
    changed = int(np.sum(signs[0] != signs[1]))
    assert fp.converged and changed >= 1
    assert fp.pattern_flips[0] == 0 and fp.pattern_flips[-1] == changed
    assert len(fp.pattern_flips) == fp.iterations + 1 and fp.pattern_changed is True
    assert f"changed (at most {int(np.max(fp.pattern_flips))} entries)" in fp.describe()

    opaque = gf.Problem(
        _Opaque(N_IN, (D,), N_OUT, key=jax.random.PRNGKey(0)), DATA, weight_decay=LAM
    )
    fp = gf.equilibrium(opaque, _start(0.01), spectrum=False)
    assert fp.converged and fp.pattern_flips is None and fp.pattern_changed is False
    assert "ReLU activation pattern" not in fp.describe()


# ---- the spectrum, and the ReLU path's bookkeeping -------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Spec:
    kind: str = "minimum"

    def describe(self):
        return "planted spectrum"


def _relu_problem():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 3))
    data = gf.data.Dataset("planted", x, np.sign(x[:, :1]))
    return gf.Problem(MLP(3, (4,), 1, key=jax.random.PRNGKey(0)), data, weight_decay=0.1)


class _Planted:
    """Stand-ins for the Filippov solve, its certificate and the spectrum, recording calls."""

    def __init__(
        self, rels, *, solved=True, cert=None, steps=(1, 0, 7, 7, 7), changes=(1, 2, 9, 9)
    ):
        self.rels, self.solved, self.steps, self.changes = rels, solved, steps, changes
        self.cert = cert or types.SimpleNamespace(certified=True, joins=0, drops=0, sign_flips=0)
        self.solves, self.certified, self.spectra = [], [], []

    def solve(self, problem, state, *, tol, **options):
        self.solves.append(dict(problem=problem, tol=tol, **options))
        flat0 = np.asarray(ravel_pytree(state)[0])
        first = options["max_iter"] > 0
        sol = types.SimpleNamespace(
            relative_residuals=list(self.rels) if first else [self.rels[0], 0.123],
            flat=flat0 + 1.0 if first else flat0,
            message="solve message" if first else "start message",
            solved=self.solved,
            steps=list(self.steps),
            changes=list(self.changes),
            first_step=0.5 if first else None,
        )
        return sol, state, "the manifold", flat0

    def certify(self, problem, sol, template, manifold, flat, **kwargs):
        self.certified.append(
            dict(
                problem=problem,
                rels=list(sol.relative_residuals),
                first_step=sol.first_step,
                template=template,
                manifold=manifold,
                flat=np.array(flat),
                **kwargs,
            )
        )
        return self.cert

    def spectrum(self, problem, state, **kwargs):
        self.spectra.append(dict(problem=problem, state=state, **kwargs))
        return _Spec()

    def patch(self):
        return mock.patch.multiple(
            eq, filippov_solve=self.solve, certify=self.certify, hessian_spectrum=self.spectrum
        )


def test_the_relu_path_passes_every_option_on():
    p = _relu_problem()
    state = p.initial_state()
    planted = _Planted([0.9, 0.5, 0.2, 1e-13])
    with planted.patch():
        fp = gf.equilibrium(p, state)  # the defaults
    assert planted.solves == [
        dict(
            problem=p,
            tol=1e-12,
            filippov_tol=THRESHOLDS["filippov_tol"],
            switch_tol=1e-2,
            dying_tol=1e-4,
            alpha_tol=THRESHOLDS["alpha_tol"],
            max_iter=50,
            max_changes=200,
            max_backtracks=30,
            dense_max=3000,
            sliding=None,
            join_window=0.01,
            max_stall=None,
        )
    ]
    (c,) = planted.certified
    assert c["thresholds"] == dict(
        tol=1e-12,
        filippov_tol=THRESHOLDS["filippov_tol"],
        alpha_tol=THRESHOLDS["alpha_tol"],
        identity_tol=THRESHOLDS["identity_tol"],
        flow_tol=THRESHOLDS["flow_tol"],
    )
    assert (c["flow_time"], c["settled_tol"], c["problem"], c["manifold"]) == (
        1.0,
        1e-3,
        p,
        "the manifold",
    )
    np.testing.assert_array_equal(c["start_flat"], ravel_pytree(state)[0])
    np.testing.assert_array_equal(ravel_pytree(c["template"])[0], c["start_flat"])
    np.testing.assert_array_equal(c["flat"], c["start_flat"] + 1.0)
    (s,) = planted.spectra
    assert (s["problem"], s["num_iter"], s["zero_tol"], s["seed"]) == (p, None, 1e-8, 0)
    assert fp.spectrum == _Spec() and fp.converged and fp.certificate is planted.cert
    np.testing.assert_array_equal(ravel_pytree(s["state"])[0], ravel_pytree(fp.state)[0])

    planted = _Planted([0.9, 0.5, 0.2, 1e-13])
    options = dict(
        tol=1e-6,
        switch_tol=0.02,
        dying_tol=0.003,
        alpha_tol=0.04,
        max_iter=7,
        max_changes=8,
        max_backtracks=9,
        dense_max=10,
        join_window=0.3,
        max_stall=12,
    )
    thresholds = dict(filippov_tol=0.05, identity_tol=0.06, flow_tol=0.07)
    with planted.patch():
        fp = gf.equilibrium(
            p,
            state,
            **options,
            **thresholds,
            flow_time=0.5,
            settled_tol=0.25,
            lanczos_iter=11,
            zero_tol=0.125,
            seed=3,
        )
    assert planted.solves == [dict(problem=p, sliding=None, filippov_tol=0.05, **options)]
    (c,) = planted.certified
    assert c["thresholds"] == dict(tol=1e-6, alpha_tol=0.04, **thresholds)
    assert (c["flow_time"], c["settled_tol"]) == (0.5, 0.25)
    (s,) = planted.spectra
    assert (s["num_iter"], s["zero_tol"], s["seed"]) == (11, 0.125, 3)
    assert fp.converged  # solved, and 1e-13 <= 1e-6
    with planted.patch():
        assert gf.equilibrium(p, state, spectrum=False).spectrum is None
    # the flow's evidence reaches the solve as the caller's (N, Z) mask
    n, z = np.shape(p.x_train)[0], np.size(entry_layer(p.model, p.x_train))
    mask = np.arange(n * z).reshape(n, z) % 3 == 0
    planted = _Planted([0.9, 0.5, 0.2, 1e-13])
    with planted.patch():
        gf.equilibrium(p, state, sliding=mask)
    (solve,) = planted.solves
    np.testing.assert_array_equal(solve["sliding"], mask)


@pytest.mark.parametrize(
    "cert, changed, certified",
    [
        (cert, changed, certified)
        for cert, changed in [
            ((1, 1, 0), True),
            ((0, 0, 0), False),
            ((0, 0, 1), True),
            ((1, 0, 0), True),
        ]
        for certified in (True, False)
    ],
)
def test_the_relu_path_builds_its_fixed_point_from_the_solve(cert, changed, certified):
    """The iterates are the solve's residuals after the start (the start's is the
    certificate's), the steps as many as the iterations (floats), the pattern changes after
    a leading 0; the pattern changed when the active set or a sign off it changed; an
    uncertified point's spectrum is called "uncertified"."""
    p = _relu_problem()
    state = p.initial_state()
    joins, drops, flips = cert
    c = types.SimpleNamespace(certified=certified, joins=joins, drops=drops, sign_flips=flips)
    planted = _Planted([0.9, 1.5, 1.2, 1e-13], cert=c)
    with planted.patch():
        fp = gf.equilibrium(p, state, tol=1e-13)
    np.testing.assert_array_equal(fp.relative_residuals, [1.5, 1.2, 1e-13])
    np.testing.assert_array_equal(fp.residuals, [1.5, 1.2, 1e-13])
    assert fp.steps.tolist() == [1.0, 0.0] and fp.steps.dtype == np.float64
    assert fp.iterations == 2 and fp.message == "solve message"
    assert fp.linear_steps.tolist() == [0, 0] and fp.linear_steps.dtype.kind == "i"
    assert fp.linear_residuals.tolist() == [0.0, 0.0]
    assert fp.pattern_flips.tolist() == [0, 1, 2] and fp.pattern_flips.dtype.kind == "i"
    assert fp.pattern_changed is changed
    assert fp.converged is True  # solved, and 1e-13 <= tol at equality
    assert fp.spectrum.kind == ("minimum" if certified else "uncertified")
    flat = ravel_pytree(state)[0]
    np.testing.assert_array_equal(ravel_pytree(fp.state)[0], flat + 1.0)
    with planted.patch():
        assert gf.equilibrium(p, state, spectrum=False).spectrum is None


def test_the_relu_path_is_converged_only_when_solved_below_tol():
    p = _relu_problem()
    state = p.initial_state()
    for rels, solved, tol, converged in [
        ([0.9, 0.5, 0.2, 1e-13], True, 1e-12, True),
        ([0.9, 0.5, 0.2, 1e-13], False, 1e-12, False),
        ([0.9, 0.5, 1e-13, 0.2], True, 1e-12, False),
        ([0.9, 0.5, 0.2, 1e-13], True, 1e-14, False),
    ]:
        planted = _Planted(rels, solved=solved)
        with planted.patch():
            assert gf.equilibrium(p, state, tol=tol, spectrum=False).converged is converged


@pytest.mark.parametrize(
    "rels, worse",
    [
        ([0.3, 0.9, 0.7, 0.4], True),
        ([0.3, 0.5, 0.3], False),  # as good as the start: kept
        ([0.9, 1.5, 1.2, 0.01], False),
    ],
)
def test_a_relu_solve_that_ends_worse_than_its_start_returns_the_start(rels, worse):
    p = _relu_problem()
    state = p.initial_state()
    planted = _Planted(rels, solved=False)
    with planted.patch():
        fp = gf.equilibrium(p, state, max_iter=4, spectrum=False)
    flat = np.asarray(ravel_pytree(state)[0])
    (c,) = planted.certified
    if not worse:
        assert len(planted.solves) == 1 and fp.message == "solve message"
        np.testing.assert_array_equal(fp.relative_residuals, rels[1:])
        np.testing.assert_array_equal(c["flat"], flat + 1.0)
        return
    first, second = planted.solves
    assert second == {**first, "max_iter": 0} and first["max_iter"] == 4
    assert fp.message == (
        "solve message; the point found (relative residual 4.00e-01) was worse than the start "
        "(3.00e-01), so the start is returned"
    )
    assert c["rels"] == [0.3, 0.3]  # the start's residual, as the start and as its iterate
    assert c["first_step"] == 0.5  # what the solve's first Newton step said of the start
    np.testing.assert_array_equal(c["flat"], flat)
    np.testing.assert_array_equal(c["start_flat"], flat)
    np.testing.assert_array_equal(ravel_pytree(fp.state)[0], flat)
    np.testing.assert_array_equal(fp.relative_residuals, [0.3])
    assert fp.iterations == 0 and fp.steps.size == 0 and fp.pattern_flips.tolist() == [0]


def test_the_smooth_path_passes_the_spectrum_options_on():
    p = _problem()
    planted = _Planted([0.0])
    with planted.patch():
        default = gf.equilibrium(p, _state(W1, W2))
        chosen = gf.equilibrium(p, _state(W1, W2), lanczos_iter=5, zero_tol=0.25, seed=7)
    first, second = planted.spectra
    assert (first["num_iter"], first["zero_tol"], first["seed"]) == (None, 1e-8, 0)
    assert (second["num_iter"], second["zero_tol"], second["seed"]) == (5, 0.25, 7)
    assert first["problem"] is p and default.spectrum == _Spec() == chosen.spectrum
    np.testing.assert_array_equal(_flat(_weights(first["state"])), _flat((W1, W2)))


# ---- what each Newton solve is asked for ------------------------------------------------------


class _Stop(Exception):
    pass


def _recording_newton(calls, then=None):
    def record(problem, manifold, state, eta, method, restart, max_steps):
        calls.append(dict(eta=eta, method=method, restart=restart, max_steps=max_steps))
        if then is None:
            raise _Stop
        return then(problem, manifold, state, eta, method, restart, max_steps)

    return record


@pytest.mark.parametrize(
    "kwargs, restart, max_steps",
    [
        ({}, 14, 140),  # LSMR: 10 steps per unknown
        ({"linear_solver": "gmres"}, 14, 56),  # GMRES: the size, 4 cycles
        ({"linear_solver": "gmres", "gmres_restart": 3}, 3, 12),
    ],
)
def test_each_newton_solve_gets_the_forcing_of_its_residual(kwargs, restart, max_steps):
    """The first solve's relative tolerance is ``η = min(10⁻³, 10⁻² r)`` with ``r`` the NumPy
    relative residual (a fixed ``forcing`` replaces it), its Krylov dimension and step cap
    those of the module docstring; at a fixed point (``r`` at rounding) ``η`` is floored at
    ``10 ε``."""
    p = _problem()
    for size in (0.3, 1e-3):  # η capped at 10⁻³, then 10⁻² r
        calls = []
        with mock.patch.object(eq, "_newton_direction", _recording_newton(calls)):
            with pytest.raises(_Stop):
                gf.equilibrium(p, _start(size), spectrum=False, **kwargs)
        ((call),) = calls
        rel = _residual(*_weights(_start(size)))[1]
        assert float(call["eta"]) == pytest.approx(min(1e-3, 1e-2 * rel), rel=1e-9, abs=0)
        assert call["eta"].dtype == jnp.float64
        expected = (kwargs.get("linear_solver", "lsmr"), restart, max_steps)
        assert (call["method"], call["restart"], call["max_steps"]) == expected
    calls = []
    with mock.patch.object(eq, "_newton_direction", _recording_newton(calls)):
        with pytest.raises(_Stop):
            gf.equilibrium(p, _state(W1, W2), tol=1e-300, spectrum=False, **kwargs)
        with pytest.raises(_Stop):
            gf.equilibrium(p, _start(0.01), forcing=0.3, spectrum=False, **kwargs)
    assert float(calls[0]["eta"]) == 10 * np.finfo(np.float64).eps
    assert float(calls[1]["eta"]) == 0.3


def test_an_lm_all_solve_starts_on_the_unit_spheres():
    """LM-all's manifold (the unit spheres of its directions) is read off its state: the
    first Newton solve is requested on its 16 coordinates, two ρ_k and the directions (the
    solve itself is not run)."""
    p = _problem(normalization="lm-all")
    calls = []
    with mock.patch.object(eq, "_newton_direction", _recording_newton(calls)):
        with pytest.raises(_Stop):
            gf.equilibrium(p, p.to_state(_state(*_weights(_start(0.01)))["w"]), spectrum=False)
    assert len(calls) == 1 and calls[0]["restart"] == min(sum(w.size for w in (W1, W2)) + 2, 200)


def test_a_large_system_caps_the_gmres_dimension_at_200():
    """A 16-32-16 linear network has 1,024 parameters: GMRES restarts every 200 steps (and runs
    at most 800), LSMR at most 10,240 steps."""
    net = DeepLinear(16, (32,), 16, key=jax.random.PRNGKey(1))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 16))
    p = gf.Problem(
        net, gf.data.Dataset("large", x, x @ rng.normal(size=(16, 16))), weight_decay=0.1
    )
    calls = []
    with mock.patch.object(eq, "_newton_direction", _recording_newton(calls)):
        for solver in ("gmres", "lsmr"):
            with pytest.raises(_Stop):
                gf.equilibrium(p, spectrum=False, linear_solver=solver)
    assert [(c["restart"], c["max_steps"]) for c in calls] == [(200, 800), (200, 10240)]


def test_a_float32_problem_solves_and_steps_in_float32():
    """In a float32 problem (under x64) the forcing tolerance and every trial step length,
    Newton's and the fallback's, are float32: a float64 step length would turn the state
    into float64. Planted: a Newton direction of zero, a step that changes nothing (so every
    trial is rejected) and a fallback direction with ``α = 1``."""
    p = _problem(precision="float32")
    calls, lengths = [], []

    def step(manifold, state, delta, alpha):
        lengths.append(alpha.dtype)
        return state

    def descent(problem, manifold, state):
        vel = problem.velocity(state)
        return jax.tree.map(jnp.zeros_like, vel), jax.tree.map(jnp.negative, vel), vel

    with (
        mock.patch.object(eq, "_newton_direction", _recording_newton(calls, _zero_newton)),
        mock.patch.object(eq, "_step", step),
        mock.patch.object(eq, "_descent_direction", descent),
    ):
        fp = gf.equilibrium(p, _start(0.01), tol=1e-5, max_backtracks=2, spectrum=False)
    assert fp.message == "no step reduces the residual (at the rounding floor, or stuck)"
    assert calls[0]["eta"].dtype == jnp.float32
    assert lengths == [jnp.float32] * 4  # two Newton trials, two fallback trials
    # at a fixed point the forcing is floored at float32's 10 ε, not float64's
    with mock.patch.object(eq, "_newton_direction", _recording_newton(calls)):
        with pytest.raises(_Stop):
            gf.equilibrium(p, _state(W1, W2), tol=1e-300, spectrum=False)
    assert float(calls[-1]["eta"]) == pytest.approx(10 * float(np.finfo(np.float32).eps))


def test_the_sufficient_decrease_rule_at_its_boundary():
    """Planted residuals: from ``||F|| = 2``, a trial at exactly ``(1 − 10⁻⁴ α) · 2`` is
    accepted (the rule is ``≤``), at ``α = 1`` and, after a rejected ``α = 1``, at ``α = 1/2``."""
    p = _problem()
    for script, alpha in [
        ([2.0, (1 - 1e-4 * 1.0) * 2.0], 1.0),
        ([2.0, 2.0, (1 - 1e-4 * 0.5) * 2.0], 0.5),
    ]:
        values = iter(script)

        def residual(problem, state, values=values):
            return next(values), 4.0

        with (
            mock.patch.object(eq, "_newton_direction", _zero_newton),
            mock.patch.object(eq, "_residual", residual),
        ):
            fp = gf.equilibrium(p, _start(0.01), max_iter=1, spectrum=False)
        assert fp.steps.tolist() == [alpha] and fp.residuals.tolist() == [2.0, script[-1]]
        assert fp.relative_residuals.tolist() == [0.5, script[-1] / 4.0]


def test_a_float32_problem_is_polished_with_either_krylov_solver():
    """With x64 on, a float32 problem's Newton solves run (Lineax's LSMR selects against a
    Python 1.0, float64 under x64: it used to fail on mixed dtypes; its vectors are now cast at
    the boundary). Both solvers reach a float32 tolerance from the initial weights, keep the
    state in float32, and land on the float64 problem's fixed point (its end-to-end map
    ``W2 W1``: the weights themselves are fixed only up to a rotation) to float32 accuracy."""
    x = np.random.default_rng(0).normal(size=(12, 4))
    data = gf.data.Dataset("t", x, x[:, :3])

    def problem(precision):
        net = DeepLinear(4, (2,), 3, key=jax.random.PRNGKey(0))
        return gf.Problem(net, data, weight_decay=1.5, precision=precision)

    def product(p, state):  # W2 W1: the same at every point of a fixed point's O(2) orbit
        w1, w2 = (np.asarray(w, np.float64) for w in p.to_weights(state))
        return w2 @ w1

    ref = gf.equilibrium(problem("float64"), spectrum=False)
    assert ref.converged, ref.describe()
    w_ref = product(problem("float64"), ref.state)
    for solver in ("lsmr", "gmres"):
        p32 = problem("float32")
        fp = gf.equilibrium(p32, spectrum=False, tol=1e-5, linear_solver=solver)
        assert fp.converged and fp.relative_residual <= 1e-5, (solver, fp.describe())
        assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(fp.state)), solver
        w = product(p32, fp.state)
        assert np.linalg.norm(w - w_ref) <= 1e-4 * np.linalg.norm(w_ref), solver


def test_a_seeded_solve_that_is_not_certified_is_done_again_without_the_seed():
    p = _relu_problem()
    state = p.initial_state()
    n, z = np.shape(p.x_train)[0], np.size(entry_layer(p.model, p.x_train))
    mask = np.zeros((n, z), bool)
    mask[0, 0] = True
    cert = types.SimpleNamespace(
        certified=False, verdict="not settled", joins=0, drops=0, sign_flips=0
    )
    planted = _Planted([0.9, 0.5, 0.2, 1e-13], cert=cert)
    with planted.patch():
        fp = gf.equilibrium(p, state, sliding=mask, spectrum=False)
    first, again = planted.solves
    np.testing.assert_array_equal(first["sliding"], mask)
    assert again["sliding"] is None
    # neither certified, and the second no better: the seeded one, saying both
    assert fp.message == (
        "solve message; from the S seeded by the flow's evidence: not settled (1.00e-13, 2 "
        "iterations), and without it: not settled"
    )
    with planted.patch():  # without a seed, one solve
        gf.equilibrium(p, state, spectrum=False)
    assert len(planted.solves) == 3
