"""Neural collapse under symmetric quasi-interpolation (THEORY 4.8)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def nc_kappa(eps: ArrayLike, weight_decay: ArrayLike, num_classes: int) -> Array:
    """``κ = 2ε / (λ (C − 1))`` in ``W_L = κ M̃ᵀ`` (THEORY 4.8) [exact given the residuals].

    Assumptions: balanced classes, ``C ≥ 2`` one-hot classes, and residuals of symmetric
    quasi-interpolation, ``r_n = y_n − f_n`` with ``f`` equal to ``1 − ε`` on the sample's class and
    ``ε/(C−1)`` elsewhere. Then ``Σ_c r_c = 0``, so the global mean drops out of
    ``(2/N) Σ_n r_n h_nᵀ = (2ε/(C−1)) M̃ᵀ``, and last-layer stationarity
    ``λ W_L = (2/N) Σ_n r_n h_nᵀ`` gives ``κ``.

    Caveat (found while implementing): any ``W_L ∝ M̃ᵀ`` has ``1ᵀ W_L = 0`` (balanced classes give
    ``Σ_c μ̃_c = 0``), so its outputs sum to 0 over classes, while the stated outputs sum to 1. A
    bias-free last layer therefore cannot produce these outputs exactly; the identity is about
    the residuals, and only their class-centred part ``ε C/(C−1) (e_c − 1/C)`` enters κ.
    """
    if num_classes < 2:
        raise ValueError(f"nc_kappa: num_classes={num_classes!r} is not allowed; use C >= 2")
    return 2.0 * jnp.asarray(eps) / (jnp.asarray(weight_decay) * (num_classes - 1))


def etf_gram(num_classes: int) -> Float[Array, "C C"]:
    """The Gram matrix of a unit-norm simplex ETF: ``(C/(C−1)) (I − 11ᵀ/C)`` [exact].

    Ones on the diagonal and ``−1/(C−1)`` off it; eigenvalues ``C/(C−1)`` (``C − 1`` times) and
    ``0`` (eigenvector ``1``). THEORY 4.8: ``M̃ᵀM̃ ∝`` this at neural collapse.
    """
    if num_classes < 2:
        raise ValueError(f"etf_gram: num_classes={num_classes!r} is not allowed; use C >= 2")
    c = num_classes
    return (jnp.eye(c) - jnp.ones((c, c)) / c) * (c / (c - 1))
