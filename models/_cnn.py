"""Bias-free local-kernel convolutional networks (1-D and 2-D), no pooling."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import HomogeneousNet, he_normal


def _as_tuple(value, nd: int, name: str, n_layers: int) -> tuple[tuple[int, ...], ...]:
    if isinstance(value, int):
        value = [value] * n_layers
    value = list(value)
    if len(value) != n_layers:
        raise ValueError(
            f"LocalCNN: {name} has {len(value)} entries; it needs one per convolutional "
            f"layer ({n_layers})"
        )
    out = []
    for v in value:
        v = (v,) * nd if isinstance(v, int) else tuple(v)
        if len(v) != nd or any((not isinstance(i, int)) or i < 1 for i in v):
            raise ValueError(
                f"LocalCNN: {name}={value!r} is not allowed; use positive integers "
                f"(or {nd}-tuples of them)"
            )
        out.append(v)
    return tuple(out)


class LocalCNN(HomogeneousNet):
    """``f(W; x)``: VALID, bias-free convolutions with ReLU, then a dense or conv last layer.

    Inputs are channel-first, ``(C_in, H)`` (1-D) or ``(C_in, H, W)`` (2-D).

    Args:
        in_shape: the input shape, channel first.
        channels: output channels of each hidden convolutional layer.
        kernel_sizes, strides: one per convolutional layer (ints or per-axis tuples). With
            ``last="conv"`` they have one more entry than ``channels`` (the last layer is a
            convolution to ``out_dim`` channels that must leave one output position).
        out_dim: ``C``.
        last: ``"dense"`` (a dense layer on the flattened features) or ``"conv"``.
        key: PRNG key; He-normal kernels scaled by ``init_scale``.

    Layer ``k``'s parameters are its kernel ``w_k``, of shape ``(C_out, C_in, *kernel)``;
    its Toeplitz matrix has ``||W_k||_F = sqrt(d_k) ||w_k||_F`` with ``d_k`` the number of
    output positions (:attr:`output_positions`).
    """

    weights: tuple[Array, ...]
    in_shape: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    last: str
    spatial: tuple[tuple[int, ...], ...]

    def __init__(
        self,
        in_shape: Sequence[int],
        channels: Sequence[int],
        kernel_sizes,
        strides,
        out_dim: int,
        *,
        last: str = "dense",
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
        nd = len(in_shape) - 1
        channels = tuple(int(c) for c in channels)
        n_conv = len(channels) + (1 if last == "conv" else 0)
        ks = _as_tuple(kernel_sizes, nd, "kernel_sizes", n_conv)
        ss = _as_tuple(strides, nd, "strides", n_conv)
        chans = (in_shape[0], *channels) + ((out_dim,) if last == "conv" else ())
        dtype = dtype or jnp.result_type(float)
        keys = jax.random.split(key, n_conv + 1)
        weights, spatial = [], []
        size = in_shape[1:]
        for i in range(n_conv):
            size = tuple((n - k) // s + 1 for n, k, s in zip(size, ks[i], ss[i]))
            if min(size) < 1:
                raise ValueError(
                    f"LocalCNN: layer {i + 1} (kernel {ks[i]}, stride {ss[i]}) leaves no output "
                    f"positions for input shape {in_shape}"
                )
            spatial.append(size)
            fan_in = chans[i] * int(jnp.prod(jnp.array(ks[i])))
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
            p = chans[-1] * int(jnp.prod(jnp.array(spatial[-1])))
            weights.append(he_normal(keys[-1], (out_dim, p), p, 1.0, init_scale, dtype))
            spatial.append((1,))
        self.weights = tuple(weights)
        self.in_shape = in_shape
        self.strides = ss
        self.last = last
        self.spatial = tuple(spatial)

    def _conv(self, w, h, stride):
        out = jax.lax.conv_general_dilated(h[None], w, stride, "VALID")
        return out[0]

    def apply_features(self, weights, x) -> Float[Array, " p"]:
        h = jnp.reshape(x, self.in_shape)
        for w, s in zip(weights[:-1], self.strides):
            h = jax.nn.relu(self._conv(w, h, s))
        return jnp.reshape(h, (-1,))

    def apply_last(self, weight, h) -> Float[Array, " C"]:
        if self.last == "dense":
            return weight @ h
        prev = weight.shape[1]
        hh = jnp.reshape(h, (prev, *self._last_in_spatial()))
        return jnp.reshape(self._conv(weight, hh, self.strides[-1]), (-1,))

    def _last_in_spatial(self) -> tuple[int, ...]:
        return self.spatial[-2] if len(self.spatial) > 1 else self.in_shape[1:]

    @property
    def output_positions(self) -> tuple[int, ...]:
        return tuple(int(jnp.prod(jnp.array(s))) for s in self.spatial)
