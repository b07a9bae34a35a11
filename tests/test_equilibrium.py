"""gf.equilibrium and gf.hessian_spectrum: exact fixed points of the flows and their spectra.

The reference problem is the two-layer linear network ``f = W2 W1 x`` on whitened inputs,
``(1/N) Σ_n x_n x_nᵀ = I``, with targets ``y_n = M x_n``: its loss (THEORY 1: mean over samples,
sum over outputs, no 1/2) is ``||W2 W1 − M||_F² + const + (λ/2)(||W1||² + ||W2||²)``.

Closed form (Baldi & Hornik 1989; Saxe et al. 2014), derived for these tests. Let
``M = U diag(s) Vᵀ`` with distinct singular values ``s_1 > s_2 > …`` (``s_j = 0`` up to
``min(n_in, n_out)``), ``d`` hidden units and a set ``S`` of ``d`` modes with ``s_k > λ/2``.
The balanced point ``W1 = Q D^{1/2} V_Sᵀ``, ``W2 = U_S D^{1/2} Qᵀ`` (``Q`` orthogonal,
``D = diag(s_k − λ/2)``, ``k ∈ S``) is a critical point. Rotating ``A = Qᵀ δW1 V`` and
``B = Uᵀ δW2 Q``, the second variation ``2||W2 A + B W1||² + 4⟨E, B A⟩ + λ(||A||² + ||B||²)``
(``E = W2 W1 − M``) splits into blocks of at most four variables, with eigenvalues

* for each ``k ∈ S``: ``4 s_k − 2λ`` and ``2λ``;
* for each pair ``k < l`` in ``S``: ``0`` (the ``O(d)`` symmetry), ``2λ``,
  ``2(s_k + s_l) − 2λ`` and ``2(s_k + s_l)``;
* for each ``k ∈ S`` and mode ``j ∉ S``, ``j ≤ min(n_in, n_out)``: ``2(s_k ± s_j)`` (negative
  when ``s_j > s_k``: ``S`` is a saddle unless it holds the top ``d`` modes);
* for each ``k ∈ S``: ``2 s_k``, ``|n_in − n_out|`` times.

At the zero state the second variation is ``−4⟨M, B A⟩ + λ(||A||² + ||B||²)``: eigenvalues
``λ ± 2 s_j`` for each hidden unit and mode ``j ≤ min(n_in, n_out)``, and ``λ``
(``d |n_in − n_out|`` times). With ``λ = 0`` the critical points form ``GL(d)`` orbits, with
``d²`` zero modes. The tests also compare the formulas with a dense ``jax.hessian``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

import gradflow as gf
import gradflow.testing as gft
from gradflow.analysis import symmetry_generators
from gradflow.models import DeepLinear

N_IN, D, N_OUT, N = 4, 2, 3, 12
SING = np.array([3.0, 2.0, 1.0])
LAM = 1.5


# ---- the two-layer linear reference ---------------------------------------------------------


def _orthogonal(rng, n):
    return np.linalg.qr(rng.normal(size=(n, n)))[0]


RNG = np.random.default_rng(0)
X = np.sqrt(N) * np.linalg.qr(RNG.normal(size=(N, N_IN)))[0]  # (1/N) XᵀX = I
U, V, Q = _orthogonal(RNG, N_OUT), _orthogonal(RNG, N_IN), _orthogonal(RNG, D)
M = U @ np.diag(SING) @ V[:, : len(SING)].T  # (N_OUT, N_IN), singular values SING
DATA = gf.data.Dataset("whitened", X, X @ M.T)  # (1/N) YᵀX = M


LINEAR = gft.architecture(
    "two-layer-linear",
    lambda k, s: DeepLinear(N_IN, (D,), N_OUT, init_scale=s, key=k),
    (N_IN,),
    N_OUT,
)


def _problem(lam=LAM, normalization="none"):
    net = gft.build_network(LINEAR, 0)  # weights drawn by NumPy: nothing to compile
    return gf.Problem(net, DATA, weight_decay=lam, normalization=normalization)


def _critical(modes, lam=LAM):
    mu = SING[list(modes)] - lam / 2
    w1 = Q @ np.diag(np.sqrt(mu)) @ V[:, list(modes)].T
    w2 = U[:, list(modes)] @ np.diag(np.sqrt(mu)) @ Q.T
    return (jnp.asarray(w1), jnp.asarray(w2))


def _perturbed(state, size, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: x + size * jnp.asarray(rng.normal(size=x.shape)), state)


def _closed_form(modes, lam=LAM):
    """The spectrum at the balanced critical point on ``modes`` (module docstring)."""
    s = np.zeros(min(N_IN, N_OUT))
    s[: len(SING)] = SING
    eig = []
    for k in modes:
        eig += [4 * s[k] - 2 * lam, 2 * lam] + [2 * s[k]] * abs(N_IN - N_OUT)
        eig += [2 * (s[k] + s[j]) for j in range(len(s)) if j not in modes]
        eig += [2 * (s[k] - s[j]) for j in range(len(s)) if j not in modes]
    for a, k in enumerate(modes):
        for l in modes[a + 1 :]:
            eig += [0.0, 2 * lam, 2 * (s[k] + s[l]) - 2 * lam, 2 * (s[k] + s[l])]
    return np.sort(eig)


def _closed_form_at_zero(lam=LAM):
    s = np.zeros(min(N_IN, N_OUT))
    s[: len(SING)] = SING
    per_unit = [lam + 2 * sj for sj in s] + [lam - 2 * sj for sj in s]
    return np.sort(per_unit * D + [lam] * (D * abs(N_IN - N_OUT)))


def _dense_hessian_eigenvalues(problem, state):
    flat, unravel = ravel_pytree(state)
    hessian = jax.jit(jax.hessian(lambda z: problem.loss(unravel(z))))
    return np.linalg.eigvalsh(np.asarray(hessian(flat)))


def _fitted_order(fp, floor=1e-13, last=3):
    """Least-squares exponent p of r_{k+1} = C r_k^p over the last full Newton steps (α = 1)
    whose residual stays above ``floor``, and the largest r_{k+1}/r_k² there. The floor is
    well above rounding (~1e-16): a last residual between 1e-15 and the rounding floor made
    the fitted order depend on the horizon (1.19 / 1.22 / 0.70 at t1 = 80 / 150 / 200)."""
    r = fp.relative_residuals
    pairs = [(r[k], r[k + 1]) for k in range(len(r) - 1) if fp.steps[k] == 1 and r[k + 1] > floor]
    pairs = pairs[-last:]
    assert len(pairs) >= 2, (r, fp.steps)
    x, y = np.log(np.asarray(pairs)).T
    return np.polyfit(x, y, 1)[0], max(b / a**2 for a, b in pairs)


def test_the_reference_problem_is_what_the_docstring_says():
    assert np.allclose(X.T @ X / N, np.eye(N_IN)) and np.allclose(DATA.y_train.T @ X / N, M)
    p = _problem()
    for modes in ((0, 1), (0, 2), (1, 2)):  # critical points: Newton has nothing to do
        fp = gf.equilibrium(p, {"w": _critical(modes)}, spectrum=False)
        assert fp.iterations == 0 and fp.relative_residual <= 1e-13
    assert len(_closed_form((0, 1))) == D * (N_IN + N_OUT) == len(_closed_form_at_zero())


# ---- convergence ----------------------------------------------------------------------------


def test_newton_converges_quadratically_on_a_deep_linear_net():
    """From 1% off the global minimum, the residual squares step by step (fitted exponent of
    r_{k+1} = C r_k^p at least 1.8), to a relative residual of 1e-12 or below."""
    p = _problem()
    fp = gf.equilibrium(p, _perturbed({"w": _critical((0, 1))}, 0.01, seed=1), spectrum=False)
    r = fp.relative_residuals
    assert fp.converged and fp.relative_residual <= 1e-12, fp.describe()
    assert fp.iterations >= 3 and np.all(np.diff(r) < 0), r
    order, c = _fitted_order(fp)
    print(f"\ndeep linear: relative residuals {r}, fitted order {order:.2f}, max r'/r² {c:.1f}")
    assert order >= 1.8 and c <= 20, r
    assert fp.convergence_order(floor=1e-15) >= 1.8
    assert not fp.pattern_changed  # a linear network has no activation pattern


def test_a_fixed_inexact_newton_tolerance_converges_only_linearly():
    """The control of the test above: Newton steps solved to a fixed 10% (not O(||F||)) converge
    linearly, and the fitted exponent says so."""
    p = _problem()
    start = _perturbed({"w": _critical((0, 1))}, 0.01, seed=1)
    fp = gf.equilibrium(p, start, spectrum=False, max_iter=6, forcing=0.3)
    order, c = _fitted_order(fp)
    assert order < 1.5 and c > 100, fp.relative_residuals


# ---- spectra --------------------------------------------------------------------------------


def test_spectrum_at_the_global_minimum_is_the_closed_form():
    """Lanczos (matrix-free), the dense jax.hessian and the closed form agree to 1e-8."""
    p = _problem()
    fp = gf.equilibrium(p, _perturbed({"w": _critical((0, 1))}, 0.01, seed=2))
    spec = fp.spectrum
    expected = _closed_form((0, 1))
    dense = _dense_hessian_eigenvalues(p, fp.state)
    err_lanczos = np.max(np.abs(spec.eigenvalues - expected))
    err_dense = np.max(np.abs(dense - expected))
    print(
        f"\nminimum: |Lanczos − closed form| = {err_lanczos:.1e}, "
        f"|dense − closed form| = {err_dense:.1e}"
    )
    assert spec.complete and spec.dim == len(expected)
    assert err_lanczos <= 1e-8 and err_dense <= 1e-8
    assert (spec.n_negative, spec.n_zero) == (0, D * (D - 1) // 2)
    assert spec.symmetries == {f"O({D}), hidden layer 1": D * (D - 1) // 2}
    assert spec.n_symmetry == spec.n_zero and spec.symmetry_residual <= 1e-10
    assert fp.kind == "minimum"


def test_report_at_a_plain_fixed_point():
    """THEORY 4.2 and 4.5 at the polished minimum of the plain problem (λ > 0): equal ρ_k,
    λ ρ^{2/L} = ρ s and balanced layers, to rounding, in the column "fixed point"."""
    p = _problem()
    fp = gf.equilibrium(p, _perturbed({"w": _critical((0, 1))}, 0.01, seed=6), spectrum=False)
    rows = {
        r["theory"] + " " + r["prediction"][:5]: r for r in gf.predict.report(p, equilibrium=fp)
    }
    assert sorted(rows) == ["4.2 equal", "4.2 lambd", "4.5 balan"], sorted(rows)
    for row in rows.values():
        assert row["gap[fixed point]"] <= 1e-12, row
    start = gf.predict.report(
        p,
        equilibrium=gf.equilibrium(
            p, _perturbed({"w": _critical((0, 1))}, 0.01, seed=6), max_iter=1, spectrum=False
        ),
    )
    # the identities can fail; an unconverged point is not called a fixed point
    assert all(r["gap[uncertified point]"] > 1e-9 for r in start), start
    assert all("gap[fixed point]" not in r for r in start)
    with pytest.raises(ValueError, match="no runs and no equilibrium"):
        gf.predict.report(p)


def test_a_saddle_is_reported_as_a_saddle():
    """At the zero state (a saddle of every deep linear net) and at the critical point on the
    modes {1, 3} (not the top two): the spectra are the closed forms and the negative counts
    the analytic ones, d·#{2 s_j > λ} and #{(k, j): j ∉ S, s_j > s_k}."""
    p = _problem()
    zero = gf.equilibrium(p, {"w": tuple(jnp.zeros_like(w) for w in _critical((0, 1)))})
    assert zero.converged and zero.iterations == 0 and zero.residual == 0
    np.testing.assert_allclose(zero.spectrum.eigenvalues, _closed_form_at_zero(), atol=1e-8)
    assert zero.spectrum.n_negative == D * int(np.sum(2 * SING > LAM)) == 6
    assert zero.kind == "saddle"

    modes = (0, 2)
    fp = gf.equilibrium(p, _perturbed({"w": _critical(modes)}, 0.01, seed=3))
    assert fp.converged and fp.relative_residual <= 1e-12, fp.describe()
    expected = _closed_form(modes)
    np.testing.assert_allclose(fp.spectrum.eigenvalues, expected, atol=1e-8)
    analytic = sum(
        1 for k in modes for j in range(len(SING)) if j not in modes and SING[j] > SING[k]
    )
    print(f"\nsaddle {modes}: {fp.spectrum.n_negative} negative eigenvalues, analytic {analytic}")
    assert fp.spectrum.n_negative == analytic == 1
    assert fp.kind == "saddle"


