"""Rank measures of a layer (THEORY 4.6 and 5).

A convolutional kernel of shape ``(C_out, C_in, *kernel)`` is reshaped to ``(C_out, -1)`` (one
row per output channel); a vector is treated as a single row. Every measure here is of
``W/||W||_F`` and so invariant under rescaling ``W``; a zero matrix gives NaN.
"""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def _as_matrix(w: Array) -> Array:
    if w.ndim == 0:
        raise ValueError("rank measures need a vector, matrix or kernel; got a scalar")
    return jnp.reshape(w, (1, -1)) if w.ndim == 1 else jnp.reshape(w, (w.shape[0], -1))


def singular_values(w: Float[Array, "*shape"]) -> Float[Array, " r"]:
    """Singular values of ``W/||W||_F``, descending (their squares sum to 1)."""
    m = _as_matrix(w)
    return jnp.linalg.svd(m, compute_uv=False) / jnp.linalg.norm(m)


def numerical_rank(w: Float[Array, "*shape"], tol: float = 1e-3) -> Int[Array, ""]:
    """The number of singular values of ``W/||W||_F`` above the ABSOLUTE tolerance ``tol``
    (default 1e-3, as Galanti et al. 2022)."""
    return jnp.sum(singular_values(w) > tol)


def stable_rank(w: Float[Array, "*shape"]) -> Float[Array, ""]:
    """``||W||_F² / ||W||_2²`` (between 1 and the rank)."""
    s = singular_values(w)
    return jnp.sum(s**2) / s[0] ** 2


def effective_rank(w: Float[Array, "*shape"]) -> Float[Array, ""]:
    """Entropy effective rank (Roy & Vetterli 2007): ``exp(−Σ_i p_i ln p_i)`` with
    ``p_i = σ_i / Σ_j σ_j`` and ``0 ln 0 = 0``; equals ``n`` for ``n`` equal singular values."""
    s = singular_values(w)
    p = s / jnp.sum(s)
    safe = jnp.where(p > 0, p, 1.0)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0.0)))
