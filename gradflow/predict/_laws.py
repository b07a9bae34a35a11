"""Exact conservation/decay laws: balancedness (THEORY 3.1, 4.5) and WN norm growth (3.3)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def balance_law(gap0: ArrayLike, weight_decay: ArrayLike, t: ArrayLike) -> Array:
    """``ρ_k²(t) − ρ_j²(t) = (ρ_k²(0) − ρ_j²(0)) e^{−2λt}`` (THEORY 3.1, 4.5) [exact for the flow].

    Holds for the plain flow 3.1 (and for the scales of LM-all, whose ``dρ_k/dt`` is the same);
    conserved for λ = 0. Discrete GD drifts from it by O(η²) per step. ``t`` is flow time and may
    be an array.
    """
    return jnp.asarray(gap0) * jnp.exp(-2.0 * jnp.asarray(weight_decay) * jnp.asarray(t))


def wn_norm_growth(v_norm_sq: ArrayLike, lr: ArrayLike, grad_v_norm_sq: ArrayLike) -> Array:
    """``||v_{j+1}||² = ||v_j||² + η² ||∇_v L||²`` for weight-normalized SGD/GD (THEORY 3.3)
    [exact, no decay on ``v``].

    ``∇_v L ⟂ v`` because ``L`` depends on ``v`` only through ``v/||v||``, so each step adds
    ``η² ||∇_v L||²``. If ``grad_v_norm_sq`` is a 1-D array of per-step values ``(T,)``, returns
    ``||v||²`` after each of the ``T`` steps (a cumulative sum); a scalar gives one step.
    """
    g = jnp.asarray(grad_v_norm_sq)
    increments = jnp.cumsum(g) if g.ndim == 1 else g
    return jnp.asarray(v_norm_sq) + jnp.asarray(lr) ** 2 * increments
