"""Bias-free local-kernel convolutional networks (1-D and 2-D), no pooling, optional zero padding.

The convolutions take the batch ``(N, C, ...)`` directly. On a CPU they run channels-last as an
im2col gather (one strided slice per kernel offset, concatenated along the channels) and one
matrix product, which measured faster than XLA's CPU convolution in float32 (about 2x on the
paper CNN) and float64 (``benchmarks/conv_path.py``, benchmarks/README.md); on a GPU they run as
``lax.conv_general_dilated``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import HomogeneousNet, he_normal

#: ``LocalCNN(conv=...)``: how a convolution is computed (the results agree to rounding).
CONV_PATHS = ("auto", "xla", "im2col", "im2col-cl")


def _as_tuple(value, nd: int, name: str, n_layers: int, low: int = 1):
    what = "positive integers" if low == 1 else f"integers >= {low}"
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * n_layers
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"LocalCNN: {name}={value!r} is not allowed; use {what} (or {nd}-tuples of them)"
        )
    value = list(value)
    if len(value) != n_layers:
        raise ValueError(
            f"LocalCNN: {name} has {len(value)} entries; it needs one per convolutional "
            f"layer ({n_layers})"
        )
    out = []
    for v in value:
        v = (v,) * nd if isinstance(v, int) else tuple(v)
        if len(v) != nd or any(
            (not isinstance(i, int)) or isinstance(i, bool) or i < low for i in v
        ):
            raise ValueError(
                f"LocalCNN: {name}={value!r} is not allowed; use {what} (or {nd}-tuples of them)"
            )
        out.append(v)
    return tuple(out)


def conv_path(dtype) -> str:
    """The path ``conv="auto"`` takes: ``"im2col-cl"`` on a CPU, ``"xla"`` elsewhere (GPU).

    Measured on a CPU (``benchmarks/conv_path.py``): the channels-last im2col was the fastest
    of the three paths in float32 and float64, on the MNIST-1D and the paper CNN. ``dtype``
    is kept for a per-precision choice.
    """
    del dtype
    return "im2col-cl" if jax.default_backend() == "cpu" else "xla"


def conv_batch(h, w, stride, padding, path: str = "auto"):
    """A bias-free convolution of a batch: ``h`` ``(N, C_in, *S)``, ``w`` ``(C_out, C_in, *K)``.

    ``stride`` and ``padding`` (zeros on both sides of each spatial axis) are per-axis tuples;
    the result is ``(N, C_out, *S_out)`` with ``S_out = (S + 2 padding − K) // stride + 1``.
    ``path``: ``"xla"`` (``lax.conv_general_dilated``), ``"im2col"`` (strided slices, one per
    kernel offset, stacked and contracted with the kernel), ``"im2col-cl"``
    (:func:`conv_channels_last` between two transposes) or ``"auto"`` (:func:`conv_path`).
    """
    if path == "auto":
        path = conv_path(h.dtype)
    if path == "xla":
        return jax.lax.conv_general_dilated(h, w, stride, [(p, p) for p in padding])
    if path == "im2col-cl":
        out = conv_channels_last(jnp.moveaxis(h, 1, -1), w, stride, padding)
        return jnp.moveaxis(out, -1, 1)
    if any(padding):
        h = jnp.pad(h, ((0, 0), (0, 0), *((p, p) for p in padding)))
    kernel = w.shape[2:]
    out = [(n - k) // s + 1 for n, k, s in zip(h.shape[2:], kernel, stride)]
    patches = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        limit = (
            h.shape[0],
            h.shape[1],
            *(o + s * (m - 1) + 1 for o, s, m in zip(offset, stride, out)),
        )
        patches.append(jax.lax.slice(h, (0, 0, *offset), limit, (1, 1, *stride)))
    patches = jnp.stack(patches, axis=2)  # (N, C_in, prod(K), *S_out)
    return jnp.einsum("nck...,ock->no...", patches, w.reshape(w.shape[0], w.shape[1], -1))


def conv_channels_last(h, w, stride, padding):
    """The ``"im2col-cl"`` convolution of a channels-last batch ``h`` ``(N, *S, C_in)``.

    ``w`` is ``(C_out, C_in, *K)`` as everywhere; the result is ``(N, *S_out, C_out)``. One
    strided slice of the zero-padded input per kernel offset, concatenated along the channels
    into the patch matrix ``(N · prod(S_out), prod(K) · C_in)``, times the kernel as a
    ``(prod(K) · C_in, C_out)`` matrix: one matrix product forward, two backward.
    """
    if any(padding):
        h = jnp.pad(h, ((0, 0), *((p, p) for p in padding), (0, 0)))
    kernel = w.shape[2:]
    n, c_in, c_out = h.shape[0], h.shape[-1], w.shape[0]
    out = tuple((m - k) // s + 1 for m, k, s in zip(h.shape[1:-1], kernel, stride))
    cols = []
    for offset in itertools.product(*(range(k) for k in kernel)):
        limit = (n, *(o + s * (m - 1) + 1 for o, s, m in zip(offset, stride, out)), c_in)
        cols.append(jax.lax.slice(h, (0, *offset, 0), limit, (1, *stride, 1)))
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]
    # (*K, C_in, C_out): row (offset, c) of the matrix matches column offset·C_in + c of patches
    matrix = jnp.moveaxis(w, (0, 1), (-1, -2)).reshape(-1, c_out)
    return (patches.reshape(-1, matrix.shape[0]) @ matrix).reshape(n, *out, c_out)


class LocalCNN(HomogeneousNet):
    """``f(W; x)``: bias-free convolutions with ReLU, then a dense or conv last layer.

    Inputs are channel-first, ``(C_in, H)`` (1-D) or ``(C_in, H, W)`` (2-D); batches
    ``(N, C_in, ...)`` go through :meth:`apply_batch` in one call.

    Args:
        in_shape: the input shape, channel first.
        channels: output channels of each hidden convolutional layer.
        kernel_sizes, strides: one per convolutional layer (ints or per-axis tuples). With
            ``last="conv"`` they have one more entry than ``channels`` (the last layer is a
            convolution to ``out_dim`` channels that must leave one output position).
        out_dim: ``C``.
        padding: zero padding of each convolutional layer's input, on both sides of every
            spatial axis (an int, or one int or per-axis tuple per convolutional layer);
            ``0`` (the default) is VALID. A convolution of a zero-padded input is linear in the
            kernel and positively homogeneous in the input, so the network stays positively
            homogeneous of degree ``L`` (THEORY 2).
        last: ``"dense"`` (a dense layer on the flattened features) or ``"conv"``.
        conv: ``"auto"`` (``"im2col-cl"`` on a CPU, XLA's convolution otherwise),
            ``"xla"``, ``"im2col"`` or ``"im2col-cl"``: how the convolutions are computed
            (:func:`conv_batch`, :func:`conv_channels_last`).
        key: PRNG key; He-normal kernels scaled by ``init_scale``.

    Layer ``k``'s parameters are its kernel ``w_k``, of shape ``(C_out, C_in, *kernel)``;
    its Toeplitz matrix has ``||W_k||_F = sqrt(d_k) ||w_k||_F`` with ``d_k`` the number of
    output positions (:attr:`output_positions`) when every input position is seen by every
    kernel entry (``padding=0``); with zero padding, ``||W_k||_F <= sqrt(d_k) ||w_k||_F``.
    """

    weights: tuple[Array, ...]
    in_shape: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    last: str
    spatial: tuple[tuple[int, ...], ...]
    paddings: tuple[tuple[int, ...], ...]
    conv: str

    def __init__(
        self,
        in_shape: Sequence[int],
        channels: Sequence[int],
        kernel_sizes,
        strides,
        out_dim: int,
        *,
        padding=0,
        last: str = "dense",
        conv: str = "auto",
        init_scale: float = 1.0,
        dtype=None,
        key,
    ):
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) not in (2, 3):
            raise ValueError(
                f"LocalCNN: in_shape={in_shape!r} is not allowed; use (C_in, H) or (C_in, H, W)"
            )
        if last not in ("dense", "conv"):
            raise ValueError(f"LocalCNN: last={last!r} is not allowed; use 'dense' or 'conv'")
        if conv not in CONV_PATHS:
            raise ValueError(
                f"LocalCNN: conv={conv!r} is not allowed; use one of "
                + ", ".join(map(repr, CONV_PATHS))
            )
        nd = len(in_shape) - 1
        channels = tuple(int(c) for c in channels)
        n_conv = len(channels) + (1 if last == "conv" else 0)
        ks = _as_tuple(kernel_sizes, nd, "kernel_sizes", n_conv)
        ss = _as_tuple(strides, nd, "strides", n_conv)
        ps = _as_tuple(padding, nd, "padding", n_conv, low=0)
        chans = (in_shape[0], *channels) + ((out_dim,) if last == "conv" else ())
        dtype = dtype or jnp.result_type(float)
        keys = jax.random.split(key, n_conv + 1)
        weights, spatial = [], []
        size = in_shape[1:]
        for i in range(n_conv):
            size = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, ks[i], ss[i], ps[i]))
            if min(size) < 1:
                raise ValueError(
                    f"LocalCNN: layer {i + 1} (kernel {ks[i]}, stride {ss[i]}, padding {ps[i]}) "
                    f"leaves no output positions for input shape {in_shape}"
                )
            spatial.append(size)
            fan_in = chans[i] * math.prod(ks[i])
            weights.append(
                he_normal(keys[i], (chans[i + 1], chans[i], *ks[i]), fan_in, 2.0, init_scale, dtype)
            )
        if last == "conv":
            if any(n != 1 for n in spatial[-1]):
                raise ValueError(
                    f"LocalCNN: with last='conv' the last layer must leave one output position, "
                    f"it leaves {spatial[-1]}; adjust kernel_sizes/strides"
                )
        else:
            p = chans[-1] * math.prod(spatial[-1])
            weights.append(he_normal(keys[-1], (out_dim, p), p, 1.0, init_scale, dtype))
            spatial.append((1,))
        self.weights = tuple(weights)
        self.in_shape = in_shape
        self.strides = ss
        self.last = last
        self.spatial = tuple(spatial)
        self.paddings = ps
        self.conv = conv

    def conv_layer(self, k: int, w, h):
        """Convolutional layer ``k`` (from 0) with kernel ``w`` on a batch ``h`` ``(N, C, ...)``."""
        return conv_batch(h, w, self.strides[k], self.paddings[k], self.conv)

    def apply_features_batch(self, weights, x) -> Float[Array, "N p"]:
        h = jnp.reshape(x, (x.shape[0], *self.in_shape))
        path = conv_path(h.dtype) if self.conv == "auto" else self.conv
        if path == "im2col-cl":  # channels last through all layers: two transposes in all
            h = jnp.moveaxis(h, 1, -1)
            for k, w in enumerate(weights[:-1]):
                h = jax.nn.relu(conv_channels_last(h, w, self.strides[k], self.paddings[k]))
            h = jnp.moveaxis(h, -1, 1)
        else:
            for k, w in enumerate(weights[:-1]):
                h = jax.nn.relu(self.conv_layer(k, w, h))
        return jnp.reshape(h, (h.shape[0], -1))

    def apply_last_batch(self, weight, h) -> Float[Array, "N C"]:
        if self.last == "dense":
            return h @ weight.T
        hh = jnp.reshape(h, (h.shape[0], weight.shape[1], *self._last_in_spatial()))
        return jnp.reshape(self.conv_layer(len(self.weights) - 1, weight, hh), (h.shape[0], -1))

    def apply_features(self, weights, x) -> Float[Array, " p"]:
        return self.apply_features_batch(weights, jnp.reshape(x, (1, *self.in_shape)))[0]

    def apply_last(self, weight, h) -> Float[Array, " C"]:
        return self.apply_last_batch(weight, h[None])[0]

    def pre_activations(self, weights, x) -> tuple[Array, ...]:
        h, out = jnp.reshape(x, (1, *self.in_shape)), []
        for k, w in enumerate(weights[:-1]):
            out.append(self.conv_layer(k, w, h))
            h = jax.nn.relu(out[-1])
        return tuple(z[0] for z in out)

    def _last_in_spatial(self) -> tuple[int, ...]:
        return self.spatial[-2] if len(self.spatial) > 1 else self.in_shape[1:]

    @property
    def output_positions(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.spatial)

    @property
    def activation_floats(self) -> int:
        return int(sum(w.shape[0] * math.prod(s) for w, s in zip(self.weights, self.spatial)))


def paper_cnn(
    in_shape: Sequence[int] = (3, 32, 32),
    out_dim: int = 1,
    *,
    channels: Sequence[int] = (32, 64, 128),
    kernel_size: int = 3,
    stride: int = 2,
    padding: int = 1,
    conv: str = "auto",
    init_scale: float = 1.0,
    dtype=None,
    key,
) -> LocalCNN:
    """A bias-free version of the paper's CIFAR CNN: a :class:`LocalCNN` of 4 layers.

    Three ``3 × 3`` convolutions with stride 2 and zero padding 1, ``3 → 32 → 64 → 128``
    channels and ReLU (``32 × 32 → 16 × 16 → 8 × 8 → 4 × 4``), then the output layer: a dense
    layer from the ``128 × 4 × 4`` feature map to ``out_dim`` outputs (the same map as a
    ``4 × 4`` convolution that leaves one position). ``out_dim = 1`` for binary ``±1``
    targets (95,072 weights on ``(3, 32, 32)`` inputs), ``C`` for ``C`` one-hot classes
    (``2048 C`` more weights than the convolutions' 93,024). No biases, no batch norm, no
    pooling: positively homogeneous of degree 4.
    """
    channels = tuple(channels)
    return LocalCNN(
        in_shape,
        channels,
        kernel_size,
        stride,
        out_dim,
        padding=padding,
        last="dense",
        conv=conv,
        init_scale=init_scale,
        dtype=dtype,
        key=key,
    )
