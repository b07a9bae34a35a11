"""The four parametrizations' maps against THEORY 3, written in NumPy.

For each parametrization: the state of given weights and back, the decay ``D`` penalized as
``(λ/2) D``, the velocity from a given gradient (the tangent projection
``S_k G = G − ⟨v̂_k, G⟩ v̂_k`` of the LM directions, and LM-last's ``1/ρ²`` on the last one), the
projection onto unit directions and the extra observables. The gradients are arbitrary arrays:
these are the maps themselves, independent of any network.
"""

import numpy as np
import pytest

import gradflow as gf
from gradflow import _parametrization as par

_rng = np.random.default_rng(1)
SHAPES = ((3, 2), (4, 3), (1, 4))
WEIGHTS = tuple(_rng.standard_normal(s) for s in SHAPES)
NORMS = np.array([np.linalg.norm(w) for w in WEIGHTS])
#: directions that are NOT of unit norm, to tell v from v/||v||
V = tuple(1.7 * w / n for w, n in zip(WEIGHTS, NORMS))
GRADS = tuple(_rng.standard_normal(s) for s in SHAPES)
G_RHO = _rng.standard_normal(3)


def _close(a, b, tol=1e-14):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _tangent(v, g):
    vh = v / np.linalg.norm(v)
    return g - np.vdot(vh, g) * vh


def test_norms():
    _close(par.layer_norms(WEIGHTS), NORMS)
    _close(par.direction_norms({"v": V}), 1.7 * np.ones(3))


def test_plain_is_the_weights_and_the_plain_gradient_flow():
    p = par.Plain()
    state = p.to_state(WEIGHTS)
    for got, w in zip(p.to_weights(state), WEIGHTS):
        _close(got, w)
    _close(p.decay(state), sum(np.sum(w**2) for w in WEIGHTS))
    for got, g in zip(p.velocity(state, {"w": GRADS})["w"], GRADS):
        _close(got, -g)
    assert p.project(state) is state and p.extra_observables(state, None, None, 0.1) == {}
    assert p.describe() == "none" and not p.freezes_directions


@pytest.mark.parametrize("cls", [par.LMAll, par.LMLast])
def test_lm_states_have_unit_directions(cls):
    p = cls()
    state = p.to_state(WEIGHTS)
    rho = NORMS if cls is par.LMAll else np.prod(NORMS)
    _close(state["rho"], rho)
    for v, w, n in zip(state["v"], WEIGHTS, NORMS):
        _close(v, w / n)
    back = p.to_weights(state)
    if cls is par.LMAll:  # W_k = ρ_k V_k
        for got, w in zip(back, WEIGHTS):
            _close(got, w)
    else:  # V_k (k < L), ρ V_L: the same network function, the scale on the last layer
        for got, w, n in zip(back[:-1], WEIGHTS, NORMS):
            _close(got, w / n)
        _close(back[-1], np.prod(NORMS) * WEIGHTS[-1] / NORMS[-1])
    _close(p.decay(state), np.sum(np.asarray(rho) ** 2))


@pytest.mark.parametrize("cls", [par.LMAll, par.LMLast])
def test_lm_velocity_is_the_tangent_projection(cls):
    """``dρ/dt = −∂L/∂ρ``, ``dV_k/dt = −S_k ∂L/∂V_k``, LM-last's last direction over ``ρ²``."""
    rho = np.array([0.7, 1.3, 2.1]) if cls is par.LMAll else np.asarray(1.9)
    g_rho = G_RHO if cls is par.LMAll else np.asarray(G_RHO[0])
    state, grad = {"rho": rho, "v": V}, {"rho": g_rho, "v": GRADS}
    vel = cls().velocity(state, grad)
    _close(vel["rho"], -g_rho)
    for k, (got, v, g) in enumerate(zip(vel["v"], V, GRADS)):
        scale = 1.0 / 1.9**2 if cls is par.LMLast and k == len(V) - 1 else 1.0
        _close(got, -scale * _tangent(v, g))
        _close(np.vdot(got, v), 0.0)  # tangent to the sphere through v
    frozen = cls(freeze_directions=True).velocity(state, grad)
    _close(frozen["rho"], -g_rho)
    for got in frozen["v"]:
        _close(got, np.zeros_like(got), tol=0)


