"""Explicit Toeplitz ("patch") matrices of a network's layers (THEORY 1 and 6)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..models import HomogeneousNet, LocalCNN


def _conv_input_shapes(model: LocalCNN) -> list[tuple[int, ...]]:
    spatial_in = [model.in_shape[1:], *model.spatial[:-1]]
    return [(w.shape[1], *sp) for w, sp in zip(model.weights, spatial_in, strict=True)]


def toeplitz_matrices(
    model: HomogeneousNet, weights: Sequence[Array] | None = None
) -> list[Float[Array, "out in"]]:
    """Each layer's weight as the matrix ``W_k`` acting on the flattened layer input.

    For a :class:`LocalCNN` convolutional layer this is the Toeplitz matrix of the (linear,
    bias-free, zero-padded where the model pads) convolution, of shape
    ``(C_out d_k, C_in · input positions)``, built as ``jax.jacfwd`` of the map from the
    flattened input to the flattened output (channel-major, as the model flattens). Dense
    layers are returned as they are. So ``f(x) = W_L σ(… σ(W_1 vec(x)))`` with these matrices,
    and ``||W_k||_F = sqrt(d_k) ||w_k||_F`` (``<=`` for a zero-padded layer).
    Builds dense matrices: meant for tests and small models.
    """
    weights = tuple(model.weights if weights is None else weights)
    if not isinstance(model, LocalCNN):
        return [jnp.asarray(w) for w in weights]
    shapes = _conv_input_shapes(model)
    out = []
    for k, w in enumerate(weights):
        if w.ndim == 2:  # the dense last layer
            out.append(w)
            continue
        shape = shapes[k]

        def layer(h, w=w, shape=shape, k=k):  # the model's own layer (its stride and padding)
            return jnp.reshape(model.conv_layer(k, w, jnp.reshape(h, (1, *shape))), (-1,))

        size = 1
        for s in shape:
            size *= s
        out.append(jax.jit(jax.jacfwd(layer))(jnp.zeros((size,), w.dtype)))
    return out
