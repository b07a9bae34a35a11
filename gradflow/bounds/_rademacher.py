"""Rademacher-complexity bounds for dense and local-kernel networks (THEORY 6)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..models import HomogeneousNet, LocalCNN


def _weights_and_positions(net, positions):
    if isinstance(net, HomogeneousNet):
        return tuple(net.weights), tuple(net.output_positions)
    weights = tuple(net)
    return weights, tuple(positions) if positions is not None else (1,) * len(weights)


def dense_to_kernel_ratio(model: HomogeneousNet) -> float:
    """``Π_k sqrt(d_k) = Π_k ||W_k||_F / Π_k ||w_k||_F`` [exact] (THEORY 6).

    A VALID convolution with ``d_k`` output positions repeats the full kernel once per position,
    so its Toeplitz matrix has ``||W_k||_F = sqrt(d_k) ||w_k||_F``; dense layers have ``d_k = 1``.
    """
    return math.prod(math.sqrt(d) for d in model.output_positions)


def dense_rademacher(
    weights: HomogeneousNet | Sequence[Array],
    input_bound: ArrayLike,
    n: ArrayLike,
    positions: Sequence[int] | None = None,
) -> Float[Array, ""]:
    """``R_N ≤ B_x (sqrt(2 L ln 2) + 1) Π_k ||W_k||_F / sqrt(N)`` (Golowich, Rakhlin & Shamir 2018,
    THEORY 6) [exact as stated there].

    ``weights``: a network (its weights and ``output_positions`` are used) or a sequence of layer
    weights with ``positions`` ``d_k`` (default all 1). Kernels count with their Toeplitz norms,
    ``||W_k||_F = sqrt(d_k) ||w_k||_F``. ``input_bound``: ``B_x = max_n ||x_n||``.
    """
    ws, pos = _weights_and_positions(weights, positions)
    depth = len(ws)
    norm = jnp.prod(
        jnp.stack([jnp.sqrt(d) * jnp.linalg.norm(w) for w, d in zip(ws, pos, strict=True)])
    )
    return input_bound * (math.sqrt(2 * depth * math.log(2)) + 1) * norm / jnp.sqrt(n)


def kernel_degrees(model: HomogeneousNet) -> tuple[int, ...]:
    """``deg_k``: the number of input POSITIONS one output unit of layer k reads.

    The product of the kernel's spatial extent for a convolution; for a dense last layer of a
    :class:`LocalCNN`, its input's positions; 1 for every layer of a dense network.
    """
    if not isinstance(model, LocalCNN):
        return (1,) * model.degree
    degrees = [math.prod(w.shape[2:]) for w in model.weights if w.ndim > 2]
    if model.last == "dense":
        degrees.append(math.prod(model.spatial[-2]) if len(model.spatial) > 1 else 1)
    return tuple(degrees)


def patch_bound(model: HomogeneousNet, x: Float[Array, "N ..."]) -> Float[Array, ""]:
    """``max_{n, j} ||P_j x_n||``: the largest norm of a first-layer receptive-field patch.

    ``P_j`` extracts the (all-channel) input patch read by output position ``j`` of layer 1 of a
    :class:`LocalCNN`; for a dense network the single "patch" is the whole input, giving ``B_x``.
    """
    n = x.shape[0]
    if not isinstance(model, LocalCNN):
        return jnp.max(jnp.linalg.norm(jnp.reshape(x, (n, -1)), axis=1))
    w = model.weights[0]
    sq = jnp.sum(jnp.reshape(x, (n, *model.in_shape)) ** 2, axis=1, keepdims=True)
    ones = jnp.ones((1, 1, *w.shape[2:]), sq.dtype)
    padding = [(q, q) for q in model.paddings[0]]  # zero padding adds nothing to a patch norm
    patches = jax.lax.conv_general_dilated(sq, ones, model.strides[0], padding)
    return jnp.sqrt(jnp.max(patches))


def kernel_rademacher(
    model: HomogeneousNet,
    patch_norm: ArrayLike,
    n: ArrayLike,
    weights: Sequence[Array] | None = None,
) -> Float[Array, ""]:
    """RECONSTRUCTION [recon, UNVERIFIED constants] of the local-kernel bound of Galanti, Xu,
    Galanti & Poggio (2023), in the form THEORY 6 describes:

        R_N ≲ P_x (sqrt(2 ln(2^L Π_k deg_k)) + 1) Π_k ||w_k||_F / sqrt(N)

    with ``Π_k ||w_k||_F`` the product of KERNEL norms (not Toeplitz norms), ``P_x`` =
    :func:`patch_bound` (largest first-layer receptive-field patch norm) and ``deg_k`` =
    :func:`kernel_degrees`. The exact form and constants of the paper's theorem were not
    checked; for a dense network (all ``deg_k = 1``, ``P_x = B_x``) it reduces to
    :func:`dense_rademacher` by construction. Never use it as ground truth.
    """
    ws = tuple(model.weights if weights is None else weights)
    log_term = len(ws) * math.log(2) + sum(math.log(d) for d in kernel_degrees(model))
    norm = jnp.prod(jnp.stack([jnp.linalg.norm(w) for w in ws]))
    return patch_norm * (math.sqrt(2 * log_term) + 1) * norm / jnp.sqrt(n)
