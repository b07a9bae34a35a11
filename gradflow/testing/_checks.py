"""Invariant checkers: each returns the measured deviation from an identity of the theory.

A checker never asserts: it returns a float (relative unless said otherwise), 0 where the
identity holds exactly, so that a test states its own tolerance — rounding for an identity of
the vector field, the solver's tolerance along an integrated flow — and reports the number
when it fails.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._parametrization import LMAll, LMLast, WeightNorm
from .._trajectory import Trajectory
from ..predict import rho_eq as _rho_eq


def _deviation(a, b) -> float:
    """``max |a − b| / max(max |a|, max |b|)`` (0 if both vanish)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.max(np.abs(a), initial=0)), float(np.max(np.abs(b), initial=0)))
    diff = float(np.max(np.abs(a - b), initial=0))
    return diff / scale if scale > 0 else diff


def _norms(weights):
    return [jnp.linalg.norm(w) for w in weights]


# ---- THEORY 2: homogeneity ------------------------------------------------------------------


@eqx.filter_jit
def _homogeneity(model, x, w, alpha, layer: int):
    norms = _norms(w)
    v = tuple(wk / n for wk, n in zip(w, norms))
    f = model.apply(w, x)
    scaled = tuple(alpha * wk if i == layer else wk for i, wk in enumerate(w))
    return f, jnp.prod(jnp.stack(norms)) * model.apply(v, x), model.apply(scaled, x), alpha * f


def homogeneity_error(model, x, weights=None, alpha: float = 2.0, layer: int = 0) -> float:
    """THEORY 2.1: ``f(W) = ρ f(V)``, and scaling layer ``layer`` (mod L) by ``alpha > 0``
    scales ``f`` by ``alpha``. The larger of the two relative deviations."""
    w = tuple(model.weights if weights is None else weights)
    f, rho_fv, scaled, alpha_f = _homogeneity(model, x, w, jnp.asarray(alpha), layer % len(w))
    return max(_deviation(f, rho_fv), _deviation(scaled, alpha_f))


@eqx.filter_jit
def _euler(model, x, w):
    f = model.apply(w, x)
    jac = jax.jacrev(model.apply)(w, x)  # per layer: (C, *W_k.shape)
    return f, [jnp.tensordot(jk, wk, axes=wk.ndim) for wk, jk in zip(w, jac)]


def euler_identity_error(model, x, weights=None) -> float:
    """THEORY 2.2: ``⟨W_k, ∇_{W_k} f(W; x)⟩ = f(W; x)`` for every layer and output, and summed
    over the layers ``L f``. The largest relative deviation."""
    w = tuple(model.weights if weights is None else weights)
    f, inner = _euler(model, x, w)
    errors = [_deviation(i, f) for i in inner]
    errors.append(_deviation(sum(np.asarray(i) for i in inner), len(w) * np.asarray(f)))
    return max(errors)


@eqx.filter_jit
def _scaling(model, x, w):
    norms = _norms(w)
    rho = jnp.prod(jnp.stack(norms))
    v = tuple(wk / n for wk, n in zip(w, norms))
    jw, jv = jax.jacrev(model.apply)(w, x), jax.jacrev(model.apply)(v, x)
    fv = model.apply(v, x)
    pairs = []
    for k in range(len(w)):
        pairs.append((jw[k], rho / norms[k] * jv[k]))
        pairs.append((jnp.tensordot(jv[k], v[k], axes=v[k].ndim), fv))
    return pairs


def gradient_scaling_error(model, x, weights=None) -> float:
    """THEORY 2.3: ``∇_{W_k} f(W) = (ρ/ρ_k) ∇_{V_k} f(V)`` and ``⟨V_k, ∇_{V_k} f(V)⟩ = f(V)``.
    The largest relative deviation over layers."""
    w = tuple(model.weights if weights is None else weights)
    return max(_deviation(a, b) for a, b in _scaling(model, x, w))


# ---- THEORY 3: the flows --------------------------------------------------------------------


@eqx.filter_jit
def _balance_rates(problem, state):
    def squares(s):
        return jnp.stack([jnp.sum(w**2) for w in problem.to_weights(s)])

    return jax.jvp(squares, (state,), (problem.velocity(state),))


def balance_rate_error(problem, state) -> float:
    """THEORY 3.1 on the vector field: ``d(ρ_k² − ρ_{k+1}²)/dt = −2λ (ρ_k² − ρ_{k+1}²)`` at
    ``state``, with ``ρ_k = ||W_k||`` and the flow's velocity. Relative to the largest
    ``|dρ_k²/dt|``. Holds for plain, LM-all and WN (whose scales obey the same law); refused
    for LM-last (one scale)."""
    if isinstance(problem.parametrization, LMLast):
        raise ValueError(
            "balance_rate_error: normalization='lm-last' is not allowed; the law holds for "
            "'none', 'lm-all' and 'wn' (LM-last has one scale)"
        )
    sq, rate = (np.asarray(a) for a in _balance_rates(problem, state))
    lhs = rate[:-1] - rate[1:]
    rhs = -2 * float(problem.weight_decay) * (sq[:-1] - sq[1:])
    scale = float(np.max(np.abs(rate)))
    diff = float(np.max(np.abs(lhs - rhs)))
    return diff / scale if scale > 0 else diff


