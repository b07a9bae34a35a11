"""The pieces of the Filippov solver, against values written here (THEORY 3.6).

Each piece is small and NumPy-level, so it is checked on hand-made inputs, with every value
computed in the test: the threshold of ``S`` (the geometric middle of the widest gap of two
decades or more), the numbering of the switching entries and the masks and norms of a unit (an
MLP and a LocalCNN, whose dense last layer sees a channel as consecutive columns), the Hessian
restricted to ``ker C ∩ ker N`` and its kind, the fixed capacity of ``S`` and the slopes written
into it, the certificate's verdict, its text and its record, and the sampled stability ratio of
the dying units (by backpropagation written here, with the same random directions). These are
the survivors of the mutation screen's sample (docs/mutation.md, "`analysis/` Filippov solver
(random sample)").
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.analysis import _certificate, _multiplier_system, _sliding_hessian, _switching
from gradflow.analysis._dying_units import dying_ratio
from gradflow.analysis._sliding_set import _cut, sliding_evidence
from gradflow.models import MLP, LocalCNN

EPS = np.finfo(float).eps


# ---- the threshold of S ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratios", "dead", "switch_tol", "want"),
    [
        # below the tolerance 1e-12, 1e-11; the widest gap is 1e-11 -> 0.5 (the first above it)
        ([1e-12, 1e-11, 0.5, 1.0], None, 1e-3, np.sqrt(1e-11 * 0.5)),
        # nothing above the tolerance: the last gap reaches switch_tol itself
        ([1e-12, 1e-11], None, 1e-3, np.sqrt(1e-11 * 1e-3)),
        # an exact zero: its gap is measured from 1e-300, and the cut is sqrt(1e-300 * 0.5)
        ([0.0, 0.5], None, 1e-3, np.sqrt(1e-300 * 0.5)),
        # a value equal to the tolerance counts as below it
        ([1e-3, 1.0], None, 1e-3, np.sqrt(1e-3 * 1.0)),
        # the widest gap is the first one (1e-12 -> 1e-4), not the last (1e-4 -> 1e-2)
        ([1e-12, 1e-4, 1e-2], None, 1e-3, np.sqrt(1e-12 * 1e-4)),
        # gaps of a factor 5 and 20: no two decades apart, S is empty
        ([1e-4, 5e-4, 1e-2], None, 1e-3, 0.0),
        # nothing below the tolerance
        ([0.5, 1.0], None, 1e-3, 0.0),
        # a dying unit's entry is not a value: nothing is left below the tolerance
        ([1e-12, 0.5], [True, False], 1e-3, 0.0),
    ],
)
def test_the_cut_of_s_is_the_middle_of_the_widest_gap(ratios, dead, switch_tol, want):
    ratio = np.array([ratios])
    dead = np.zeros(ratio.shape, bool) if dead is None else np.array([dead])
    got = _cut(ratio, dead, switch_tol)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-14, abs=0.0)


# ---- entries, units, masks and norms --------------------------------------------------------


def test_an_mlps_entries_masks_and_norms_by_hand():
    net = MLP(3, (4, 2), 1, key=jax.random.PRNGKey(0))
    weights = [np.asarray(w) for w in net.weights]
    x = np.zeros((5, 3))
    assert _switching.layer_sizes(net, x) == [4, 2]
    np.testing.assert_array_equal(_switching.entry_layer(net, x), [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(_switching.entry_unit(net, x), [0, 1, 2, 3, 0, 1])
    m_in, m_out = _switching.unit_masks(net, weights, 0, 2)
    want_in = [np.zeros(w.shape, bool) for w in weights]
    want_out = [np.zeros(w.shape, bool) for w in weights]
    want_in[0][2, :] = True  # row 2 of W1: unit 2's incoming weights
    want_out[1][:, 2] = True  # column 2 of W2: its outgoing weights
    for got, want in zip(m_in + m_out, want_in + want_out, strict=True):
        np.testing.assert_array_equal(got, want)
    norms = _switching.unit_norms(weights)
    assert len(norms) == 2
    for k in range(2):
        w_in, w_out = weights[k], weights[k + 1]
        want_in_norm = [
            np.sqrt(sum(w_in[j, i] ** 2 for i in range(w_in.shape[1])))
            for j in range(w_in.shape[0])
        ]
        want_out_norm = [
            np.sqrt(sum(w_out[i, j] ** 2 for i in range(w_out.shape[0])))
            for j in range(w_in.shape[0])
        ]
        np.testing.assert_allclose(norms[k][0], want_in_norm, rtol=1e-14)
        np.testing.assert_allclose(norms[k][1], want_out_norm, rtol=1e-14)


def test_a_cnns_entries_masks_and_norms_by_hand():
    """Two convolutional layers (2 then 3 channels, 4 then 2 positions) and a dense last layer:
    a channel of the second layer is 2 consecutive columns of the last weight."""
    net = LocalCNN((1, 12), (2, 3), (3, 2), (3, 2), 1, key=jax.random.PRNGKey(0))
    weights = [np.asarray(w) for w in net.weights]
    assert [w.shape for w in weights] == [(2, 1, 3), (3, 2, 2), (1, 6)]
    x = np.zeros((5, 12))
    assert _switching.layer_sizes(net, x) == [2 * 4, 3 * 2]
    np.testing.assert_array_equal(_switching.entry_layer(net, x), [0] * 8 + [1] * 6)
    np.testing.assert_array_equal(
        _switching.entry_unit(net, x), [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2]
    )
    # unit 1 of the first layer: its kernel, and input channel 1 of the second layer's kernels
    m_in, m_out = _switching.unit_masks(net, weights, 0, 1)
    assert m_in[0][1].all() and m_in[0].sum() == 3 and not m_in[1].any() and not m_in[2].any()
    assert m_out[1][:, 1].all() and m_out[1].sum() == 6 and not m_out[0].any()
    assert not m_out[2].any()
    # unit 2 of the second layer: columns 4 and 5 of the dense last layer
    m_in, m_out = _switching.unit_masks(net, weights, 1, 2)
    assert m_in[1][2].all() and m_in[1].sum() == 4
    want = np.zeros((1, 6), bool)
    want[:, 4:6] = True
    np.testing.assert_array_equal(m_out[2], want)
    assert not m_out[0].any() and not m_out[1].any()
    norms = _switching.unit_norms(weights)
    w1, w2, w3 = weights
    np.testing.assert_allclose(
        norms[0][0], [np.sqrt(np.sum(w1[j] ** 2)) for j in range(2)], rtol=1e-14
    )
    np.testing.assert_allclose(
        norms[0][1], [np.sqrt(np.sum(w2[:, j] ** 2)) for j in range(2)], rtol=1e-14
    )
    np.testing.assert_allclose(
        norms[1][0], [np.sqrt(np.sum(w2[j] ** 2)) for j in range(3)], rtol=1e-14
    )
    np.testing.assert_allclose(
        norms[1][1], [np.sqrt(np.sum(w3[:, 2 * j : 2 * j + 2] ** 2)) for j in range(3)], rtol=1e-14
    )


# ---- the Hessian on the sliding manifold ------------------------------------------------------


def _system(h, c_rows, n_rows, cap):
    """A square Jacobian with ``h`` as its x-block, the rows of ``C`` (then zero padding up to
    ``cap``) and of ``N`` below it."""
    p = h.shape[0]
    size = p + cap + len(n_rows)
    jac = np.zeros((size, size))
    jac[:p, :p] = h
    for i, row in enumerate(c_rows):
        jac[p + i, :p] = row
    for i, row in enumerate(n_rows):
        jac[p + cap + i, :p] = row
    return jac


H = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.5], [0.0, 0.1, 3.0]])  # not symmetric: (2,1) != (1,2)


def test_the_restricted_hessian_is_the_symmetric_x_block_on_the_kernel():
    free = np.ones(3, bool)
    # no constraint: all of the x-block, symmetrized
    got = _sliding_hessian.restricted_hessian(_system(H, [], [], 2), 3, 0, 2, free)
    np.testing.assert_allclose(got, np.linalg.eigvalsh((H + H.T) / 2), rtol=1e-14)
    # C = e1 (one entry of S; the padding row below it is not a constraint): e2, e3 remain
    block = np.array([[2.0, 0.3], [0.3, 3.0]])
    jac = _system(H, [[1.0, 0.0, 0.0], [7.0, 7.0, 7.0]], [], 2)
    got = _sliding_hessian.restricted_hessian(jac, 3, 1, 2, free)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(block), rtol=1e-14)
    # a sphere's row N = e3 instead: e1, e2 remain
    got = _sliding_hessian.restricted_hessian(_system(H, [], [[0.0, 0.0, 2.0]], 2), 3, 0, 2, free)
    np.testing.assert_allclose(
        got, np.linalg.eigvalsh(np.array([[1.0, 0.5], [0.5, 2.0]])), rtol=1e-14
    )
    # C = e1 and the third weight held (dying): e2 alone
    held = np.array([True, True, False])
    got = _sliding_hessian.restricted_hessian(jac, 3, 1, 2, held)
    np.testing.assert_allclose(got, [2.0], rtol=1e-14)
    # a constraint 1e-11 of the largest is numerically zero: it removes nothing
    jac = _system(H, [[1.0, 0.0, 0.0], [0.0, 1e-11, 0.0]], [], 2)
    got = _sliding_hessian.restricted_hessian(jac, 3, 2, 2, free)
    np.testing.assert_allclose(got, np.linalg.eigvalsh(block), rtol=1e-14)
    # constraints that are all zero remove nothing either
    got = _sliding_hessian.restricted_hessian(_system(H, [[0.0, 0.0, 0.0]], [], 2), 3, 1, 2, free)
    np.testing.assert_allclose(got, np.linalg.eigvalsh((H + H.T) / 2), rtol=1e-14)
    # every direction constrained: no eigenvalue
    jac = _system(H, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]], 2)
    got = _sliding_hessian.restricted_hessian(jac, 3, 2, 2, free)
    assert got.shape == (0,)


@pytest.mark.parametrize(
    ("eig", "kind"),
    [
        ([1.0, 2.0], "minimum"),
        ([], "minimum"),
        ([-4.1e-8, 4.0], "saddle"),  # below -1e-8 of the largest |eigenvalue|
        ([-4e-8, 4.0], "degenerate"),  # at it: numerically zero
        ([3.9e-8, 4.0], "degenerate"),
        ([4.1e-8, 4.0], "minimum"),
        ([-1.0, 0.0, 2.0], "saddle"),  # a saddle before degenerate
        ([0.0, 0.5], "degenerate"),
    ],
)
def test_the_hessian_kind_reads_the_eigenvalues_relative_to_the_largest(eig, kind):
    assert _sliding_hessian.hessian_kind(np.array(eig)) == kind


def test_the_hessian_kind_takes_its_zero_tolerance():
    assert _sliding_hessian.hessian_kind(np.array([1e-6, 1.0]), zero_tol=1e-5) == "degenerate"
    assert _sliding_hessian.hessian_kind(np.array([-2e-5, 1.0]), zero_tol=1e-5) == "saddle"


# ---- the capacity of S and the slopes written into it ----------------------------------------


def test_the_capacity_is_the_next_power_of_two_from_16():
    caps = [_multiplier_system.capacity(m) for m in (0, 1, 15, 16, 17, 32, 33, 100, 1024, 1025)]
    assert caps == [16, 16, 16, 16, 32, 32, 64, 128, 1024, 2048]


def test_system_aux_pads_s_to_its_capacity_and_slopes_go_to_their_entries():
    free = np.array([True, False, True])
    pattern = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    got_free, idx, valid, got_pattern = _multiplier_system.system_aux(free, [4, 0], pattern, 6)
    np.testing.assert_array_equal(got_free, free)
    assert idx.dtype == jnp.int32 and idx.shape == (16,)
    np.testing.assert_array_equal(idx, [4, 0] + [6] * 14)
    np.testing.assert_array_equal(valid, [True, True] + [False] * 14)
    assert got_pattern is pattern
    alpha = jnp.asarray([0.25, 0.75] + [9.0] * 14)  # the padding's values go nowhere
    got = _multiplier_system.with_alpha(jnp.asarray(pattern), idx, valid, alpha)
    np.testing.assert_array_equal(got, [[0.75, 0.0, 1.0], [0.0, 0.25, 1.0]])


# ---- the certificate's verdict, text and record -----------------------------------------------


def _sol(
    solved=False, cycled=False, message="max_iter = 50 Newton iterations reached", joins=0, drops=0
):
    return types.SimpleNamespace(
        solved=solved, cycled=cycled, message=message, joins=joins, drops=drops
    )


STALLED = "stalled: the relative residual has not halved in 15 Newton iterations"


@pytest.mark.parametrize(
    ("sol", "failed", "final_rel", "verdict"),
    [
        (_sol(solved=True), {}, 1.0, "certified"),
        (_sol(), {"unchecked": "x"}, 1.0, "not checked"),
        (_sol(cycled=True), {"residual": "x", "settled": "y"}, 1.0, "not settled"),
        (_sol(cycled=True), {"residual": "x"}, 1.0, "stuck on switching surfaces"),
        (
            _sol(message="max_changes = 3 changes of S reached"),
            {"x": "x"},
            1.0,
            "stuck on switching surfaces",
        ),
        (_sol(message="no max_changes"), {"x": "x"}, 1.0, "not converged"),
        # a stall after changes of the active set is stuck on its surfaces; without, not
        (_sol(message=STALLED, joins=2), {"x": "x"}, 1.0, "stuck on switching surfaces"),
        (_sol(message=STALLED, drops=1), {"x": "x"}, 1.0, "stuck on switching surfaces"),
        (_sol(message=STALLED), {"x": "x"}, 1.0, "not converged"),
        (_sol(message="no stalled", joins=2), {"x": "x"}, 1.0, "not converged"),
        (_sol(solved=True), {"flow": "x"}, 1.0, "not settled"),
        (_sol(solved=True), {"signs": "x"}, 1.0, "not settled"),
        (_sol(), {"residual": "x"}, 1e3 * EPS, "rounding floor"),
        (_sol(), {"residual": "x"}, 1.0000001e3 * EPS, "not converged"),
        (_sol(solved=True), {"identity": "x"}, 0.0, "not converged"),
        (_sol(), {"unchecked": "x", "residual": "y"}, 1.0, "not converged"),
    ],
)
def test_the_verdict_of_every_failure(sol, failed, final_rel, verdict):
    assert _certificate._verdict(sol, failed, 1.0, final_rel, 1e-12) == verdict


def _certificate_of(**changes):
    fields = dict(
        certified=True,
        verdict="certified",
        reasons=(),
        relative_residual=1.25e-16,
        filippov_residual=2.5e-17,
        alpha_range=(0.125, 0.875),
        sign_flips=0,
        identity_defects=(1.5e-15, 2.5e-16),
        dying_ratio=0.96875,
        flow_drift=1.5e-5,
        flow_sign_changes=0,
        hessian_range=(-0.0625, 5.5),
        hessian_kind="saddle",
        n_switching=3,
        n_dying=2,
        n_flat=1,
        joins=4,
        drops=1,
        distance=1.78e-5,
        start_residual=4.5e-6,
        thresholds=dict(_certificate.THRESHOLDS),
        switching=np.array([[0, 3], [2, 1], [5, 7]]),
        alpha=np.array([0.125, 0.5, 0.875]),
        dying=((0, 1), (0, 4)),
        first_step=2.5e-4,
    )
    fields.update(changes)
    return _certificate.Certificate(**fields)


def test_a_certified_point_describes_every_check():
    assert _certificate_of().describe() == (
        "certified Filippov equilibrium: relative residual 1.25e-16 (start 4.50e-06), "
        "Filippov residual 2.50e-17, alpha in [0.125, 0.875], 0 sign flips off S\n"
        "|S| = 3, dying units 2 (stability ratio 0.969), flat directions 1, active-set joins 4, "
        "drops 1; 0.00178% from the start\n"
        "THEORY 4.9 defects per layer: 1.5e-15 2.5e-16\n"
        "short flow from the point: drift 1.50e-05, 0 sign changes off S\n"
        "Hessian on the sliding manifold: eigenvalues in [-0.0625, 5.5] (saddle)\n"
        "a saddle near the start, not shown to be the flow's limit: 0.00178% from the start, "
        "Hessian on S: saddle"
    )


def test_a_point_that_is_not_certified_describes_why():
    c = _certificate_of(
        certified=False,
        verdict="not settled",
        reasons=("a flow moved", "1 pre-activations off S changed sign"),
        alpha_range=None,
        dying_ratio=None,
        flow_drift=None,
        flow_sign_changes=None,
        n_dying=0,
        sign_flips=1,
    )
    assert c.describe() == (
        "NOT certified (not settled): relative residual 1.25e-16 (start 4.50e-06), "
        "Filippov residual 2.50e-17, alpha in none, 1 sign flips off S\n"
        "|S| = 3, dying units 0, flat directions 1, active-set joins 4, drops 1; 0.00178% from "
        "the start\n"
        "THEORY 4.9 defects per layer: 1.5e-15 2.5e-16\n"
        "Hessian on the sliding manifold: eigenvalues in [-0.0625, 5.5] (no kind: not certified)\n"
        "failed: a flow moved\n"
        "failed: 1 pre-activations off S changed sign"
    )
    bare = _certificate_of(hessian_range=None, hessian_kind=None).describe()
    assert "Hessian on the sliding manifold" not in bare
    assert bare.endswith(
        "the flow's limit: 0.00178% from the start, Hessian on S not computed (within 1%)"
    )


def test_the_record_is_plain_json_without_the_per_entry_arrays():
    c = _certificate_of(relative_residual=np.float64(1.25e-16), n_switching=np.int64(3))
    record = c.record()
    assert set(record) == {
        f
        for f in _certificate.Certificate.__dataclass_fields__
        if f not in {"switching", "alpha", "dying"}
    } | {"flow_limit"}
    assert record["flow_limit"] == c.flow_limit
    assert record["alpha_range"] == [0.125, 0.875]
    assert record["identity_defects"] == [1.5e-15, 2.5e-16]
    assert record["reasons"] == []
    assert record["thresholds"] == _certificate.THRESHOLDS
    assert type(record["relative_residual"]) is float and record["relative_residual"] == 1.25e-16
    assert type(record["n_switching"]) is int and record["n_switching"] == 3
    assert record["hessian_range"] == [-0.0625, 5.5]
    assert record["first_step"] == 2.5e-4
    # an array of one dimension stays as it is (only 0-d arrays are scalars)
    vec = np.array([1.0, 2.0])
    assert _certificate_of(thresholds={"v": vec}).record()["thresholds"]["v"] is vec


def test_flat_norm_is_the_norm_of_every_leaf():
    state = {"w": (jnp.asarray([[3.0, 0.0]]), jnp.asarray([4.0]))}
    assert _certificate.flat_norm(state) == 5.0


# ---- the stability ratio of the dying units ---------------------------------------------------

N, DIM, WIDTH, LAM = 6, 4, 5, 0.1


def _data(seed=0):
    return gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=seed)


def _dying_problem():
    net = MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(3))
    problem = gf.Problem(net, _data(), weight_decay=LAM, normalization="none")
    w1, w2 = (np.array(w, dtype=float) for w in problem.to_weights(problem.initial_state()))
    for j in (1, 3):  # two dying units: incoming and outgoing weights exactly zero
        w1[j] = 0.0
        w2[:, j] = 0.0
    return problem, w1, w2


def test_the_dying_ratio_is_the_sampled_signal_over_the_decay():
    """Plain: ``μ_a = μ_b = λ``; ``g(â) = ∂L/∂b`` at ``b = 0`` is ``(2/N) Σ_n (F_n − y_n)
    relu(â·x_n)`` (the unit adds nothing to F while b = 0). The directions are those the
    function draws: ``default_rng(0)``, 256 per unit, the units in the order given."""
    problem, w1, w2 = _dying_problem()
    state = problem.to_state((jnp.asarray(w1), jnp.asarray(w2)))
    x, y = np.asarray(problem.x_train, float), np.asarray(problem.y_train, float)
    f = np.maximum(x @ w1.T, 0.0) @ w2.T
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in (1, 3):
        cand = rng.standard_normal((256, DIM))
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        g = (2.0 / N) * np.maximum(cand @ x.T, 0.0) @ (f - y)  # (256, 1)
        worst = max(worst, np.max(np.linalg.norm(g, axis=1)) / LAM)
    got = dying_ratio(problem, state, [(0, 1), (0, 3)])
    assert isinstance(got, float)
    assert got == pytest.approx(worst, rel=1e-12)
    # one unit, fewer directions, another seed
    rng = np.random.default_rng(5)
    cand = rng.standard_normal((7, DIM))
    cand /= np.linalg.norm(cand, axis=1, keepdims=True)
    g = (2.0 / N) * np.maximum(cand @ x.T, 0.0) @ (f - y)
    want = np.max(np.linalg.norm(g, axis=1)) / LAM
    assert dying_ratio(problem, state, [(0, 3)], num=7, seed=5) == pytest.approx(want, rel=1e-12)


def test_the_dying_ratio_of_an_lm_state_uses_the_curvature_of_the_spheres():
    """LM-all, ``W_k = ρ_k v_k``: the curvature ``μ_k = −⟨v_k, ∇_{v_k} L⟩/||v_k||²`` is
    ``−(2/N) Σ_n (F_n − y_n) F_n`` on every layer (the decay reads ``ρ`` only, and ``⟨W_k,
    ∇_{W_k} L⟩`` is that for a bias-free ReLU net, positively homogeneous in each layer);
    ``g(â) = ρ_1 ρ_2 (2/N) Σ_n (F_n − y_n) relu(â·x_n)`` (``ρ > 0``). The last layer is scaled so
    that ``μ > 0``: ``F = c F̂`` with ``c`` half the least-squares fit of ``y`` by ``F̂``."""
    problem, w1, w2 = _dying_problem()
    x, y = np.asarray(problem.x_train, float), np.asarray(problem.y_train, float)
    f_hat = np.maximum(x @ w1.T, 0.0) @ w2.T
    if np.sum(y * f_hat) < 0:
        w2 = -w2
        f_hat = -f_hat
    w2 = w2 * 0.5 * np.sum(y * f_hat) / np.sum(f_hat**2)
    lm = gf.Problem(problem.model, _data(), weight_decay=LAM, normalization="lm-all")
    state = lm.to_state((jnp.asarray(w1), jnp.asarray(w2)))
    rho1, rho2 = np.linalg.norm(w1), np.linalg.norm(w2)
    f = np.maximum(x @ w1.T, 0.0) @ w2.T
    mu = -(2.0 / N) * np.sum((f - y) * f)
    assert mu > 0
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in (1, 3):
        cand = rng.standard_normal((256, DIM))
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        g = rho1 * rho2 * (2.0 / N) * np.maximum(cand @ x.T, 0.0) @ (f - y)
        worst = max(worst, np.max(np.linalg.norm(g, axis=1)) / mu)
    assert dying_ratio(lm, state, [(0, 1), (0, 3)]) == pytest.approx(worst, rel=1e-10)


def test_the_dying_ratio_is_inf_when_the_spheres_curve_the_wrong_way():
    """Past the least-squares scale (``F = 2 c_ls F̂``), ``μ = −(2/N) Σ (F − y) F < 0`` on both
    layers: zero is unstable along ``â`` alone (``μ_a |a|² < 0``), whatever the product
    ``μ_a μ_b > 0`` says (the function returned 4.72 here before the fix: it tested the
    product only)."""
    problem, w1, w2 = _dying_problem()
    x, y = np.asarray(problem.x_train, float), np.asarray(problem.y_train, float)
    f_hat = np.maximum(x @ w1.T, 0.0) @ w2.T
    w2 = w2 * 2.0 * np.sum(y * f_hat) / np.sum(f_hat**2)
    f = np.maximum(x @ w1.T, 0.0) @ w2.T
    assert -(2.0 / N) * np.sum((f - y) * f) < 0
    lm = gf.Problem(problem.model, _data(), weight_decay=LAM, normalization="lm-all")
    state = lm.to_state((jnp.asarray(w1), jnp.asarray(w2)))
    assert dying_ratio(lm, state, [(0, 1)]) == float("inf")


def test_the_dying_ratio_is_none_without_dying_units_or_curvature_and_inf_without_decay():
    problem, w1, w2 = _dying_problem()
    state = problem.to_state((jnp.asarray(w1), jnp.asarray(w2)))
    assert dying_ratio(problem, state, []) is None
    wn = gf.Problem(problem.model, _data(), weight_decay=LAM, normalization="wn")
    assert dying_ratio(wn, wn.initial_state(), [(0, 1)]) is None
    flat = gf.Problem(problem.model, _data(), weight_decay=0.0, normalization="none")
    assert dying_ratio(flat, state, [(0, 1)]) == float("inf")


# ---- the flow's evidence ---------------------------------------------------------------------


def test_sliding_evidence_counts_a_sign_that_goes_and_comes_back():
    problem, w1, w2 = _dying_problem()
    w1 = np.array(np.asarray(problem.to_weights(problem.initial_state())[0]), dtype=float)
    w1[4] = np.where(np.arange(DIM) % 2 == 0, 1.0, -1.0)  # unit 4: some signs of each kind
    flipped = w1.copy()
    flipped[4] *= -1.0

    def state(w):
        return problem.to_state((jnp.asarray(w), jnp.asarray(w2)))

    x = np.asarray(problem.x_train, float)
    z = x @ w1.T
    moved = np.zeros((N, WIDTH), bool)
    moved[:, 4] = z[:, 4] != 0.0
    there_and_back = sliding_evidence(problem, [state(w1), state(flipped), state(w1)])
    np.testing.assert_array_equal(there_and_back, moved)
    assert there_and_back.dtype == bool
    assert not sliding_evidence(problem, [state(w1), state(flipped)]).any()  # once: a crossing
    with pytest.raises(ValueError) as info:
        sliding_evidence(problem, [state(w1)])
    assert str(info.value) == (
        "sliding_evidence: states has 1 state(s); use at least two consecutive states of the "
        "run's last steps"
    )


# ---- the multiplier system by backpropagation written here ------------------------------------


def test_the_multiplier_systems_residual_and_measure_by_hand():
    """Plain 4-5-1 net: ``R = (G_0 + Cᵀμ on the free coordinates, x elsewhere; z_S; the padding's
    μ)`` and ``measure = (||G_0 + Cᵀμ||, the sum of the norms of its four terms, max |z_S| /
    zscale)``, with the gradients of fit ``mean ||F||²``, signal ``−2 mean ⟨F, y⟩`` and decay
    ``(λ/2)||W||²`` written out for slopes ``a`` (0 on S)."""
    from jax.flatten_util import ravel_pytree

    from gradflow.analysis._manifold import StateManifold

    data = gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=1)
    problem = gf.Problem(
        MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(1)),
        data,
        weight_decay=LAM,
        normalization="none",
    )
    state = problem.initial_state()
    w1, w2 = (np.asarray(w, float) for w in problem.to_weights(state))
    x, y = np.asarray(problem.x_train, float), np.asarray(problem.y_train, float)
    z = x @ w1.T
    positive = np.argwhere(z > 0)  # entries of S where ReLU's own slope would be 1, not 0
    entries = [tuple(int(i) for i in positive[0]), tuple(int(i) for i in positive[-1])]
    s = np.array([n * WIDTH + j for n, j in entries])
    mu = np.array([0.3, -0.7])
    a = (z > 0).astype(float)
    a.flat[s] = 0.0
    h = a * z
    f = h @ w2.T
    parts = []
    for coef in (f, -y):  # fit, signal: (2/N) Σ coef_n ⊗ ∂F_n
        parts.append(((2.0 / N) * ((coef @ w2) * a).T @ x, (2.0 / N) * coef.T @ h))
    parts.append((LAM * w1, LAM * w2))
    c1 = np.zeros_like(w1)
    for (n, j), m in zip(entries, mu):
        c1[j] += m * x[n]
    parts.append((c1, np.zeros_like(w2)))
    flat_parts = [np.concatenate([g1.ravel(), g2.ravel()]) for g1, g2 in parts]
    total = sum(flat_parts)

    flat = np.asarray(ravel_pytree(state)[0])
    free = np.ones(flat.size, bool)
    free[0] = False  # a held coordinate: its row is x itself, and the measure skips it
    aux = _multiplier_system.system_aux(free, s, a, a.size)
    cap = aux[1].size
    mu_p = np.zeros(cap)
    mu_p[:2] = mu
    mu_p[5] = 0.25  # a padding slot's multiplier: its row is the multiplier itself
    manifold = StateManifold.of(problem, state)
    u = jnp.asarray(np.concatenate([flat, mu_p]))
    r = np.asarray(_multiplier_system.residual(problem, manifold, state, u, aux))
    z_s = [z[n, j] for n, j in entries]
    want = np.concatenate([np.where(free, total, flat), z_s, np.zeros(cap - 2)])
    want[flat.size + 5] = 0.25
    np.testing.assert_allclose(r, want, rtol=1e-12, atol=1e-14)

    zscale = np.full(z.shape, 2.0)
    zscale[entries[1]] = 0.5
    stat, scale, cons = (
        float(v)
        for v in _multiplier_system.measure(
            problem, manifold, state, jnp.asarray(flat), jnp.asarray(mu_p), aux, zscale
        )
    )
    held = [np.where(free, q, 0.0) for q in flat_parts]
    assert stat == pytest.approx(np.linalg.norm(sum(held)), rel=1e-12)
    assert scale == pytest.approx(sum(np.linalg.norm(q) for q in held), rel=1e-12)
    assert cons == pytest.approx(max(abs(z_s[0]) / 2.0, abs(z_s[1]) / 0.5), rel=1e-14)
    rel = _multiplier_system.relative_residual(
        problem, manifold, state, jnp.asarray(flat), jnp.asarray(mu_p), aux, zscale
    )
    assert rel == pytest.approx(max(stat / scale, cons), rel=1e-14)


# ---- the start of a solve: dying units, S and the pattern -------------------------------------


def test_identify_holds_the_dying_units_at_zero_and_finds_s_by_hand():
    """Units 1 and 3 at 1e-9 of the largest weights (dying at ``dying_tol = 1e-6``: set to zero
    and held), and unit 0's incoming weights projected off ``x_2`` (``z_{2,0} ≈ 0``: the one
    entry of S). The flow's evidence adds entry (4, 2) and cannot add a dying unit's (5, 1)."""
    from jax.flatten_util import ravel_pytree

    from gradflow.analysis._sliding_set import identify

    problem, w1, w2 = _dying_problem()
    base = [np.asarray(w, float) for w in problem.to_weights(problem.initial_state())]
    w1, w2 = base[0].copy(), base[1].copy()
    x = np.asarray(problem.x_train, float)
    for j in (1, 3):
        w1[j] *= 1e-9
        w2[:, j] *= 1e-9
    w1[0] -= (w1[0] @ x[2]) / (x[2] @ x[2]) * x[2]
    state = problem.to_state((jnp.asarray(w1), jnp.asarray(w2)))
    sliding = np.zeros((N, WIDTH), bool)
    sliding[4, 2] = sliding[5, 1] = True
    flat0, template, dying, free, s, pattern, zscale = identify(problem, state, 1e-3, 1e-6, sliding)

    np.testing.assert_array_equal(flat0, np.concatenate([w1.ravel(), w2.ravel()]))
    assert dying == [(0, 1), (0, 3)]
    held1, held2 = np.zeros(w1.shape, bool), np.zeros(w2.shape, bool)
    held1[[1, 3]] = True
    held2[:, [1, 3]] = True
    np.testing.assert_array_equal(free, ~np.concatenate([held1.ravel(), held2.ravel()]))
    t1, t2 = (np.asarray(w) for w in template["w"])
    np.testing.assert_array_equal(t1, np.where(held1, 0.0, w1))
    np.testing.assert_array_equal(t2, np.where(held2, 0.0, w2))
    assert t1.dtype == np.float64 and np.asarray(ravel_pytree(template)[0]).dtype == np.float64

    z = x @ t1.T
    rms = np.sqrt(np.mean(z**2))  # one hidden layer; the dying columns are zero and count
    np.testing.assert_allclose(zscale, np.full((N, WIDTH), rms), rtol=1e-14)
    ratio = np.sort(np.abs(np.delete(z, [1, 3], axis=1)).ravel()) / rms
    assert ratio[0] < 1e-12 and ratio[1] > 1e-2  # the planted zero, then two decades at least
    np.testing.assert_array_equal(s, [2 * WIDTH + 0, 4 * WIDTH + 2])
    want = (z > 0).astype(float)
    want[:, [1, 3]] = 0.0
    want[2, 0] = want[4, 2] = 0.0
    np.testing.assert_array_equal(pattern, want)
    assert pattern.dtype == np.float64
    # without the evidence: the planted zero alone
    s_alone = identify(problem, state, 1e-3, 1e-6)[4]
    np.testing.assert_array_equal(s_alone, [2 * WIDTH + 0])


# ---- the state's manifold -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("normalization", "freeze", "dimension"),
    [
        ("none", False, 5 * 4 + 5),  # every weight
        ("lm-all", False, 1 * 2 + 5 * 4 + 5 - 2),  # ρ_1, ρ_2, and one sphere per direction
        ("lm-last", False, 1 + 5 * 4 + 5 - 2),
        ("lm-all", True, 2),  # the scales alone
        ("wn", False, 2 + 5 * 4 + 5 - 2),
    ],
)
def test_the_manifolds_dimension_counts_its_free_directions(normalization, freeze, dimension):
    from gradflow.analysis._manifold import StateManifold

    data = gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=0)
    problem = gf.Problem(
        MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(0)),
        data,
        weight_decay=LAM,
        normalization=normalization,
        freeze_directions=freeze,
    )
    state = problem.initial_state()
    assert StateManifold.of(problem, state).dimension(state) == dimension


# ---- the certificate of a solve that did not start ------------------------------------------


def test_the_certificate_of_an_unsolved_start_gives_every_reason_word_for_word():
    """``max_iter = 0`` from the initial state of the 4-5-1 net (nothing is solved, S is empty):
    every failed check is given, in order, with its numbers; the slopes' range is then planted
    at and beyond ``alpha_tol``, and a first Newton step at and beyond ``SETTLED_STEP``."""
    from gradflow.analysis._filippov import solve

    problem, _, _ = _dying_problem()
    state = gf.Problem(
        problem.model, _data(), weight_decay=LAM, normalization="none"
    ).initial_state()
    options = dict(
        tol=1e-12,
        switch_tol=1e-2,
        dying_tol=1e-4,
        alpha_tol=1e-9,
        max_iter=0,
        max_changes=200,
        max_backtracks=30,
        dense_max=3000,
    )
    sol, template, manifold, flat0 = solve(problem, state, **options)
    assert sol.message == "max_iter = 0 Newton iterations reached" and not sol.solved
    assert len(sol.s) == 0 and sol.dying == [] and sol.jac is None and sol.first_step is None

    def certify(settled_tol=1e-3, thresholds=(), **planted):
        for name, value in planted.items():
            setattr(sol, name, value)
        return _certificate.certify(
            problem,
            sol,
            template,
            manifold,
            sol.flat,
            thresholds={**_certificate.THRESHOLDS, **dict(thresholds)},
            flow_time=0.0,
            settled_tol=settled_tol,
            start_flat=flat0,
        )

    c = certify()
    rel, start = sol.relative_residuals[-1], sol.relative_residuals[0]
    assert c.relative_residual == pytest.approx(rel, rel=1e-14) and c.start_residual == start
    assert start > 1e-3
    assert not c.certified and c.verdict == "not settled"
    assert c.reasons == (
        "the solve did not finish: max_iter = 0 Newton iterations reached",
        f"relative residual {c.relative_residual:.2e} > tol = 1e-12",
        f"Filippov residual with the slopes alpha {c.filippov_residual:.2e} > 1e-10",
        f"THEORY 4.9 defect {max(c.identity_defects):.2e} > 1e-09",
        "the short flow was not run (flow_time = 0): not certifiable",
        f"the start's relative residual {start:.2e} > 0.001: the flow had not settled (run it "
        "longer, lambda t >= 20)",
    )
    assert c.alpha_range is None and c.sign_flips == 0 and c.distance == 0.0
    assert c.n_switching == 0 and c.switching.shape == (0, 2) and c.dying_ratio is None
    assert c.flow_drift is None and c.flow_sign_changes is None and c.hessian_range is None
    assert c.thresholds == _certificate.THRESHOLDS and c.thresholds is not _certificate.THRESHOLDS
    # each threshold at the value measured: the check passes (at most the threshold)
    at = certify(
        thresholds={
            "tol": c.relative_residual,
            "filippov_tol": c.filippov_residual,
            "identity_tol": max(c.identity_defects),
        }
    )
    assert at.reasons == (c.reasons[0], c.reasons[4], c.reasons[5])
    # the slopes' range: within alpha_tol of [0, 1] passes, beyond it fails
    for alpha, fails in [
        ([0.0, 1.0 + 0.5e-9], False),
        ([-0.5e-9, 1.0], False),
        ([-2e-9, 0.5], True),
        ([0.5, 1.5], True),
        ([0.25, 1.0 + 2e-9], True),
    ]:
        c = certify(alpha=np.array(alpha))
        assert c.alpha_range == (alpha[0], alpha[1])
        reason = f"alpha in [{alpha[0]:.3g}, {alpha[1]:.3g}], outside [0, 1]"
        assert (reason in c.reasons) is fails
    # a start within settled_tol: the first Newton step decides, strictly beyond SETTLED_STEP
    c = certify(settled_tol=10.0, alpha=np.zeros(0), first_step=0.5)
    assert c.verdict == "not settled"
    assert c.reasons[-1] == (
        "the first Newton step moves the state by 5.00e-01 of its norm (> 0.01): the "
        "equilibrium the start's S points to is that far, so the flow had not settled (run it "
        "longer)"
    )
    for step in (None, 0.01):
        c = certify(settled_tol=10.0, first_step=step)
        assert c.verdict == "not converged" and "settled" not in " ".join(c.reasons)
    # at the start's residual itself: not beyond settled_tol
    c = certify(settled_tol=start, first_step=None)
    assert c.verdict == "not converged"


def _planted_zeros_problem(entries, duplicate=None, precision="float64"):
    """A 5-unit MLP on ``N`` Gaussian-mixture points with first-layer pre-activations planted
    at exactly zero at ``entries`` (pairs ``(n, j)``: row ``w1[j]`` projected off the span of
    the ``x_n`` planted in it); with ``duplicate = (m, n)`` sample ``m`` is first made a copy of
    sample ``n``. There ``G(W, α)`` is affine in ``α`` (``h = α z = 0``, so ``F`` does not see
    it): ``G = G_0 + Σ_i α_i d_i`` with ``d_i = (2/N)(F_n − y_n) w2_j x_n`` in row ``j`` of
    ``∇_{W1}``. ``precision`` is the ``Problem``'s (the rest is float64 NumPy). Returns
    ``(problem, state, flat, d, g0, g, s, pattern)``, all built by hand in NumPy:
    ``g = ∂L/∂h`` per (sample, unit), ``s`` the flat indices of the entries."""
    import dataclasses

    from jax.flatten_util import ravel_pytree

    data = gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=2)
    x, y = np.array(data.x_train, float), np.array(data.y_train, float)
    if duplicate is not None:
        m, n = duplicate
        x[m], y[m] = x[n], y[n]
        data = dataclasses.replace(data, x_train=jnp.asarray(x), y_train=jnp.asarray(y))
    problem = gf.Problem(
        MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(2)),
        data,
        weight_decay=LAM,
        normalization="none",
        precision=precision,
    )
    w1, w2 = (np.array(w, float) for w in problem.to_weights(problem.initial_state()))
    for j in {j for _, j in entries}:  # row j off the span of its planted samples
        xs = x[[n for n, k in entries if k == j]]
        w1[j] -= xs.T @ np.linalg.lstsq(xs.T, w1[j], rcond=None)[0]
    dtype = problem.x_train.dtype
    state = problem.to_state((jnp.asarray(w1, dtype), jnp.asarray(w2, dtype)))
    flat = np.asarray(ravel_pytree(state)[0])
    z = x @ w1.T
    s = np.array([n * WIDTH + j for n, j in entries])
    a = (z > 0).astype(float)
    a.flat[s] = 0.0
    f = (a * z) @ w2.T
    g = (2.0 / N) * (f - y) * w2  # (N, WIDTH): ∂L/∂h
    g1 = (2.0 / N) * ((f - y) * w2 * a).T @ x + LAM * w1
    g2 = (2.0 / N) * (f - y).T @ (a * z) + LAM * w2
    g0 = np.concatenate([g1.ravel(), g2.ravel()])
    d = np.zeros((flat.size, len(entries)))
    for i, (n, j) in enumerate(entries):
        row = np.zeros_like(w1)
        row[j] = g[n, j] * x[n]
        d[:, i] = np.concatenate([row.ravel(), np.zeros(w2.size)])
    return problem, state, flat, d, g0, g, s, a


@pytest.mark.parametrize("entries", [[(1, 0), (4, 3)], [(1, 0), (N - 1, WIDTH - 1)]])
def test_the_slopes_are_the_least_squares_alpha_and_the_signal_is_backpropagated_by_hand(
    entries,
):
    """Two first-layer pre-activations planted at exactly zero (:func:`_planted_zeros_problem`:
    ``G`` affine in ``α``). The slopes are ``argmin ||G||`` (by NumPy's least squares here),
    whatever ``μ`` started the Gauss–Newton refinement; the signal ``g = ∂L/∂h`` is
    ``(2/N)(F_n − y_n) w2_j``, read at each entry's own flat index — the second case puts one
    at the last index of the (sample, unit) table, where the padding's index is clamped."""
    from gradflow.analysis._manifold import StateManifold

    problem, state, flat, d, g0, g, s, a = _planted_zeros_problem(entries)
    want = np.linalg.lstsq(d, -g0, rcond=None)[0]

    aux = _multiplier_system.system_aux(np.ones(flat.size, bool), s, a, a.size)
    mu = np.zeros(aux[1].size)
    mu[:2] = [0.3, -0.2]  # any start: μ/g is then far from the least-squares slopes
    manifold = StateManifold.of(problem, state)
    alpha, gi = _multiplier_system.slopes(
        problem, manifold, state, jnp.asarray(flat), aux, jnp.asarray(mu)
    )
    np.testing.assert_allclose(gi[:2], [g[n, j] for n, j in entries], rtol=1e-12)
    np.testing.assert_array_equal(gi[2:], 1.0)
    assert np.max(np.abs(mu[:2] / gi[:2] - want)) > 0.1
    np.testing.assert_allclose(alpha[:2], want, rtol=1e-9)
    np.testing.assert_array_equal(alpha[2:], 0.5)  # the padding keeps its placeholder


#: sample 5 is a copy of sample 1 (``duplicate=(5, 1)``): zeros at ``(1, 3)`` and ``(5, 3)``
#: are the same zero, and one more at ``(0, 4)``
DUPLICATED = [(1, 3), (5, 3), (0, 4)]


def test_the_bounded_slopes_are_the_box_constrained_least_squares_alpha():
    """Where ``α`` is not unique the slopes are chosen in the box: sample 5 is a copy of sample
    1, so the planted zeros ``(1, 3)`` and ``(5, 3)`` have the same column ``d`` in
    ``G = G_0 + Σ_i α_i d_i`` (the affine case of the test above) and only their sum is
    determined. From a start far outside ``[0, 1]``, :func:`bounded_slopes` returns an ``α`` in
    the box whose ``||T G||`` is the box-constrained least-squares minimum, computed here by
    SciPy's trust-region reflective method on the ``d_i`` built by hand (another algorithm than
    the library's BVLS, on another Jacobian), with the same sum on the duplicated pair. The
    unconstrained least squares puts the third entry far outside (at about 20), so a bound is
    active; the pair's split is free, and the reference splits it otherwise."""
    import scipy.optimize

    from gradflow.analysis._manifold import StateManifold

    problem, state, flat, d, g0, g, s, a = _planted_zeros_problem(DUPLICATED, duplicate=(5, 1))
    np.testing.assert_allclose(d[:, 0], d[:, 1], rtol=0, atol=1e-15)  # only the sum counts
    ref = scipy.optimize.lsq_linear(d, -g0, bounds=(0.0, 1.0), method="trf", tol=1e-14)
    ref_norm = np.linalg.norm(g0 + d @ ref.x)
    assert np.linalg.lstsq(d, -g0, rcond=None)[0][2] > 2.0  # unconstrained: out of the box

    aux = _multiplier_system.system_aux(np.ones(flat.size, bool), s, a, a.size)
    start = np.zeros(aux[1].size, int)  # any array-like start, integers too
    start[:3] = [6, -5, 3]
    manifold = StateManifold.of(problem, state)
    alpha, norm = _multiplier_system.bounded_slopes(
        problem, manifold, state, jnp.asarray(flat), aux, start
    )
    assert np.all((alpha[:3] >= 0.0) & (alpha[:3] <= 1.0))
    assert norm == pytest.approx(np.linalg.norm(g0 + d @ alpha[:3]), rel=1e-10)
    assert norm == pytest.approx(ref_norm, rel=1e-8)
    assert alpha[0] + alpha[1] == pytest.approx(ref.x[0] + ref.x[1], abs=1e-7)
    assert alpha[2] == pytest.approx(ref.x[2], abs=1e-7)
    np.testing.assert_array_equal(alpha[3:], 0.0)  # the padding: clipped, untouched

    # a start that is already a minimizer in the box, with another split of the pair, is
    # returned as it is: nothing in the box does better, and the caller's split is kept
    kept = np.zeros(aux[1].size)
    kept[:3] = [0.3 * (alpha[0] + alpha[1]), 0.7 * (alpha[0] + alpha[1]), alpha[2]]
    again, norm_again = _multiplier_system.bounded_slopes(
        problem, manifold, state, jnp.asarray(flat), aux, kept
    )
    np.testing.assert_array_equal(again, kept)
    assert norm_again == pytest.approx(ref_norm, rel=1e-8)


@pytest.mark.parametrize(
    "entries",
    [
        [(1, 2), (2, 2)],  # unconstrained α ≈ (−0.12, −0.03): below the box only
        [(1, 3), (5, 0)],  # ≈ (2.5, 0.72): above it only
        [(2, 4), (4, 3), (1, 3)],  # ≈ (−1.0, −7.6, 8.7): both, and clipping it is not optimal
    ],
)
def test_the_bounded_slopes_from_the_unconstrained_alpha_are_the_box_minimizer(entries):
    """What the solve hands :func:`bounded_slopes`: the unconstrained least-squares ``α`` (the
    Gauss–Newton slopes), outside ``[0, 1]``. Its norm is the smallest of all, so the answer
    must come from the box, not from the start: the unique box-constrained minimizer of
    ``||G_0 + D α||`` (``D`` of full rank), computed by SciPy's trust-region reflective method
    on the columns built by hand (:func:`_planted_zeros_problem`). In the third case the
    clipped unconstrained ``α`` misses it by 3.8 % in the norm, and the minimizer over
    ``[0, 2]`` clipped to ``[0, 1]`` by 0.85 %."""
    import scipy.optimize

    from gradflow.analysis._manifold import StateManifold

    problem, state, flat, d, g0, g, s, a = _planted_zeros_problem(entries)
    k = len(entries)
    assert np.linalg.matrix_rank(d) == k
    free = np.linalg.lstsq(d, -g0, rcond=None)[0]
    assert np.any((free < 0.0) | (free > 1.0))
    ref = scipy.optimize.lsq_linear(d, -g0, bounds=(0.0, 1.0), method="trf", tol=1e-14)
    aux = _multiplier_system.system_aux(np.ones(flat.size, bool), s, a, a.size)
    start = np.zeros(aux[1].size)
    start[:k] = free
    alpha, norm = _multiplier_system.bounded_slopes(
        problem, StateManifold.of(problem, state), state, jnp.asarray(flat), aux, start
    )
    assert np.all((alpha >= 0.0) & (alpha <= 1.0))
    np.testing.assert_allclose(alpha[:k], ref.x, rtol=0, atol=1e-7)
    assert norm == pytest.approx(np.linalg.norm(g0 + d @ alpha[:k]), rel=1e-10)
    assert norm == pytest.approx(np.linalg.norm(g0 + d @ ref.x), rel=1e-10)
    assert norm > np.linalg.norm(g0 + d @ free)


def test_the_bounded_slopes_on_an_empty_s_are_the_start_and_the_gradients_norm():
    """No entry on ``S`` (the padding only): nothing to choose; the start comes back as it is
    (only entries of ``S`` are clipped) with ``||T G||``, here the gradient built by hand
    (Plain: ``T`` is the identity)."""
    from gradflow.analysis._manifold import StateManifold

    problem, state, flat, d, g0, g, s, a = _planted_zeros_problem([(1, 2)])
    aux = _multiplier_system.system_aux(np.ones(flat.size, bool), s[:0], a, a.size)
    start = np.full(aux[1].size, 2.0)
    alpha, norm = _multiplier_system.bounded_slopes(
        problem, StateManifold.of(problem, state), state, jnp.asarray(flat), aux, start
    )
    np.testing.assert_array_equal(alpha, start)  # the padding is not clipped
    assert norm == pytest.approx(np.linalg.norm(g0), rel=1e-12)


def test_the_slopes_keep_their_clipped_start_along_the_directions_that_do_not_move_g():
    """The duplicated sample of the test above: ``α`` of the pair ``(1, 3)``, ``(5, 3)`` is
    determined only in its sum. :func:`slopes` starts from ``μ/g`` clipped to ``[0, 1]`` and
    takes minimum-norm Gauss–Newton steps, so (``G`` affine in ``α`` here) it returns
    ``c − D⁺(G_0 + D c)`` with ``c`` the clipped start and ``D`` the columns built by hand: the
    pair's difference is the clipped start's (1 − 0 = 1), not the unclipped start's (1.35) or
    one clipped on one side only (1.05, 1.3), not that of a start of 0.5 everywhere (0), and
    not that of ``μ·g`` or ``μ`` clipped (the pair's ``g`` is not ±1)."""
    from gradflow.analysis._manifold import StateManifold

    problem, state, flat, d, g0, g, s, a = _planted_zeros_problem(DUPLICATED, duplicate=(5, 1))
    aux = _multiplier_system.system_aux(np.ones(flat.size, bool), s, a, a.size)
    start = np.array([1.05, -0.3, 0.5])
    mu = np.zeros(aux[1].size)
    mu[:3] = start * np.array([g[n, j] for n, j in DUPLICATED])
    manifold = StateManifold.of(problem, state)
    alpha, _ = _multiplier_system.slopes(
        problem, manifold, state, jnp.asarray(flat), aux, jnp.asarray(mu)
    )
    c = np.clip(start, 0.0, 1.0)
    want = c - np.linalg.pinv(d) @ (g0 + d @ c)
    np.testing.assert_allclose(alpha[:3], want, rtol=0, atol=1e-9)
    assert alpha[0] - alpha[1] == pytest.approx(1.0, abs=1e-9)
    assert abs(abs(g[1, 3]) - 1.0) > 0.05  # 0.93 here


def test_the_slopes_of_a_float32_problem_are_float32():
    """The slopes keep the problem's precision (as a float32 solve does, under x64): the
    planted zeros of the least-squares test in a float32 ``Problem`` give float32 ``α``, equal
    to the float64 problem's to float32's rounding."""
    from gradflow.analysis._manifold import StateManifold

    out = {}
    for precision in ("float64", "float32"):
        problem, state, flat, d, g0, g, s, a = _planted_zeros_problem(
            [(1, 0), (4, 3)], precision=precision
        )
        assert flat.dtype == np.dtype(precision)
        aux = _multiplier_system.system_aux(np.ones(flat.size, bool), s, a, a.size)
        mu = np.zeros(aux[1].size, precision)
        mu[:2] = [0.3, -0.2]
        out[precision] = _multiplier_system.slopes(
            problem,
            StateManifold.of(problem, state),
            state,
            jnp.asarray(flat),
            aux,
            jnp.asarray(mu),
        )[0]
    assert out["float32"].dtype == np.float32
    np.testing.assert_allclose(out["float32"][:2], out["float64"][:2], rtol=1e-3)


def test_a_unit_is_dying_when_both_its_norms_are_small_relative_to_its_layer():
    """A 4-5-3-1 net: unit 1 of the first hidden layer at 1e-9 (dying) in a layer whose other
    units are not, and no dying unit in the second layer (the first layer's list is kept); unit
    2 of the second layer has incoming weights at 1e-9 but outgoing weights at 0.75e-6 of a
    layer whose largest outgoing norm is 0.5: at ``dying_tol = 1e-6`` that is above
    ``1e-6 × 0.5``, so it is not dying (the tolerance is relative to the layer, not to 1)."""
    from gradflow.analysis._sliding_set import identify

    data = gf.data.load("gaussian-mixture", n_train=N, n_test=0, dim=DIM, seed=0)
    problem = gf.Problem(
        MLP(DIM, (WIDTH, 3), 1, key=jax.random.PRNGKey(4)),
        data,
        weight_decay=LAM,
        normalization="none",
    )
    w1, w2, w3 = (np.array(w, float) for w in problem.to_weights(problem.initial_state()))
    w1[1] *= 1e-9
    w2[:, 1] *= 1e-9
    w3 *= 0.4 / np.max(np.abs(w3))
    w3[0, 0] = 0.5  # the layer's largest outgoing norm
    w2[2] *= 1e-9
    w3[0, 2] = 0.75e-6
    state = problem.to_state(tuple(jnp.asarray(w) for w in (w1, w2, w3)))
    assert identify(problem, state, 1e-2, 1e-6)[2] == [(0, 1)]
    w3[0, 2] = 0.25e-6  # below 1e-6 × 0.5: dying
    state = problem.to_state(tuple(jnp.asarray(w) for w in (w1, w2, w3)))
    assert identify(problem, state, 1e-2, 1e-6)[2] == [(0, 1), (1, 2)]


def test_the_tangent_projection_removes_each_directions_radial_part():
    """``S_k G = G − ⟨v̂_k, G⟩ v̂_k`` on every direction, the scales untouched (LM-all); the
    directions' part zero when they are frozen; the identity for Plain."""
    from gradflow.analysis._manifold import StateManifold

    rng = np.random.default_rng(0)
    for freeze in (False, True):
        problem = gf.Problem(
            MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(0)),
            _data(),
            weight_decay=LAM,
            normalization="lm-all",
            freeze_directions=freeze,
        )
        state = problem.initial_state()
        vec = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(np.shape(a))), state)
        got = StateManifold.of(problem, state).tangent(state, vec)
        np.testing.assert_array_equal(got["rho"], vec["rho"])
        for v, g, t in zip(state["v"], vec["v"], got["v"], strict=True):
            v, g = np.asarray(v), np.asarray(g)
            vh = v / np.sqrt(np.sum(v**2))
            want = np.zeros_like(g) if freeze else g - np.sum(vh * g) * vh
            np.testing.assert_allclose(t, want, rtol=1e-12, atol=1e-15)
    plain = gf.Problem(
        MLP(DIM, (WIDTH,), 1, key=jax.random.PRNGKey(0)),
        _data(),
        weight_decay=LAM,
        normalization="none",
    )
    state = plain.initial_state()
    assert StateManifold.of(plain, state).tangent(state, state) is state


