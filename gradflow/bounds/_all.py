"""All of THEORY 6's bounds for one trained network, next to its measured errors."""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from ..data import Dataset
from ..metrics import margins as margins_fn
from ..models import HomogeneousNet
from ._margin import confidence_term, margin_bound
from ._rademacher import (
    dense_rademacher,
    dense_to_kernel_ratio,
    kernel_rademacher,
    patch_bound,
)


def _error_rate(margin: Array) -> Array:
    return jnp.mean((margin <= 0).astype(margin.dtype))


@eqx.filter_jit
def _normalized_margins(model: HomogeneousNet, weights, rho: Array, x: Array, y: Array) -> Array:
    """The margins of ``f/ρ`` on ``(x, y)``: one compiled call (eager, the vmapped network ran
    op by op, ~1 s per call on a small CNN)."""
    outputs = jax.vmap(model.apply, in_axes=(None, 0))(weights, x)
    return margins_fn(outputs / rho, y)


def _best_gamma(margin: Array, rademacher: Array, n: int, delta: float):
    """The positive training margin γ that minimizes the bound, and the bound there.

    Only positive margins are candidates: a non-positive margin must not smuggle in γ = +inf,
    whose bound is the trivial ``1 + confidence`` (it would be chosen while any training point
    is misclassified and vanish once all are fitted, so the reported bound would jump). With no
    positive margin at all, γ = +inf and the bound is that trivial value.
    """
    positive = margin > 0
    candidates = jnp.where(positive, margin, jnp.inf)
    values = margin_bound(margin, candidates, rademacher, n, delta)
    i = jnp.argmin(jnp.where(positive, values, jnp.inf))
    return candidates[i], values[i]


def all_bounds(
    model: HomogeneousNet,
    weights: Sequence[Array],
    dataset: Dataset,
    gamma: float | None = None,
    delta: float = 0.05,
) -> dict[str, float]:
    """The margin bound with the dense and the (reconstructed) kernel Rademacher terms.

    Margins are those of the normalized network ``f/ρ`` with ``ρ = Π_k ||w_k||_F`` (the product
    of the parameters' norms: kernel norms for convolutions), so both Rademacher terms are
    evaluated at unit layer norms: ``R_dense = B_x (sqrt(2L ln 2)+1) Π_k sqrt(d_k) / sqrt(N)``
    and ``R_kernel`` (RECONSTRUCTION, see :func:`kernel_rademacher`).

    ``gamma=None`` picks, for each bound separately, the positive training margin that minimizes
    it (γ = +inf, and the trivial bound ``1 + confidence``, only when no margin is positive).
    That choice looks at the data, so strictly the bound needs a union bound over γ (an extra
    O(sqrt(ln ln(1/γ) / N)) term, not added here).

    Returns floats: ``train_error``, ``test_error`` (NaN without a test split; a margin ≤ 0
    counts as an error), ``rho``, ``min_margin``, ``input_bound``, ``patch_bound``,
    ``rademacher_dense``, ``rademacher_kernel``, ``gamma_dense``, ``gamma_kernel``,
    ``bound_dense``, ``bound_kernel``, ``confidence``, ``dense_to_kernel_ratio``.
    """
    weights = tuple(weights)
    rho = jnp.prod(jnp.stack([jnp.linalg.norm(w) for w in weights]))
    n = dataset.n_train

    def normalized_margins(x, y):
        return _normalized_margins(model, weights, rho, jnp.asarray(x), jnp.asarray(y))

    margin = normalized_margins(dataset.x_train, dataset.y_train)
    unit = tuple(w / jnp.linalg.norm(w) for w in weights)
    x_bound = dataset.input_bound
    p_bound = patch_bound(model, jnp.asarray(dataset.x_train))
    r_dense = dense_rademacher(unit, x_bound, n, model.output_positions)
    r_kernel = kernel_rademacher(model, p_bound, n, unit)
    if gamma is None:
        g_dense, b_dense = _best_gamma(margin, r_dense, n, delta)
        g_kernel, b_kernel = _best_gamma(margin, r_kernel, n, delta)
    else:
        g_dense = g_kernel = jnp.asarray(gamma)
        b_dense = margin_bound(margin, gamma, r_dense, n, delta)
        b_kernel = margin_bound(margin, gamma, r_kernel, n, delta)
    test_error = jnp.nan
    if dataset.has_test:
        test_error = _error_rate(normalized_margins(dataset.x_test, dataset.y_test))
    values = {
        "train_error": _error_rate(margin),
        "test_error": test_error,
        "rho": rho,
        "min_margin": jnp.min(margin),
        "input_bound": x_bound,
        "patch_bound": p_bound,
        "rademacher_dense": r_dense,
        "rademacher_kernel": r_kernel,
        "gamma_dense": g_dense,
        "gamma_kernel": g_kernel,
        "bound_dense": b_dense,
        "bound_kernel": b_kernel,
        "confidence": confidence_term(n, delta),
        "dense_to_kernel_ratio": dense_to_kernel_ratio(model),
    }
    return {k: float(v) for k, v in values.items()}
