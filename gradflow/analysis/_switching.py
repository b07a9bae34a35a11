"""The switching surfaces of a ReLU network: units and the numbering of entries (THEORY 3.6).

The forward pass with pre-activations and given slopes, :func:`forward`, lives one level down
in ``gradflow/_switching.py`` (the sliding solver of :mod:`gradflow.diffrax_ext` uses it too)
and is re-exported here. Everything here is for :class:`gradflow.models.MLP` (ReLU) and
:class:`gradflow.models.LocalCNN`; other models raise ``NotImplementedError``. Entry
``n Z + j`` is pre-activation ``j`` of sample ``n``.

A *unit* is a hidden neuron (MLP) or channel (LocalCNN): its incoming weights are row (output
channel) ``j`` of ``W_k``, its outgoing weights the matching columns (input channels) of
``W_{k+1}``; a dense layer after a convolution sees channel ``j`` as ``S`` consecutive columns
(features are flattened channel first).
"""

from __future__ import annotations

import numpy as np

from .._switching import _kind, forward, has_switching

__all__ = [
    "entry_layer",
    "entry_unit",
    "forward",
    "has_switching",
    "layer_sizes",
    "unit_masks",
    "unit_norms",
]


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
