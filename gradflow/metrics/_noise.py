"""Inherent SGD noise: per-epoch relative change of each layer (THEORY 4.7)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float


def sgd_noise(prev_weights: Sequence[Array], weights: Sequence[Array]) -> Float[Array, " L"]:
    """``||W_k(e+1) − W_k(e)||_F / ||W_k(e)||_F`` for each layer ``k`` (first layer first).

    ``prev_weights`` are the weights at epoch ``e``, ``weights`` at epoch ``e + 1``. For a
    convolutional layer the kernel ratio equals the Toeplitz-matrix ratio (both norms carry the
    same ``sqrt(d_k)``). THEORY 4.7 predicts it stays bounded away from 0 with λ > 0 and B < N.
    """
    if len(prev_weights) != len(weights):
        raise ValueError(
            f"sgd_noise: got {len(prev_weights)} previous and {len(weights)} current layers; "
            "they must match"
        )
    return jnp.stack(
        [
            jnp.linalg.norm(w - p) / jnp.linalg.norm(p)
            for p, w in zip(prev_weights, weights, strict=True)
        ]
    )
