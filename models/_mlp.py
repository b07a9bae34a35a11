"""Bias-free fully connected networks: :class:`MLP` and :class:`DeepLinear`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import HomogeneousNet, he_normal

_ACTIVATIONS = ("relu", "linear")


def _dense_init(key, dims, gain, init_scale, dtype):
    keys = jax.random.split(key, len(dims) - 1)
    return tuple(
        he_normal(k, (d_out, d_in), d_in, gain, init_scale, dtype)
        for k, d_in, d_out in zip(keys, dims[:-1], dims[1:])
    )


def _dense_activation_floats(weights) -> int:
    """Every layer's output, per sample."""
    return int(sum(w.shape[0] for w in weights))


def _check_dims(cls: str, in_dim, widths, out_dim) -> tuple[int, ...]:
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{cls}: {name}={value!r} is not allowed; use a positive integer")
    widths = tuple(widths)
    for w in widths:
        if not isinstance(w, int) or w < 1:
            raise ValueError(
                f"{cls}: widths={widths!r} is not allowed; use a sequence of positive integers"
            )
    return (in_dim, *widths, out_dim)


class MLP(HomogeneousNet):
    """``f(W; x) = W_L σ(W_{L-1} ... σ(W_1 x))``, no biases, ``W_k`` of shape ``(out, in)``.

    Args:
        in_dim: input dimension (inputs of any shape are flattened).
        widths: hidden widths; ``L = len(widths) + 1``.
        out_dim: ``C``.
        activation: ``"relu"`` (σ'(0) = 0, as JAX) or ``"linear"``.
        key: PRNG key for the He-normal initialization, scaled by ``init_scale``.
    """

    weights: tuple[Array, ...]
    activation: str = "relu"

    def __init__(
        self,
        in_dim: int,
        widths: Sequence[int],
        out_dim: int,
        *,
        activation: str = "relu",
        init_scale: float = 1.0,
        dtype=None,
        key,
    ):
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"MLP: activation={activation!r} is not allowed; use one of {_ACTIVATIONS}"
            )
        dims = _check_dims("MLP", in_dim, widths, out_dim)
        gain = 2.0 if activation == "relu" else 1.0
        dtype = dtype or jnp.result_type(float)
        self.weights = _dense_init(key, dims, gain, init_scale, dtype)
        self.activation = activation

    def apply_features(self, weights, x) -> Float[Array, " p"]:
        h = jnp.reshape(x, (-1,))
        act = jax.nn.relu if self.activation == "relu" else (lambda z: z)
        for w in weights[:-1]:
            h = act(w @ h)
        return h

    def apply_features_batch(self, weights, x) -> Float[Array, "N p"]:
        h = jnp.reshape(x, (x.shape[0], -1))
        act = jax.nn.relu if self.activation == "relu" else (lambda z: z)
        for w in weights[:-1]:
            h = act(h @ w.T)
        return h

    def apply_last_batch(self, weight, h) -> Float[Array, "N C"]:
        return h @ weight.T

    @property
    def activation_floats(self) -> int:
        return _dense_activation_floats(self.weights)

    def pre_activations(self, weights, x) -> tuple[Array, ...]:
        if self.activation == "linear":
            return ()
        h, out = jnp.reshape(x, (-1,)), []
        for w in weights[:-1]:
            out.append(w @ h)
            h = jax.nn.relu(out[-1])
        return tuple(out)

    def apply_last(self, weight, h) -> Float[Array, " C"]:
        return weight @ h


class DeepLinear(HomogeneousNet):
    """A deep linear network ``f(W; x) = W_L ... W_1 x`` (THEORY 7: Saxe et al.)."""

    weights: tuple[Array, ...]

    def __init__(
        self,
        in_dim: int,
        widths: Sequence[int],
        out_dim: int,
        *,
        init_scale: float = 1.0,
        dtype=None,
        key,
    ):
        dims = _check_dims("DeepLinear", in_dim, widths, out_dim)
        dtype = dtype or jnp.result_type(float)
        self.weights = _dense_init(key, dims, 1.0, init_scale, dtype)

    def apply_features(self, weights, x) -> Float[Array, " p"]:
        h = jnp.reshape(x, (-1,))
        for w in weights[:-1]:
            h = w @ h
        return h

    def apply_features_batch(self, weights, x) -> Float[Array, "N p"]:
        h = jnp.reshape(x, (x.shape[0], -1))
        for w in weights[:-1]:
            h = h @ w.T
        return h

    def apply_last_batch(self, weight, h) -> Float[Array, "N C"]:
        return h @ weight.T

    @property
    def activation_floats(self) -> int:
        return _dense_activation_floats(self.weights)

    def pre_activations(self, weights, x) -> tuple[Array, ...]:
        return ()

    def apply_last(self, weight, h) -> Float[Array, " C"]:
        return weight @ h