def test_without_decay_the_zero_modes_are_the_gl_symmetry():
    """λ = 0: the minima form GL(d) orbits; the d² zero modes are named and explained."""
    p = _problem(lam=0.0)
    fp = gf.equilibrium(p, _perturbed({"w": _critical((0, 1), lam=0.0)}, 0.01, seed=4))
    spec = fp.spectrum
    assert fp.converged and fp.relative_residual <= 1e-12
    assert (spec.n_negative, spec.n_zero, spec.n_symmetry) == (0, D * D, D * D)
    assert spec.symmetries == {f"GL({D}), hidden layer 1": D * D}
    assert fp.kind == "minimum"
    # with one zero mode more than the symmetries explain, the point would be degenerate
    assert gf.hessian_spectrum(p, fp.state, zero_tol=0.9).kind in ("degenerate", "saddle")


def test_lm_and_wn_fixed_points_have_the_plain_inertia():
    """The global minimum W* of the plain problem, written as an LM-all state and as a WN state
    with ||v_k|| ≠ 1, is a fixed point of those flows; their spectra on the state manifolds have
    the plain inertia (the same counts; a change of coordinates at a critical point). WN with
    ||v_k|| = 1 is LM-all (THEORY 3.3): the same spectrum. Newton on WN keeps every ||v_k||."""
    w = _critical((0, 1))
    plain = gf.hessian_spectrum(_problem(), {"w": w})
    p = _problem(normalization="lm-all")
    lm_all = gf.hessian_spectrum(p, p.to_state(w))
    radii = (0.5, 2.0)
    p = _problem(normalization="wn")
    unit = gf.hessian_spectrum(p, p.to_state(w))
    np.testing.assert_allclose(unit.eigenvalues, lm_all.eigenvalues, atol=1e-10)
    for norm in ("lm-all", "wn"):
        p = _problem(normalization=norm)
        state = p.to_state(w)
        if norm == "wn":
            state = {**state, "v": tuple(r * v for r, v in zip(radii, state["v"]))}
        assert float(np.max(np.abs(ravel_pytree(p.velocity(state))[0]))) < 1e-13
        spec = gf.hessian_spectrum(p, state)
        counts = (spec.n_negative, spec.n_zero, spec.n_positive, spec.n_symmetry)
        assert counts == (plain.n_negative, plain.n_zero, plain.n_positive, plain.n_symmetry)
        assert spec.dim == plain.dim  # WN's ||v_k|| are not directions of the manifold

    p = _problem(normalization="wn")
    start = p.to_state(_perturbed({"w": w}, 0.01, seed=5)["w"])
    start = {**start, "v": tuple(r * v for r, v in zip(radii, start["v"]))}
    fp = gf.equilibrium(p, start, spectrum=False)
    assert fp.converged and fp.relative_residual <= 1e-12, fp.describe()
    np.testing.assert_allclose([jnp.linalg.norm(v) for v in fp.state["v"]], radii, rtol=1e-14)


