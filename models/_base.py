"""The common interface of gradflow's positively homogeneous networks."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
from jaxtyping import Array, Float


class HomogeneousNet(eqx.Module):
    """A bias-free network ``f(W; x) = W_L σ(... σ(W_1 x))`` (THEORY 1).

    Subclasses hold their layer weights in ``weights`` (a tuple, first layer first) and
    implement :meth:`apply` / :meth:`apply_features` as pure functions of a weight tuple, so
    that the dynamics can differentiate with respect to any reparametrization of it.

    The network is positively homogeneous of degree ``L = len(weights)`` in its weights and
    of degree 1 in each layer.  For convolutional layers the parameters are the kernels
    ``w_k`` and ``ρ_k = ||w_k||_F`` (the Toeplitz matrix has ``||W_k||_F = sqrt(d_k)||w_k||_F``,
    ``d_k`` = :attr:`output_positions`).
    """

    weights: eqx.AbstractVar[tuple[Array, ...]]

    @abc.abstractmethod
    def apply_features(self, weights: tuple[Array, ...], x: Array) -> Float[Array, " p"]:
        """The input of the last layer, ``h(x)``, for the given weights (unbatched)."""

    @abc.abstractmethod
    def apply_last(self, weight: Array, h: Array) -> Float[Array, " C"]:
        """The last layer applied to features ``h`` (linear in ``weight``)."""

    def apply(self, weights: tuple[Array, ...], x: Array) -> Float[Array, " C"]:
        """``f(W; x)`` for an explicit weight tuple (unbatched ``x``), shape ``(C,)``."""
        return self.apply_last(weights[-1], self.apply_features(weights, x))

    def __call__(self, x: Array) -> Float[Array, " C"]:
        return self.apply(self.weights, x)

    def features(self, x: Array) -> Float[Array, " p"]:
        """The input of the last layer (the 'features' of neural collapse)."""
        return self.apply_features(self.weights, x)

    @property
    def layers(self) -> list[Array]:
        """The ordered list of layer weights (kernels for convolutional layers)."""
        return list(self.weights)

    @property
    def degree(self) -> int:
        """``L``: the degree of homogeneity (the number of layers)."""
        return len(self.weights)

    @property
    def output_positions(self) -> tuple[int, ...]:
        """``d_k``: the number of output positions of each layer (1 for dense layers)."""
        return (1,) * len(self.weights)

    def with_weights(self, weights) -> HomogeneousNet:
        """A copy of the network holding ``weights`` instead."""
        return eqx.tree_at(lambda m: m.weights, self, tuple(weights))


def he_normal(key, shape, fan_in: int, gain: float, scale: float, dtype) -> Array:
    """``N(0, scale² gain / fan_in)`` entries: He (gain 2) or LeCun (gain 1) scaling."""
    return scale * jax.numpy.sqrt(gain / fan_in) * jax.random.normal(key, shape, dtype)
