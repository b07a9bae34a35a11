"""The forward pass of a ReLU network with its pre-activations, slopes given or not (THEORY 3.6).

One definition for :mod:`gradflow.analysis` (switching sets, multiplier systems, certificates)
and :mod:`gradflow.diffrax_ext` (the sliding solver), which sits below the analysis (the
analysis imports the dynamics, which import ``diffrax_ext``). For
:class:`gradflow.models.MLP` (ReLU) and :class:`gradflow.models.LocalCNN`; other models raise
``NotImplementedError``.

Entries are numbered as in ``concatenate([z_1.reshape(N, -1), z_2.reshape(N, -1), …], 1)``,
flattened row by row: entry ``n Z + j`` is pre-activation ``j`` of sample ``n``. With the
slope of every ReLU *given* — ``h = a ⊙ z`` instead of ``h = σ(z)`` — the network is
multilinear in its layers: within one activation pattern (``a = 1[z > 0]``) it is the network
itself, and with ``a_i = α_i ∈ [0, 1]`` on the entries held at zero it is the network of a
Filippov combination (the outputs do not depend on ``α`` there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .models import MLP, LocalCNN


def _kind(model) -> str:
    if isinstance(model, LocalCNN):
        return "cnn"
    if isinstance(model, MLP) and model.activation == "relu":
        return "mlp"
    raise NotImplementedError(f"{type(model).__name__} has no ReLU switching surfaces")


def has_switching(model) -> bool:
    """Whether ``model`` is a ReLU network that this module knows (MLP with ReLU, LocalCNN)."""
    try:
        _kind(model)
    except NotImplementedError:
        return False
    return True


def forward(model, weights, x, slopes=None, extra=None, chunk_size: int | None = None):
    """``(F, z)``: the outputs ``(N, C)`` and the pre-activations ``(N, Z)`` (flat, see the
    module docstring) of the network with given slopes.

    Args:
        slopes: ``(N, Z)`` slopes ``a`` (``h = a ⊙ z``), or ``None`` for ReLU itself.
        extra: ``(N, Z)`` added to the post-activations ``h`` (its gradient is the
            back-propagated signal ``∂L/∂h``), or ``None``.
        chunk_size: ``k``: the samples go through the network ``k`` at a time (``lax.map``
            over ``⌈N/k⌉`` chunks, the last one padded with zeros and cut off), so that the
            layers' intermediates (a convolution's patches) are held for one chunk only, as
            :attr:`gradflow.Problem.chunk_size` does for the loss; ``None`` or ``k ≥ N``: one
            batch. The results equal the unchunked ones to rounding.
    """
    n = x.shape[0]
    if chunk_size is None or chunk_size >= n:
        return _forward(model, weights, x, slopes, extra)
    k = int(chunk_size)
    m = -(-n // k)

    def chunks(a):
        if a is None:
            return None
        a = jnp.pad(a, [(0, m * k - n)] + [(0, 0)] * (a.ndim - 1))
        return jnp.reshape(a, (m, k, *a.shape[1:]))

    out, z = jax.lax.map(
        lambda c: _forward(model, weights, *c), (chunks(x), chunks(slopes), chunks(extra))
    )
    return jnp.reshape(out, (m * k, -1))[:n], jnp.reshape(z, (m * k, -1))[:n]


def _forward(model, weights, x, slopes, extra):
    kind = _kind(model)
    n = x.shape[0]
    if kind == "mlp":
        h = jnp.reshape(x, (n, -1))
    else:
        h = jnp.reshape(x, (n, *model.in_shape))
    zs, start = [], 0
    for k, w in enumerate(weights[:-1]):
        z = h @ w.T if kind == "mlp" else model.conv_layer(k, w, h)
        size = int(np.prod(z.shape[1:]))
        zs.append(jnp.reshape(z, (n, size)))
        if slopes is None:
            h = jax.nn.relu(z)
        else:
            h = jnp.reshape(slopes[:, start : start + size], z.shape) * z
        if extra is not None:
            h = h + jnp.reshape(extra[:, start : start + size], z.shape)
        start += size
    out = model.apply_last_batch(weights[-1], jnp.reshape(h, (n, -1)))
    return out, jnp.concatenate(zs, axis=1)