# ---- symmetries ------------------------------------------------------------------------------


@eqx.filter_jit
def _grad(problem, state):
    return jax.grad(problem.loss)(state)


def _orbit_dimension(problem, state, k, relu):
    """The dimension of the symmetry orbit of hidden layer ``k``, from the weights' ranks: per
    unit rescalings, ``d`` (none vanishes for nonzero rows); ``GL(d)``, ``d²`` less the
    ``A = a nᵀ`` with ``a ∈ null(W_{k+1})``, ``n ∈ null(W_kᵀ)``; ``O(d)``, ``d(d − 1)/2`` less the
    antisymmetric ``A`` supported on ``null(W_kᵀ) ∩ null(W_{k+1})``. LM-last's state forgets the
    layer-wise rescaling ``A = I`` (not in ``o(d)``)."""
    w = [np.asarray(x) for x in problem.to_weights(state)]
    d = w[k].shape[0]
    lm_last = problem.normalization == "lm-last"
    if relu:
        return d - lm_last
    w_in, w_out = w[k].reshape(d, -1), w[k + 1].reshape(-1, d)
    r_in, r_out = np.linalg.matrix_rank(w_in), np.linalg.matrix_rank(w_out)
    if float(problem.weight_decay) == 0:
        return d * d - (d - r_in) * (d - r_out) - lm_last
    both = np.linalg.matrix_rank(np.vstack([w_in.T, w_out]))  # rank of [W_kᵀ; W_{k+1}]
    m = d - both  # dim(null(W_kᵀ) ∩ null(W_{k+1}))
    return d * (d - 1) // 2 - m * (m - 1) // 2


