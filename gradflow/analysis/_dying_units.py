"""Whether zero is stable for the dying units of a Filippov equilibrium (THEORY 3.6).

With ``g(â) = ∇_b L`` at incoming weights ``â`` (unit norm) and outgoing weights ``b = 0``, the
second variation of the loss along ``(a, b)`` is ``2⟨b, g(a)⟩ + μ_a|a|² + μ_b|b|²`` (``μ = λ``
for Plain; ``−⟨v, ∇_v L⟩/r²``, the curvature of the sphere, for LM), positive for every
direction iff ``||g(â)|| < √(μ_a μ_b)`` for every ``â``. :func:`dying_ratio` samples the
maximum over random ``â`` (a lower estimate of the supremum).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._switching import unit_masks


def dying_ratio(problem, state, dying, num: int = 256, seed: int = 0) -> float | None:
    """Sampled ``max ||g(â)|| / √(μ_a μ_b)`` over the dying units (module docstring)."""
    if not dying or "g" in state:  # WN: the loss does not see ||v_k||, no curvature to use
        return None
    key = "w" if "w" in state else "v"
    weights = [np.asarray(w) for w in problem.to_weights(state)]
    grad = jax.grad(problem.loss)(state)
    if key == "w":
        curv = [float(problem.weight_decay)] * len(weights)
    else:
        curv = [
            -float(jnp.vdot(v, g)) / float(jnp.sum(v**2)) for v, g in zip(state["v"], grad["v"])
        ]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for k, j in dying:
        m_in, m_out = unit_masks(problem.model, weights, k, j)
        i_in, i_out = np.flatnonzero(m_in[k]), np.flatnonzero(m_out[k + 1])
        mu = curv[k] * curv[k + 1]
        if min(curv[k], curv[k + 1]) <= 0:  # not only the product: two negatives make it > 0
            return float("inf")
        cand = rng.standard_normal((num, i_in.size))
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        g = np.asarray(
            _unit_signal(
                problem,
                state,
                k,
                jnp.asarray(i_in),
                jnp.asarray(i_out),
                jnp.asarray(cand, problem.dtype),
            )
        )
        worst = max(worst, float(np.max(np.linalg.norm(g, axis=1))) / np.sqrt(mu))
    return worst


@eqx.filter_jit
def _unit_signal(problem, state, k, i_in, i_out, cand):
    key = "w" if "w" in state else "v"

    def loss(a, b):
        vs = list(state[key])
        vs[k] = jnp.ravel(vs[k]).at[i_in].set(a).reshape(vs[k].shape)
        vs[k + 1] = jnp.ravel(vs[k + 1]).at[i_out].set(b).reshape(vs[k + 1].shape)
        return problem.loss({**state, key: tuple(vs)})

    zero = jnp.zeros(i_out.shape, cand.dtype)
    return jax.vmap(lambda a: jax.grad(loss, argnums=1)(a, zero))(cand)
