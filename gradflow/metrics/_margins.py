"""Classification margins (THEORY 4.4 and 5)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def margins(outputs: Float[Array, "N C"], targets: Float[Array, "N C"]) -> Float[Array, " N"]:
    """Per-sample margins: ``y_n f_n`` (binary, ``C = 1``, ``y_n = ±1``) or
    ``f_{y_n} − max_{c≠y_n} f_c`` (multiclass, one-hot ``targets``).

    Pass the normalized network's outputs ``f(V; x_n)`` for THEORY's normalized margins; the
    margin is linear in the outputs, so ``margins(ρ f, y) = ρ margins(f, y)``.
    """
    if outputs.shape != targets.shape or outputs.ndim != 2:
        raise ValueError(
            f"margins: outputs {outputs.shape} and targets {targets.shape} must both be (N, C)"
        )
    if outputs.shape[1] == 1:
        return outputs[:, 0] * targets[:, 0]
    label = jnp.argmax(targets, axis=1)
    mask = jax.nn.one_hot(label, outputs.shape[1], dtype=bool)
    correct = jnp.sum(jnp.where(mask, outputs, 0.0), axis=1)
    runner_up = jnp.max(jnp.where(mask, -jnp.inf, outputs), axis=1)
    return correct - runner_up


def margin_summary(margin: Float[Array, " N"]) -> dict[str, Float[Array, ""]]:
    """``{"min", "mean", "std", "spread"}`` of the margins; ``spread = std / mean`` (THEORY 4.4:
    it goes to 0 as the LM flow with λ > 0 equalizes the margins). ``std`` is the population
    standard deviation."""
    mean = jnp.mean(margin)
    std = jnp.std(margin)
    return {"min": jnp.min(margin), "mean": mean, "std": std, "spread": std / mean}