@settings(max_examples=6)
@given(
    problem_state=gft.problem_states(
        st.sampled_from(["mlp-small", "mlp-linear", "cnn1d-dense"]),
        weight_decay=[0.0, 0.1],
    )
)
def test_the_named_symmetries_leave_the_loss_invariant(problem_state):
    """At any state (not only at fixed points), the generators of the named symmetries are
    tangent to the state manifold and the loss is stationary along them, ⟨∇L, ξ⟩ = 0; their
    number is the symmetry's dimension (per-unit rescalings lose the L − 1 layer-wise ones in
    LM-last, whose state has a single scale)."""
    problem, state = problem_state
    gens = symmetry_generators(problem, state)
    grad = np.asarray(ravel_pytree(_grad(problem, state))[0])
    flat = np.asarray(ravel_pytree(state)[0])
    model, lam = problem.model, float(problem.weight_decay)
    relu = getattr(model, "activation", "relu") == "relu"
    if relu and lam > 0:
        assert gens == {}
        return
    assert gens
    for name, g in gens.items():
        assert np.max(np.abs(g @ grad)) <= 1e-10 * np.linalg.norm(grad) * np.linalg.norm(flat)
        rank = np.linalg.matrix_rank(g, tol=1e-8 * np.linalg.norm(g, 2))
        k = int(name.rsplit(" ", 1)[-1]) - 1
        assert rank == _orbit_dimension(problem, state, k, relu), (name, rank)
        if "v" in state:  # tangent to the spheres of the directions: ⟨v_k, ξ_k⟩ = 0
            unravel = ravel_pytree(state)[1]
            for xi in g:
                for v, dv in zip(state["v"], unravel(jnp.asarray(xi))["v"]):
                    assert abs(float(jnp.vdot(v, dv))) <= 1e-12 * float(
                        jnp.linalg.norm(v) * jnp.linalg.norm(dv) + 1e-300
                    )


