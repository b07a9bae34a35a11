"""The low-rank bound for SGD with weight decay (THEORY 4.6; Galanti et al. 2022)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def rank_bound(
    batch_size: ArrayLike,
    lr: ArrayLike,
    weight_decay: ArrayLike,
    eps: ArrayLike,
    ratio_C_over_c: ArrayLike,  # noqa: N803 (THEORY's C/c)
    positions: ArrayLike = 1,
) -> tuple[Array, Array]:
    """``(k, rank bound)`` with ``k = ⌈ln(C/(cε)) / (ηλ)⌉`` steps and bound ``B · P · k``.

    THEORY 4.6 [the derivation is exact; that SGD lands in the regime is a paper claim].
    Unrolling ``W_{j+1} = (1 − ηλ) W_j − η G_j`` over ``k`` steps, the initial term has relative
    size ``(1 − ηλ)^k C/c ≤ e^{−ηλk} C/c ≤ ε``, and the remaining sum of ``k`` mini-batch gradients
    has rank ``≤ k B P`` (a per-sample gradient of a dense layer has rank ≤ 1, of a conv layer
    ≤ P = output positions). So if ``c ≤ ||W_j||_F ≤ C`` along the run, ``W_T/||W_T||`` lies within
    ε (Frobenius) of a matrix of rank ≤ ``B P k``. The ceiling makes ``k`` a step count; using
    ``ηλ`` instead of ``−ln(1 − ηλ)`` only makes ``k`` (and the bound) larger, so it stays valid.

    Assumptions: ``0 < ηλ < 1``, ``0 < ε < 1``, ``C/c ≥ 1``. The bound falls as B falls, as η
    rises and as λ rises; it is ``inf`` for λ = 0 (no low-rank bias). Arguments broadcast.
    """
    k = jnp.ceil(jnp.log(jnp.asarray(ratio_C_over_c) / eps) / (jnp.asarray(lr) * weight_decay))
    return k, jnp.asarray(batch_size) * positions * k