@pytest.mark.parametrize("cls", [par.LMAll, par.LMLast])
def test_lm_projection_and_unit_norm_error(cls):
    p = cls()
    state = {"rho": np.asarray(2.0), "v": V}
    projected = p.project(state)
    assert projected["rho"] is state["rho"]
    for got, v in zip(projected["v"], V):
        _close(got, v / 1.7)
    v = (V[0] / 1.7 * 1.25, V[1] / 1.7 * 0.5, V[2] / 1.7)  # errors 0.25 and 0.5
    f = _rng.standard_normal((5, 2))
    y = _rng.standard_normal((5, 2))
    extra = p.extra_observables({"rho": np.asarray(2.0), "v": v}, f, y, 0.3)
    _close(extra["unit_norm_error"], 0.5)
    if cls is par.LMLast:  # ρ_eq = Σ⟨y_n, f_n⟩ / (Σ||f_n||² + Nλ/2), THEORY 4.1
        _close(extra["rho_eq"], np.sum(y * f) / (np.sum(f * f) + 5 * 0.3 / 2), tol=1e-13)
    else:
        assert set(extra) == {"unit_norm_error"}
    assert p.describe() == p.name and not p.freezes_directions
    frozen = cls(freeze_directions=True)
    assert frozen.freezes_directions and frozen.describe() == p.name + " (directions frozen)"


def test_weight_norm_state_scales_and_flow():
    p = par.WeightNorm()
    state = p.to_state(WEIGHTS)
    _close(state["g"], NORMS)
    for v, w, n in zip(state["v"], WEIGHTS, NORMS):
        _close(v, w / n)
    g = np.array([0.5, 2.0, 3.0])
    for got, v, gk in zip(p.to_weights({"g": g, "v": V}), V, g):  # g_k v_k / ||v_k||
        _close(got, gk * v / 1.7)
    _close(p.decay({"g": g, "v": V}), np.sum(g**2))
    vel = p.velocity({"g": g, "v": V}, {"g": G_RHO, "v": GRADS})
    _close(vel["g"], -G_RHO)
    for got, gr in zip(vel["v"], GRADS):
        _close(got, -gr)
    _close(p.extra_observables({"g": g, "v": V}, None, None, 0.1)["v_norm"], 1.7 * np.ones(3))


def test_shorthands_resolve_once_and_bad_values_name_the_key():
    for name, cls in (("none", gf.Plain), ("lm-all", gf.LMAll), ("lm-last", gf.LMLast)):
        assert type(par.resolve_parametrization(name)) is cls
    assert type(par.resolve_parametrization("wn")) is gf.WeightNorm
    assert par.resolve_parametrization("lm-last", True) == gf.LMLast(freeze_directions=True)
    instance = gf.LMAll()
    assert par.resolve_parametrization(instance) is instance
    assert par.resolve_parametrization(instance, True) == gf.LMAll(freeze_directions=True)
    frozen = gf.LMLast(freeze_directions=True)
    assert par.resolve_parametrization(frozen, True) is frozen
    with pytest.raises(ValueError, match=r"^Problem: normalization='lm' is not allowed; use one"):
        par.resolve_parametrization("lm")
    with pytest.raises(ValueError, match=r"^X: freeze_directions=1 is not allowed; use True or"):
        par.resolve_parametrization("lm-all", 1, where="X")
    for bad in ("none", "wn", gf.Plain(), gf.WeightNorm()):
        with pytest.raises(
            ValueError,
            match=r"^Y: freeze_directions=True is not allowed; it applies to normalization "
            r"'lm-all' or 'lm-last' only, not '(none|wn)'",
        ):
            par.resolve_parametrization(bad, True, where="Y")