# ---- a ReLU network: the scenario section [equilibrium] ------------------------------------

SCENARIO = {
    "scenario": {"name": "fixed_point", "question": "is rho = rho_eq(V) at the fixed point?"},
    "data": {"name": "gaussian-mixture", "n_train": 96, "n_test": 0, "dim": 4, "seed": 3},
    "model": {"kind": "mlp", "widths": [4], "init_scale": 0.5, "seed": 3},
    "problem": {"weight_decay": 0.05, "normalization": "lm-last"},
    "flow": {"t1": 100.0, "save_every": 50.0},
    "equilibrium": {},
    "output": {"plot": ["loss", "rho"]},
}


@pytest.mark.parametrize("t1", [80.0, 150.0, 200.0])
def test_relu_lm_last_newton_converges_quadratically_at_several_horizons(t1):
    """Newton from the end of the ReLU LM-last flow converges quadratically wherever the flow
    stopped. Checked on the last full step whose result is above 1e-13 (well clear of
    rounding): r_{k+1} ≤ C r_k² with C ≤ 1e4, and r_{k+1}/r_k ≤ 1e-3 (a linearly converging
    Newton, as with a fixed forcing, has a ratio near its forcing). A fitted exponent over two
    steps is not robust here: at t1 = 80 the residuals go 6.0e-5 → 1.9e-8 → 1.6e-12 (C = 5,
    then 4,200: quadratic with a large constant), a fitted order of 1.17; at t1 = 150 the
    pre-asymptotic pair 7.5e-5 → 6.8e-5 has C = 12,000."""
    from gradflow.scenario import build_problem, validate

    problem = build_problem(validate(SCENARIO))
    tr = gf.flow(problem, t1=t1, save_every=t1)
    fp = gf.equilibrium(problem, tr, spectrum=False)
    assert fp.converged and not fp.pattern_changed, fp.describe()
    r = fp.relative_residuals
    k = max(k for k in range(len(r) - 1) if fp.steps[k] == 1 and r[k + 1] > 1e-13)
    assert r[k + 1] <= 1e4 * r[k] ** 2 and r[k + 1] <= 1e-3 * r[k], (t1, r, fp.steps)


