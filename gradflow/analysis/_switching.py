"""The switching surfaces of a ReLU network: pre-activations, slopes and units (THEORY 3.6).

A ReLU network with the slope of every ReLU *given* — ``h = a ⊙ z`` instead of ``h = σ(z)``,
with ``a`` an array of the pre-activations' shape per hidden layer and sample — is multilinear
in its layers, so within one activation pattern (``a = 1[z > 0]``) it is the network itself, and
with ``a_i = α_i ∈ [0, 1]`` on the entries ``S`` held at zero it is the network of a Filippov
combination (``h_i = α_i z_i = 0`` there, so the outputs do not depend on ``α``). Everything
here is for :class:`gradflow.models.MLP` (ReLU) and :class:`gradflow.models.LocalCNN`; other
models raise ``NotImplementedError``.

Entries are numbered as in ``concatenate([z_1.reshape(N, -1), z_2.reshape(N, -1), …], 1)``,
flattened row by row: entry ``n Z + j`` is pre-activation ``j`` of sample ``n``.

A *unit* is a hidden neuron (MLP) or channel (LocalCNN): its incoming weights are row (output
channel) ``j`` of ``W_k``, its outgoing weights the matching columns (input channels) of
``W_{k+1}``; a dense layer after a convolution sees channel ``j`` as ``S`` consecutive columns
(features are flattened channel first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..models import MLP, LocalCNN


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


def layer_sizes(model, x) -> list[int]:
    """``Z_k``: the pre-activations per sample of each hidden layer."""
    if _kind(model) == "mlp":
        return [int(w.shape[0]) for w in model.weights[:-1]]
    return [int(w.shape[0]) * int(np.prod(s)) for w, s in zip(model.weights[:-1], model.spatial)]


def entry_layer(model, x) -> np.ndarray:
    """The hidden layer (0-based) of each of the ``Z`` pre-activations of one sample."""
    return np.concatenate([np.full(s, k) for k, s in enumerate(layer_sizes(model, x))])


def entry_unit(model, x) -> np.ndarray:
    """The unit (within its layer) of each of the ``Z`` pre-activations of one sample."""
    kind = _kind(model)
    parts = []
    for k, w in enumerate(model.weights[:-1]):
        units = int(w.shape[0])
        per = 1 if kind == "mlp" else int(np.prod(model.spatial[k]))
        parts.append(np.repeat(np.arange(units), per))
    return np.concatenate(parts)


def unit_masks(model, weights, layer: int, unit: int) -> tuple:
    """Boolean arrays shaped like ``weights``: the incoming weights of ``unit`` of hidden layer
    ``layer`` (0-based) and its outgoing weights."""
    w_in, w_out = weights[layer], weights[layer + 1]
    masks_in = [np.zeros(w.shape, bool) for w in weights]
    masks_out = [np.zeros(w.shape, bool) for w in weights]
    masks_in[layer][unit] = True
    if w_out.ndim == 2 and w_in.ndim > 2:  # dense after a convolution: channel-first blocks
        per = w_out.shape[1] // w_in.shape[0]
        masks_out[layer + 1][:, unit * per : (unit + 1) * per] = True
    else:
        masks_out[layer + 1][:, unit] = True
    return tuple(masks_in), tuple(masks_out)


def unit_norms(weights) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per hidden layer, ``(||incoming||, ||outgoing||)`` of every unit (module docstring)."""
    out = []
    for k in range(len(weights) - 1):
        w_in, w_out = np.asarray(weights[k]), np.asarray(weights[k + 1])
        d = w_in.shape[0]
        n_in = np.sqrt(np.sum(w_in.reshape(d, -1) ** 2, axis=1))
        if w_out.ndim == 2 and w_in.ndim > 2:
            per = w_out.shape[1] // d
            n_out = np.sqrt(np.sum(w_out.reshape(w_out.shape[0], d, per) ** 2, axis=(0, 2)))
        else:
            n_out = np.sqrt(np.sum(np.moveaxis(w_out, 1, 0).reshape(d, -1) ** 2, axis=1))
        out.append((n_in, n_out))
    return out
