"""The top Hessian eigenvalue by Hessian-vector power iteration (for stable step sizes)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


@eqx.filter_jit
def top_hessian_eigenvalue(problem, state, iters: int = 50, key=None):
    """``λ_max`` of ``∇²L(state)`` (total loss, the problem's parametrization).

    Power iteration on Hessian-vector products (forward-over-reverse); never forms the
    Hessian. Gradient descent on a quadratic is stable for ``η < 2/λ_max``.
    """
    flat, unravel = ravel_pytree(state)
    key = jax.random.PRNGKey(0) if key is None else key
    v = jax.random.normal(key, flat.shape, flat.dtype)
    v = v / jnp.linalg.norm(v)

    def loss_flat(x):
        return problem.loss(unravel(x))

    def hvp(u):
        return jax.jvp(jax.grad(loss_flat), (flat,), (u,))[1]

    def body(_, carry):
        u, _lam = carry
        hu = hvp(u)
        lam = jnp.vdot(u, hu)
        return hu / jnp.linalg.norm(hu), lam

    _, lam = jax.lax.fori_loop(0, iters, body, (v, jnp.zeros((), flat.dtype)))
    return lam


def stable_learning_rate(problem, state=None, iters: int = 50) -> tuple[float, float]:
    """``(2/λ_max, λ_max)`` at ``state`` (default: the problem's initial state)."""
    state = problem.initial_state() if state is None else state
    lam = float(top_hessian_eigenvalue(problem, state, iters))
    return (2.0 / lam if lam > 0 else float("inf")), lam
