"""The margin bound of THEORY 6."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def confidence_term(n: ArrayLike, delta: ArrayLike) -> Array:
    """``3 sqrt(ln(2/δ) / (2N))``."""
    return 3.0 * jnp.sqrt(jnp.log(2.0 / jnp.asarray(delta)) / (2.0 * jnp.asarray(n)))


def margin_bound(
    margins: Float[Array, " N"],
    gamma: ArrayLike,
    rademacher: ArrayLike,
    n: ArrayLike,
    delta: ArrayLike = 0.05,
) -> Float[Array, "*shape"]:
    """``(1/N) Σ_n 1[margin_n < γ] + (2/γ) R_N + 3 sqrt(ln(2/δ)/(2N))`` (THEORY 6).

    With probability ≥ 1 − δ over the N training samples this bounds the test error, for a γ
    fixed before seeing the data. ``margins`` and ``rademacher`` must refer to the same network
    scale (e.g. margins of ``f/ρ`` with the Rademacher bound of the unit-norm network).
    ``gamma`` may be an array (the bound broadcasts over it). For multiclass margins this is
    THEORY's form; the literature's multiclass bounds carry an extra C-dependent factor.
    """
    gamma = jnp.asarray(gamma)
    indicator = margins[:, None] < jnp.reshape(gamma, (1, -1))
    below = jnp.mean(indicator.astype(margins.dtype), axis=0)
    below = jnp.reshape(below, gamma.shape)
    return below + 2.0 * rademacher / gamma + confidence_term(n, delta)