def test_relu_lm_last_fixed_point_from_the_end_of_the_flow(tmp_path):
    """The scenario runs the flow, then gf.equilibrium from its end. On this ReLU net the
    activation pattern does not change; Newton converges quadratically, and the exact identity
    ρ = ρ_eq(V) of THEORY 4.1 holds to 1e-12 at the polished point, against 1e-5 at the end
    of the flow; the report prints the fixed-point column. The Riemannian Hessian (Lanczos, with
    the curvature of the spheres) is the Hessian of the loss pulled back by the retraction."""
    from gradflow.scenario import build_problem, run, validate

    lines = []
    config = validate(SCENARIO)
    out = run(config, tmp_path, progress=False, echo=lines.append)
    fp, tr = out.equilibrium, out.trajectories["flow"]
    problem = build_problem(config)  # the problem the scenario ran
    assert fp.converged and fp.relative_residual <= 1e-12, fp.describe()
    assert fp.pattern_flips is not None and not fp.pattern_changed
    order, c = _fitted_order(fp, last=2)
    before, after = gft.rho_eq_error(problem, tr.final_state), gft.rho_eq_error(problem, fp.state)
    print(
        f"\nReLU LM-last: residuals {fp.relative_residuals}, steps {fp.steps}, order {order:.2f}"
        f" (max r'/r² {c:.1f}), |rho/rho_eq - 1| "
        f"{before:.2e} (end of flow) -> {after:.2e} (fixed point)"
    )
    assert order >= 1.8, fp.relative_residuals
    assert after <= 1e-12 < 1e-8 < before
    text = "\n".join(lines)
    assert "fixed point (Filippov, THEORY 3.6): certified" in text
    assert "fixed point: " in text.split("4.1")[1]
    rows = gf.predict.report(problem, {"flow": tr}, equilibrium=fp)
    assert rows[0]["theory"] == "4.1" and rows[0]["gap[fixed point]"] <= 1e-12
    assert rows[0]["gap[flow]"] == pytest.approx(before, rel=1e-6, abs=0)

    # the Riemannian Hessian is the Hessian of L∘R on the tangent space (R = problem.project):
    # an orthonormal basis of the tangent space, block by block (ρ free, V_k ⟂ V_k)
    flat, unravel = ravel_pytree(fp.state)
    blocks = [np.eye(1)]
    for v in fp.state["v"]:
        u = np.asarray(v).ravel()[:, None]
        vals, vecs = np.linalg.eigh(np.eye(u.size) - u @ u.T)
        blocks.append(vecs[:, vals > 0.5])
    basis = scipy.linalg.block_diag(*blocks)  # state order: rho, then the V_k

    def pulled_back(xi):
        return problem.loss(problem.project(unravel(flat + jnp.asarray(basis) @ xi)))

    hess = np.asarray(jax.jit(jax.hessian(pulled_back))(jnp.zeros(basis.shape[1])))
    reference = np.linalg.eigvalsh((hess + hess.T) / 2)
    scale = np.max(np.abs(reference))
    assert np.max(np.abs(fp.spectrum.eigenvalues - reference)) <= 1e-8 * scale
    assert fp.spectrum.dim == flat.size - problem.num_layers  # one sphere per direction


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tol": 0.0}, r"equilibrium: tol=0.0 is not allowed; use a number > 0"),
        ({"tol": float("nan")}, r"equilibrium: tol=nan is not allowed"),
        ({"atol": -1.0}, r"equilibrium: atol=-1.0 is not allowed; use a number >= 0"),
        ({"max_iter": 0}, r"equilibrium: max_iter=0 is not allowed; use an integer >= 1"),
        ({"max_iter": 2.5}, r"equilibrium: max_iter=2.5 is not allowed"),
        ({"linear_solver": "cg"}, r"equilibrium: linear_solver='cg' is not allowed; use 'lsmr'"),
        ({"forcing": 1.5}, r"equilibrium: forcing=1.5 is not allowed; use a number in \(0, 1\)"),
        ({"state": {"w": (1.0,)}}, r"equilibrium: state=.* is not allowed; use a state of this"),
    ],
)
def test_equilibrium_bad_input_is_one_line(kwargs, match):
    kwargs = dict(kwargs)
    state = kwargs.pop("state", None)
    with pytest.raises(ValueError, match=match) as info:
        gf.equilibrium(_problem(), state, **kwargs)
    assert "\n" not in str(info.value)


