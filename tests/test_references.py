"""Independent references for the LM flows (THEORY 3.2).

The reference is written from THEORY 3.2's equations alone: a bias-free 3-layer network's forward
pass and its Jacobian-transpose products ``J_{k,n}ᵀ r_n`` by hand in NumPy, and the ``(ρ, V_k)``
ODEs integrated by SciPy's ``solve_ivp`` (DOP853). Nothing here calls gradflow's loss, velocity or
parametrization; ``gf.flow`` is compared against it to the solvers' tolerance, through the
``weights`` observable group (every ``W_k`` at every save time).

The network is a deep *linear* one (σ = identity, THEORY 1): a ReLU network's flow slides along
switching surfaces (a Filippov sliding motion), where no explicit integrator reaches a
tight tolerance (the reference then takes ~1e5 steps), and the smooth case is what can be
compared to ~1e-10. The equations of 3.2 are the same for both: the activation only enters
``f`` and ``J``. A ReLU network is compared too, on a horizon short enough that no
pre-activation changes sign (a terminal event of the reference on the smallest signed
pre-activation), where its flow is smooth.
"""

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import gradflow as gf
from gradflow.models import MLP

DIMS = (4, 5, 3, 2)  # d, two hidden widths, C
N = 6
T1 = 1.5
SAVES = np.linspace(0.0, T1, 7)


def _forward(vs, x, relu=False):
    """``f(V; x) = V_3 σ(V_2 σ(V_1 x))`` for the rows of ``x`` (σ = identity or ReLU), every
    layer's input and every hidden pre-activation."""
    hs, zs = [x], []
    for v in vs[:-1]:
        zs.append(hs[-1] @ v.T)
        hs.append(np.maximum(zs[-1], 0.0) if relu else zs[-1])
    return hs[-1] @ vs[-1].T, hs, zs


def _descent_directions(vs, x, r, relu=False):
    """``A_k = (2/N) Σ_n J_{k,n}ᵀ r_n`` by hand-written back-propagation."""
    _, hs, zs = _forward(vs, x, relu)
    n = x.shape[0]
    delta = r  # (N, C): ∂⟨r_n, f⟩/∂(output pre-activation)
    out = [None] * len(vs)
    for k in range(len(vs) - 1, -1, -1):
        out[k] = (2.0 / n) * delta.T @ hs[k]
        if k:
            delta = delta @ vs[k]
            if relu:
                delta = delta * (zs[k - 1] > 0)
    return out


def _tangent(v, g):
    """``S_k G = G − ⟨V_k, G⟩ V_k`` (THEORY 2.4), for unit ``V_k``."""
    return g - np.sum(v * g) * v


def _split(y, shapes, n_rho):
    rho, rest, vs = y[:n_rho], y[n_rho:], []
    for shape in shapes:
        size = int(np.prod(shape))
        vs.append(rest[:size].reshape(shape))
        rest = rest[size:]
    return rho, vs


def _rhs(variant, x, ytarget, lam, shapes, relu=False):
    """THEORY 3.2's right-hand side on ``y = (ρ or ρ_1..ρ_L, vec V_1, …, vec V_L)``."""
    n_rho = 1 if variant == "lm-last" else len(shapes)

    def rhs(_t, y):
        rhos, vs = _split(y, shapes, n_rho)
        rho = np.prod(rhos)
        f, _, _ = _forward(vs, x, relu)
        r = ytarget - rho * f
        s = (2.0 / x.shape[0]) * np.sum(r * f)
        a = _descent_directions(vs, x, r, relu)
        dv = [rho * _tangent(v, ak) for v, ak in zip(vs, a)]
        if variant == "lm-last":
            drho = np.array([s - lam * rho])
            dv[-1] = _tangent(vs[-1], a[-1]) / rho
        else:
            drho = (rho / rhos) * s - lam * rhos
        return np.concatenate([drho] + [d.ravel() for d in dv])

    return rhs


def _problem(variant, lam, seed, activation="linear"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, DIMS[0]))
    labels = np.arange(N) % DIMS[-1]
    y = np.eye(DIMS[-1])[labels]
    key = jax.random.PRNGKey(seed)
    net = MLP(DIMS[0], DIMS[1:-1], DIMS[-1], activation=activation, init_scale=0.7, key=key)
    w = [np.asarray(a) for a in net.weights]
    data = gf.data.Dataset("reference", x, y)
    return gf.Problem(net, data, weight_decay=lam, normalization=variant), x, y, w


