"""The bias-free ReLU network ``W_L σ(W_{L−1} ... σ(W_1 x))`` written in NumPy, in float64: the
independent forward pass that the reference tests hold gradflow's against (THEORY 2.1)."""

from __future__ import annotations

import numpy as np


def relu_mlp(weights, x) -> tuple[np.ndarray, np.ndarray]:
    """(features, outputs) of the network with layer matrices ``weights`` (each ``(out, in)``)
    at the rows of ``x``: the last hidden layer's activations ``(N, d_{L−1})`` and ``(N, C)``."""
    h = np.asarray(x, np.float64)
    for w in weights[:-1]:
        h = np.maximum(h @ np.asarray(w, np.float64).T, 0.0)
    return h, h @ np.asarray(weights[-1], np.float64).T


def relu_outputs(weights, x) -> np.ndarray:
    """The outputs ``(N, C)`` of :func:`relu_mlp`."""
    return relu_mlp(weights, x)[1]
