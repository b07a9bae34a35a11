"""The scale ρ for frozen directions (THEORY 4.1) and at quasi-interpolation (4.3)."""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def _sums(f: Array, y: Array) -> tuple[Array, Array]:
    """``a = Σ_n ⟨y_n, f_n⟩`` and ``b = Σ_n ||f_n||²``."""
    if f.shape != y.shape:
        raise ValueError(f"f has shape {f.shape} and y has shape {y.shape}; they must match")
    return jnp.sum(y * f), jnp.sum(f * f)


def rho_eq(
    f: Float[Array, "N C"], y: Float[Array, "N C"], weight_decay: ArrayLike
) -> Float[Array, ""]:
    """``ρ_eq = Σ_n ⟨y_n, f_n⟩ / (Σ_n ||f_n||² + N λ/2)`` (THEORY 4.1) [exact].

    The fixed point of LM-last's ``dρ/dt = s − λρ`` with the directions ``V`` frozen, where
    ``f_n = f(V; x_n)`` are the normalized network's outputs and
    ``s = (2/N) Σ_n ⟨y_n − ρ f_n, f_n⟩``. At any equilibrium of the full LM-last flow
    ``ρ = ρ_eq(V)``.
    """
    a, b = _sums(f, y)
    return a / (b + f.shape[0] * weight_decay / 2)


def kappa(f: Float[Array, "N C"], weight_decay: ArrayLike) -> Float[Array, ""]:
    """``κ = (2/N) Σ_n ||f_n||² + λ``: the relaxation rate of ρ for frozen ``V`` (THEORY 4.1)
    [exact], units 1/time."""
    return 2.0 * jnp.sum(f * f) / f.shape[0] + weight_decay


def rho_relaxation(
    rho0: ArrayLike,
    f: Float[Array, "N C"],
    y: Float[Array, "N C"],
    weight_decay: ArrayLike,
) -> Callable[[ArrayLike], Array]:
    """``t ↦ ρ(t) = ρ_eq + (ρ(0) − ρ_eq) e^{−κ t}`` (THEORY 4.1) [exact for frozen ``V``].

    The solution of LM-last's ``dρ/dt = s − λρ = κ (ρ_eq − ρ)`` with ``ρ(0) = rho0``; ``t`` is flow
    time (SGD step ``j`` is ``t = η j``) and may be an array (the result broadcasts over it).
    """
    r_eq = rho_eq(f, y, weight_decay)
    k = kappa(f, weight_decay)

    def predict_fn(t: ArrayLike) -> Array:
        return r_eq + (rho0 - r_eq) * jnp.exp(-k * jnp.asarray(t))

    return predict_fn


def quasi_interpolation(
    m: ArrayLike, weight_decay: ArrayLike
) -> tuple[Float[Array, "*shape"], Float[Array, "*shape"]]:
    """``(ρ_eq, ε)`` for equal binary margins ``y_n f_n = m`` (THEORY 4.3) [exact under equal
    margins; a paper claim otherwise].

    ``ρ_eq = m / (m² + λ/2)`` and every training point is fitted to ``y_n ρ f_n = 1 − ε`` with
    ``ε = (λ/2) / (m² + λ/2) ≈ λ ρ²/2``.
    """
    m = jnp.asarray(m)
    denominator = m**2 + weight_decay / 2
    return m / denominator, (weight_decay / 2) / denominator