def _reference(variant, x, y, w, lam, relu=False, t1=T1, saves=SAVES):
    shapes = [a.shape for a in w]
    norms = np.array([np.linalg.norm(a) for a in w])
    rho0 = np.array([np.prod(norms)]) if variant == "lm-last" else norms
    y0 = np.concatenate([rho0] + [(a / n).ravel() for a, n in zip(w, norms)])
    n_rho = len(rho0)

    def signed_margin(_t, y):  # > 0 while every hidden pre-activation keeps its initial sign
        zs = np.concatenate([z.ravel() for z in _forward(_split(y, shapes, n_rho)[1], x, relu)[2]])
        return np.min(zs * sign0)

    sign0 = np.sign(np.concatenate([z.ravel() for z in _forward(w, x, relu)[2]]))
    signed_margin.terminal = True
    sol = solve_ivp(
        _rhs(variant, x, y, lam, shapes, relu),
        (0.0, t1),
        y0,
        method="DOP853",
        t_eval=saves,
        rtol=1e-12,
        atol=1e-13,
        events=signed_margin if relu else None,
    )
    assert sol.status == 0, sol.message  # 1: a pre-activation reached 0 (a switching surface)
    weights = []  # per save time: W_k
    for y_t in sol.y.T:
        rhos, vs = _split(y_t, shapes, n_rho)
        if variant == "lm-last":
            weights.append(vs[:-1] + [rhos[0] * vs[-1]])
        else:
            weights.append([r * v for r, v in zip(rhos, vs)])
    return weights


def _max_weight_error(problem, ref, t1, saves) -> float:
    """``gf.flow`` (Tsit5, rtol 1e-11, saved at ``saves``) against the reference's weights:
    the largest absolute difference over save times, layers and entries."""
    tr = gf.flow(
        problem,
        t1=t1,
        ts=saves,
        solver="tsit5",
        rtol=1e-11,
        atol=1e-13,
        dtmin=None,
        observables=("weights",),
    )
    np.testing.assert_allclose(tr.t, saves)
    return max(
        float(np.max(np.abs(tr[f"w{k}"][i] - ref_wk.ravel())))
        for i, ref_w in enumerate(ref)
        for k, ref_wk in enumerate(ref_w)
    )


@pytest.mark.parametrize(
    ("lam", "variant"),
    [
        pytest.param(0.0, "lm-last", marks=pytest.mark.long),
        (0.3, "lm-last"),
        (0.0, "lm-all"),
        pytest.param(0.3, "lm-all", marks=pytest.mark.long),
    ],
)
def test_lm_flow_matches_scipy_reference(variant, lam):
    """gf.flow's LM flows equal THEORY 3.2's ODEs integrated by SciPy, at every save time."""
    problem, x, y, w = _problem(variant, lam, seed=1)
    ref = _reference(variant, x, y, w, lam)
    err = _max_weight_error(problem, ref, T1, SAVES)
    assert err <= 2e-11, err  # measured 1.7e-13 to 3.6e-13 (lm-last, λ = 0.3)


RELU_T1 = 0.1  # seed 4: no sign change up to t = 0.1 (at t = 0.3 one has crossed)
RELU_SAVES = np.linspace(0.0, RELU_T1, 4)


def test_relu_lm_last_flow_matches_scipy_reference():
    """A ReLU LM-last net (the paper's model) on a horizon where no pre-activation changes sign
    (the reference checks it): gf.flow equals THEORY 3.2's ODEs integrated by SciPy."""
    problem, x, y, w = _problem("lm-last", 0.1, seed=4, activation="relu")
    ref = _reference("lm-last", x, y, w, 0.1, relu=True, t1=RELU_T1, saves=RELU_SAVES)
    err = _max_weight_error(problem, ref, RELU_T1, RELU_SAVES)
    moved = max(np.max(np.abs(r - w0)) for r, w0 in zip(ref[-1], w))
    print(f"\nReLU LM-last: max |W - W_ref| = {err:.1e}, the weights moved by {moved:.2f}")
    assert moved > 1e-2  # the flow went somewhere
    assert err <= 2e-11, err
