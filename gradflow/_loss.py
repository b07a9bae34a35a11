"""The per-sample square loss, written once (THEORY 1).

``ℓ_n(W) = ||f(W; x_n) − y_n||²``; the data loss is ``(1/N) Σ_n ℓ_n``. The ODE, the SDE,
SGD and every metric use these two functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def square_error(f: Float[Array, "*b C"], y: Float[Array, "*b C"]) -> Float[Array, "*b"]:
    """``||f − y||²`` over the last (output) axis: the per-sample loss from outputs."""
    return jnp.sum((f - y) ** 2, axis=-1)


def sample_loss(model, weights, x: Array, y: Float[Array, " C"]) -> Float[Array, ""]:
    """``ℓ(W; x, y) = ||f(W; x) − y||²`` for one sample (sum over the C outputs)."""
    return square_error(model.apply(weights, x), y)


def sample_losses(model, weights, x: Array, y: Float[Array, "N C"]) -> Float[Array, " N"]:
    """``(ℓ_1, ..., ℓ_N)``: :func:`sample_loss` mapped over a batch."""
    return jax.vmap(sample_loss, in_axes=(None, None, 0, 0))(model, weights, x, y)


def data_loss(model, weights, x: Array, y: Float[Array, "N C"], w=None) -> Float[Array, ""]:
    """``(1/N) Σ_n ℓ_n(W)``, or ``Σ_n w_n ℓ_n(W)`` with sample weights ``w`` (summing to 1)."""
    losses = sample_losses(model, weights, x, y)
    return jnp.mean(losses) if w is None else jnp.sum(w * losses)


def outputs(model, weights, x: Array) -> Float[Array, "*batch"]:
    """``f(W; x_n)`` for every row of ``x``."""
    return jax.vmap(model.apply, in_axes=(None, 0))(weights, x)
