"""THEORY 4.9's identity at a stationary point, per layer, as a relative defect.

At a stationary point of the plain flow with decay on layer ``k``, ``(2/N) K^k r = λ F`` (``K^k``
layer ``k``'s neural-tangent Gram matrix, ``r = Y − F``); for the LM and WN flows, where layer
``k``'s direction is at rest on its sphere, ``(2/N) K^k_V r = s f`` (the normalized network's
Gram matrix, ``s = (2/N) Σ_n ⟨r_n, f_n⟩``). Both hold for every ReLU slope at ``z = 0``, so the
Jacobians are taken with given slopes (``α`` on ``S``). ``K^k r`` is one vector-Jacobian
product followed by one Jacobian-vector product restricted to layer ``k``; no Gram matrix is
formed.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._switching import forward


@eqx.filter_jit
def identity_defects(problem, state, slopes):
    """THEORY 4.9's relative defect per layer, the Jacobians taken with ``slopes``."""
    weights = problem.network_weights(state)
    y = problem.y_train
    n = y.shape[0]
    plain = "w" in state
    if plain:
        layers = tuple(weights)
    else:
        layers = tuple(w / jnp.linalg.norm(w) for w in weights)
        rho = jnp.prod(jnp.stack([jnp.linalg.norm(w) for w in weights]))

    def out(ws):
        return forward(problem.model, ws, problem.x_train, slopes, None, problem.chunk_size)[0]

    f, pullback = jax.vjp(out, layers)
    if plain:
        r = y - f
        rhs = problem.weight_decay * f
    else:
        r = y - rho * f
        rhs = (2.0 / n) * jnp.sum(r * f) * f
    u = pullback(r)[0]
    defects = []
    for k in range(len(layers)):
        tangent = tuple(u[i] if i == k else jnp.zeros_like(u[i]) for i in range(len(layers)))
        lhs = (2.0 / n) * jax.jvp(out, (layers,), (tangent,))[1]
        den = jnp.linalg.norm(lhs) + jnp.linalg.norm(rhs)
        defects.append(jnp.where(den > 0, jnp.linalg.norm(lhs - rhs) / den, 0.0))
    return jnp.stack(defects)
