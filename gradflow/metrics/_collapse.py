"""Neural-collapse metrics NC1-NC4 (THEORY 5; Papyan, Han & Donoho 2020)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def _class_statistics(features: Array, labels: Array, num_classes: int):
    """Class means ``μ_c``, centred means ``μ̃_c = μ_c − μ_G``, counts, within-class residuals."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=features.dtype)
    counts = jnp.sum(onehot, axis=0)
    means = (onehot.T @ features) / counts[:, None]
    centred = means - jnp.mean(features, axis=0)
    within = features - means[labels]
    return means, centred, counts, within


def _nc1(centred: Array, counts: Array, within: Array) -> Array:
    """``(1/K) Tr(Σ_W Σ_B^†)`` computed as ``||M̃^† Z||_F² / N``.

    With ``Z`` the ``(p, N)`` within-class residuals (``Σ_W = Z Zᵀ/N``) and ``M̃`` the ``(p, K)``
    centred means (``Σ_B = M̃ M̃ᵀ/K``), ``Σ_B^† = K (M̃^†)ᵀ M̃^†``, so the two forms are equal; this
    one takes the pseudo-inverse of the better-conditioned ``M̃``.  ``Σ_c n_c μ̃_c = 0`` exactly,
    so the count vector spans a null direction of ``M̃``; projecting it out first removes the
    rounding error there (of size ``eps ||μ_G||``, which can exceed pinv's cut-off when the global
    mean is large), leaving ``M̃`` unchanged in exact arithmetic.
    """
    m = centred.T
    w = counts / jnp.linalg.norm(counts)
    m = m - jnp.outer(m @ w, w)
    return jnp.sum((jnp.linalg.pinv(m) @ within.T) ** 2) / within.shape[0]


def _nc2(centred: Array) -> tuple[Array, Array]:
    """Equinorm ``std_c ||μ̃_c|| / mean_c ||μ̃_c||`` (population std) and equiangularity
    ``mean_{c≠c'} |cos(μ̃_c, μ̃_c') + 1/(K−1)|``."""
    k = centred.shape[0]
    norms = jnp.linalg.norm(centred, axis=1)
    equinorm = jnp.std(norms) / jnp.mean(norms)
    cos = (centred @ centred.T) / jnp.outer(norms, norms)
    off = ~jnp.eye(k, dtype=bool)
    equiangular = jnp.sum(jnp.where(off, jnp.abs(cos + 1.0 / (k - 1)), 0.0)) / (k * (k - 1))
    return equinorm, equiangular


def _unit(a: Array) -> Array:
    return a / jnp.linalg.norm(a)


def neural_collapse(
    features: Float[Array, "N p"],
    labels: Int[Array, " N"],
    last_layer: Float[Array, "C p"],
    outputs: Float[Array, "N C"] | None = None,
) -> dict[str, Float[Array, ""]]:
    """NC1-NC4 of THEORY 5 for features ``h_n`` (the input of the last layer).

    With ``K`` classes, class means ``μ_c``, global mean ``μ_G`` (the mean of all ``N`` features),
    ``μ̃_c = μ_c − μ_G`` and ``M̃ = [μ̃_1, …, μ̃_K]`` (``p × K``):

    * ``nc1 = (1/K) Tr(Σ_W Σ_B^†)``, ``Σ_W = (1/N) Σ_n (h_n − μ_{c(n)})(h_n − μ_{c(n)})ᵀ``,
      ``Σ_B = (1/K) Σ_c μ̃_c μ̃_cᵀ`` (Moore-Penrose pseudo-inverse, JAX's default cut-off).
    * ``nc2_equinorm = std_c ||μ̃_c|| / mean_c ||μ̃_c||`` (population std);
      ``nc2_equiangular = mean_{c≠c'} |cos(μ̃_c, μ̃_c') + 1/(K−1)|``;
      ``nc2 = nc2_equinorm + nc2_equiangular`` (the SUM: zero iff both parts are zero).
    * ``nc3 = || W_Lᵀ/||W_L||_F − M̃/||M̃||_F ||_F²``.
    * ``nc4``: the fraction of samples whose predicted class differs from the class of the
      nearest class mean ``argmin_c ||h_n − μ_c||``.

    Binary tasks (``C = 1``, ``last_layer`` of shape ``(1, p)``, ``labels`` in {0, 1} with 1 the
    ``y = +1`` class): NC1 and NC2 use the ``K = 2`` classes (so equiangularity is
    ``|cos(μ̃_0, μ̃_1) + 1|``); NC3 compares ``w_L`` with ``μ_+ − μ_−``:
    ``|| w_L/||w_L|| − (μ_1 − μ_0)/||μ_1 − μ_0|| ||²``; NC4 predicts class 1 where ``f > 0``.

    Args:
        features: ``h_n``, shape ``(N, p)``.
        labels: integer classes ``c(n)`` in ``[0, K)``; every class must occur (else NaN).
        last_layer: ``W_L`` as a ``(C, p)`` matrix acting on the flattened features (a
            convolutional last layer must be passed as that matrix).
        outputs: ``f(x_n)``, shape ``(N, C)``; defaults to ``features @ last_layer.T``.

    Returns:
        ``{"nc1", "nc2", "nc2_equinorm", "nc2_equiangular", "nc3", "nc4"}``, scalar arrays.
    """
    if last_layer.ndim != 2 or last_layer.shape[1] != features.shape[1]:
        raise ValueError(
            f"neural_collapse: last_layer has shape {last_layer.shape}; it must be (C, p) with "
            f"p = {features.shape[1]} (the feature dimension)"
        )
    c = last_layer.shape[0]
    binary = c == 1
    num_classes = 2 if binary else c
    if outputs is None:
        outputs = features @ last_layer.T
    means, centred, counts, within = _class_statistics(features, labels, num_classes)

    nc1 = _nc1(centred, counts, within)
    equinorm, equiangular = _nc2(centred)
    if binary:
        nc3 = jnp.sum((_unit(last_layer[0]) - _unit(means[1] - means[0])) ** 2)
        predicted = (outputs[:, 0] > 0).astype(labels.dtype)
    else:
        nc3 = jnp.sum((_unit(last_layer.T) - _unit(centred.T)) ** 2)
        predicted = jnp.argmax(outputs, axis=1)
    distances = jnp.sum((features[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    nearest = jnp.argmin(distances, axis=1)
    nc4 = jnp.mean((predicted != nearest).astype(features.dtype))
    return {
        "nc1": nc1,
        "nc2": equinorm + equiangular,
        "nc2_equinorm": equinorm,
        "nc2_equiangular": equiangular,
        "nc3": nc3,
        "nc4": nc4,
    }