def balance_law_error(trajectory: Trajectory, weight_decay: float) -> float:
    """THEORY 3.1 / 4.5 along a run: ``gap(t) = gap(0) e^{−2λt}`` for the recorded
    ``balance_gap`` (``ρ_k² − ρ_{k+1}²``) at the save times: the largest elementwise relative
    deviation ``|gap − predicted| / |predicted|`` (conserved gaps for ``λ = 0``)."""
    gap = np.asarray(trajectory["balance_gap"], dtype=float)
    t = np.asarray(trajectory.t, dtype=float)
    if trajectory.seeds is not None:
        raise ValueError("balance_law_error: use one run, not an ensemble of seeds")
    predicted = gap[0][None, :] * np.exp(-2 * weight_decay * t)[:, None]
    diff = np.abs(gap - predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.abs(predicted))
    return float(np.max(rel, initial=0))


def unit_norm_error(state_or_trajectory) -> float:
    """THEORY 3.2: ``max_k | ||V_k||_F − 1 |`` of an LM state, or of a run (the recorded
    ``unit_norm_error`` and the final state)."""
    if isinstance(state_or_trajectory, Trajectory):
        tr = state_or_trajectory
        recorded = (
            float(np.max(tr["unit_norm_error"])) if "unit_norm_error" in tr.observables else 0
        )
        final = 0.0 if tr.final_state is None else unit_norm_error(tr.final_state)
        return max(recorded, final)
    norms = [float(jnp.linalg.norm(v)) for v in state_or_trajectory["v"]]
    return max(abs(n - 1.0) for n in norms)


@eqx.filter_jit
def _velocity(problem, state):
    return problem.velocity(state)


@eqx.filter_jit
def _grad(problem, state):
    return jax.grad(problem.loss)(state)


def tangency_error(problem, state) -> float:
    """THEORY 2.4 / 3.2 / 3.3: the directions move on their spheres, ``⟨V_k, dV_k/dt⟩ = 0``
    (LM; WN's ``v_k`` likewise). The largest ``|cos(V_k, dV_k/dt)|`` (0 for plain)."""
    if not isinstance(problem.parametrization, (LMAll, LMLast, WeightNorm)):
        return 0.0
    vel = _velocity(problem, state)
    out = 0.0
    for v, dv in zip(state["v"], vel["v"]):
        v, dv = np.asarray(v), np.asarray(dv)
        scale = float(np.linalg.norm(v) * np.linalg.norm(dv))
        if scale > 0:
            out = max(out, abs(float(np.vdot(v, dv))) / scale)
    return out


def wn_norm_growth_error(problem, state, lr: float) -> float:
    """THEORY 3.3: one GD step of weight normalization, ``v ← v − η ∇_v L``, obeys
    ``||v_{j+1}||² = ||v_j||² + η² ||∇_v L||²`` for every layer (no decay on ``v``). The
    largest relative deviation."""
    if not isinstance(problem.parametrization, WeightNorm):
        raise ValueError(
            f"wn_norm_growth_error: normalization={problem.normalization!r} is not allowed; "
            "use 'wn'"
        )
    out = 0.0
    for v, g in zip(state["v"], _grad(problem, state)["v"]):
        v, g = np.asarray(v), np.asarray(g)
        after = float(np.sum((v - lr * g) ** 2))
        predicted = float(np.sum(v**2) + lr**2 * np.sum(g**2))
        out = max(out, abs(after - predicted) / after)
    return out


def loss_increase(trajectory: Trajectory, name: str = "loss") -> float:
    """Monotonicity along a flow (``dL/dt = −||∇L||² ≤ 0``, THEORY 3.1): the largest relative
    increase ``(L_{i+1} − L_i) / |L_i|`` between successive saves; ``≤ 0`` when the recorded
    loss never increases."""
    loss = np.asarray(trajectory[name], dtype=float)
    if loss.ndim != 1 or loss.size < 2:
        raise ValueError(f"loss_increase: {name!r} needs one run with at least two saves")
    return float(np.max(np.diff(loss) / np.abs(loss[:-1])))


# ---- THEORY 4: fixed points -----------------------------------------------------------------


@eqx.filter_jit
def _rho_and_rho_eq(problem, state):
    weights = problem.to_weights(state)
    return jnp.prod(jnp.stack(_norms(weights))), _rho_eq(problem, weights)


def rho_eq_error(problem, state) -> float:
    """THEORY 4.1: ``|ρ / ρ_eq(V) − 1|`` with ``ρ = Π_k ||W_k||`` and ``ρ_eq`` of the normalized
    outputs at ``state``: 0 at every fixed point of the LM-last flow (and, with the directions
    frozen, the limit of ρ)."""
    rho, rho_eq = (float(a) for a in _rho_and_rho_eq(problem, state))
    return abs(rho / rho_eq - 1)
