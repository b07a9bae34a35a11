"""The four parametrizations of THEORY.md 3: their states, weights, decay and velocity.

A *state* is the pytree that every dynamics (ODE, SDE, SGD) evolves:

===========  ==========================================  ==================================
name         state                                       weights ``W_k``
===========  ==========================================  ==================================
``none``     ``{"w": (W_1, ..., W_L)}``                  ``W_k``
``lm-all``   ``{"rho": (L,), "v": (V_1, ..., V_L)}``     ``ρ_k V_k``
``lm-last``  ``{"rho": (), "v": (V_1, ..., V_L)}``       ``V_k`` (k < L), ``ρ V_L``
``wn``       ``{"g": (L,), "v": (v_1, ..., v_L)}``       ``g_k v_k / ||v_k||``
===========  ==========================================  ==================================

Each dynamics descends the total loss ``L(state) = L_data(W(state)) + (λ/2) D(state)`` where
``D`` is ``Σ||W_k||²`` (none), ``Σρ_k²`` (lm-all), ``ρ²`` (lm-last) or ``Σg_k²`` (wn). The
velocity is ``−∇L`` with, for the LM variants, the direction gradients projected on the
tangent space of the unit sphere, ``S_k G = G − ⟨V_k, G⟩ V_k``, and (lm-last) the last
direction's divided by ``ρ²``. With ``||V_k|| = 1`` this reproduces THEORY 3.1–3.3 exactly:

* lm-all:  ``dρ_k/dt = (ρ/ρ_k) s − λρ_k``,  ``dV_k/dt = ρ S_k A_k``;
* lm-last: ``dρ/dt = s − λρ``,  ``dV_k/dt = ρ S_k A_k`` (k<L),  ``dV_L/dt = (1/ρ) S_L A_L``;
* wn: plain gradient flow on ``(g, v)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMALIZATIONS = ("none", "lm-all", "lm-last", "wn")
LM = ("lm-all", "lm-last")


def _fro(a):
    return jnp.sqrt(jnp.sum(a**2))


def to_state(normalization: str, weights) -> dict:
    """Map weights ``W`` to the state of ``normalization`` (the network function is kept)."""
    weights = tuple(weights)
    norms = jnp.stack([_fro(w) for w in weights])
    dirs = tuple(w / n for w, n in zip(weights, norms))
    if normalization == "none":
        return {"w": weights}
    if normalization == "lm-all":
        return {"rho": norms, "v": dirs}
    if normalization == "lm-last":
        return {"rho": jnp.prod(norms), "v": dirs}
    if normalization == "wn":
        return {"g": norms, "v": dirs}
    raise ValueError(f"normalization={normalization!r} is not allowed; use one of {NORMALIZATIONS}")


def to_weights(normalization: str, state) -> tuple:
    """The layer weights ``W_k`` of a state (see the module table)."""
    if normalization == "none":
        return tuple(state["w"])
    v = state["v"]
    if normalization == "lm-all":
        return tuple(state["rho"][k] * v[k] for k in range(len(v)))
    if normalization == "lm-last":
        return tuple(v[:-1]) + (state["rho"] * v[-1],)
    return tuple(state["g"][k] * v[k] / _fro(v[k]) for k in range(len(v)))


def decay(normalization: str, state):
    """``D(state)``: the sum of squares that weight decay penalizes as ``(λ/2) D``."""
    if normalization == "none":
        return sum(jnp.sum(w**2) for w in state["w"])
    if normalization == "wn":
        return jnp.sum(state["g"] ** 2)
    return jnp.sum(state["rho"] ** 2)


def _tangent(v, g):
    """``S g = g − ⟨v̂, g⟩ v̂`` with ``v̂ = v / ||v||``."""
    vh = v / _fro(v)
    return g - jnp.sum(vh * g) * vh


def velocity(normalization: str, state, grad, *, freeze_directions: bool = False):
    """The flow's velocity from the gradient ``grad = ∇L(state)`` (same pytree).

    Also used for the SDE's noise (a gradient-shaped vector) and for SGD steps.
    """
    if normalization in ("none", "wn"):
        return jax.tree.map(jnp.negative, grad)
    vel_v = tuple(-_tangent(v, g) for v, g in zip(state["v"], grad["v"]))
    if normalization == "lm-last":
        vel_v = vel_v[:-1] + (vel_v[-1] / state["rho"] ** 2,)
    if freeze_directions:
        vel_v = tuple(jnp.zeros_like(v) for v in vel_v)
    return {"rho": -grad["rho"], "v": vel_v}


def project(normalization: str, state):
    """Put the LM directions back on their unit spheres (identity for none and wn)."""
    if normalization not in LM:
        return state
    return {"rho": state["rho"], "v": tuple(v / _fro(v) for v in state["v"])}


def unit_norm_error(normalization: str, state):
    """``max_k | ||V_k||_F − 1 |`` (LM variants)."""
    return jnp.max(jnp.stack([jnp.abs(_fro(v) - 1.0) for v in state["v"]]))


def direction_norms(state):
    """``||v_k||`` for every layer (WN: constant along the flow, THEORY 3.3)."""
    return jnp.stack([_fro(v) for v in state["v"]])


def layer_norms(weights):
    """``ρ_k = ||W_k||_F`` for every layer."""
    return jnp.stack([_fro(w) for w in weights])