def test_spectrum_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"hessian_spectrum: method='qr' is not allowed"):
        gf.hessian_spectrum(_problem(), method="qr")
    with pytest.raises(ValueError, match=r"hessian_spectrum: num_iter=0 is not allowed"):
        gf.hessian_spectrum(_problem(), num_iter=0)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"tol": 0}, r"^equilibrium.tol=0 is not allowed; use a number > 0 and < 1$"),
        ({"max_iter": -3}, r"^equilibrium.max_iter=-3 is not allowed; use an integer >= 1$"),
        ({"spectrum": "yes"}, r"^equilibrium.spectrum='yes' is not allowed; use true or false$"),
        ({"steps": 3}, r"^equilibrium.steps=3 is not a known key; allowed in \[equilibrium\]"),
    ],
)
def test_scenario_equilibrium_section_is_validated(change, match):
    from gradflow.scenario import ConfigError, validate

    table = {**SCENARIO, "equilibrium": change}
    with pytest.raises(ConfigError, match=match):
        validate(table)


def test_scenario_equilibrium_needs_a_flow_run():
    from gradflow.scenario import ConfigError, validate

    table = {k: v for k, v in SCENARIO.items() if k != "flow"}
    table["gd"] = {"lr": 0.1, "t1": 1.0}
    with pytest.raises(ConfigError, match=r"^equilibrium.enabled=True is not allowed; .*\[flow\]"):
        validate(table)
    assert validate({**table, "equilibrium": {"enabled": False}}).equilibrium is None
    config = validate(SCENARIO)
    assert config.equilibrium == {"tol": 1e-12, "max_iter": 50, "spectrum": True}
