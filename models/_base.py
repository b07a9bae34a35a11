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

    # ---- batch-native application: a batch (N, ...) in one call -----------------------------
    def apply_features_batch(self, weights: tuple[Array, ...], x: Array) -> Float[Array, "N p"]:
        """:meth:`apply_features` of every row of a batch ``x`` of shape ``(N, ...)``.

        The base class maps the per-sample function over the rows; :class:`~gradflow.models.MLP`,
        :class:`~gradflow.models.DeepLinear` and :class:`~gradflow.models.LocalCNN` apply their
        layers to the batch directly (matrix products and convolutions with ``N`` as their
        batch axis), which is what the loss (:mod:`gradflow._loss`) calls.
        """
        return jax.vmap(self.apply_features, in_axes=(None, 0))(weights, x)

    def apply_last_batch(self, weight: Array, h: Float[Array, "N p"]) -> Float[Array, "N C"]:
        """:meth:`apply_last` of every row of the features ``h`` of shape ``(N, p)``."""
        return jax.vmap(self.apply_last, in_axes=(None, 0))(weight, h)

    def apply_batch(self, weights: tuple[Array, ...], x: Array) -> Float[Array, "N C"]:
        """``f(W; x_n)`` for every row of a batch ``x`` of shape ``(N, ...)``: ``(N, C)``.

        Equal to ``jax.vmap(apply, (None, 0))(weights, x)`` to rounding.
        """
        return self.apply_last_batch(weights[-1], self.apply_features_batch(weights, x))

    @property
    def activation_floats(self) -> int:
        """Floats per sample of every layer's output (the activations; not the input, which the
        data already hold).

        A forward and backward pass over ``k`` samples holds about ``k`` times this many floats
        at once; :class:`gradflow.Problem` sizes its chunks of samples from it. The base class
        counts ``W_k.shape[0]`` per layer (dense layers); subclasses count positions too.
        """
        return int(sum(int(w.shape[0]) for w in self.weights))

    def pre_activations(self, weights: tuple[Array, ...], x: Array) -> tuple[Array, ...]:
        """The inputs of the network's ReLUs for the given weights (unbatched ``x``), one array
        per activated layer, first layer first; ``()`` for a network without activations.

        Their signs are the network's activation pattern at ``x``: within one pattern the
        flow's right-hand side is smooth (THEORY 1, "Non-smoothness").
        """
        raise NotImplementedError(f"{type(self).__name__} does not expose its pre-activations")

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