def test_the_zero_state_is_a_filippov_equilibrium_with_nothing_to_divide():
    """At ``W = 0`` every unit is dying, ``S`` is empty and every gradient is exactly zero: a
    Filippov equilibrium (a saddle: zero is unstable for the dying units). Its Filippov
    residual and its distance from the start are 0, not ``0/0`` (before the fix: ``inf`` and
    ``nan``, and the verdict "not settled"); with the short flow left out (it costs a
    compilation here) every other check passes. The short flow's drift is the same ratio:
    0 where nothing moved, ``inf`` where a zero state moved."""
    problem, _, _ = _dying_problem()
    zero = jax.tree.map(jnp.zeros_like, problem.initial_state())
    fp = gf.equilibrium(problem, zero, spectrum=False, flow_time=0.0)
    c = fp.certificate
    assert c.relative_residual == 0.0 and c.filippov_residual == 0.0 and c.distance == 0.0
    assert c.n_dying == WIDTH and c.n_switching == 0 and c.dying_ratio > 1
    assert c.verdict == "not checked"
    assert c.reasons == ("the short flow was not run (flow_time = 0): not certifiable",)
    assert _certificate._ratio(0.0, 0.0) == 0.0
    assert _certificate._ratio(2.0, 0.0) == float("inf")
    assert _certificate._ratio(1.0, 4.0) == 0.25
