"""The constraint set of a problem's states, for the fixed-point solver and the spectrum.

The state of each parametrization (THEORY 3) lives on a manifold ``M``:

* Plain: all of ``R^P`` (no constraint);
* LM-all, LM-last: ``||V_k||_F = 1`` for every direction (THEORY 3.2), a product of unit spheres
  times the scales; with ``freeze_directions`` the directions are fixed and only the scales move;
* WN: the flow keeps every ``||v_k||`` constant (THEORY 3.3), and the loss does not depend on
  it (one zero mode of the Hessian per layer), so the fixed points of a WN flow started at a
  state lie on the product of the spheres of radii ``r_k = ||v_k||`` of that state.

:class:`StateManifold` gives the tangent projection ``S_k G = G − ⟨v̂_k, G⟩ v̂_k`` (THEORY 2.4)
on the direction components, the retraction ``v_k ↦ r_k v_k / ||v_k||`` (for LM it is
``problem.project``), and the Weingarten term that turns the ambient Hessian restricted to the
tangent space into the Riemannian Hessian (:func:`gradflow.analysis.hessian_spectrum`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._parametrization import LMAll, LMLast, Plain, WeightNorm, direction_norms


def _fro(a):
    return jnp.sqrt(jnp.sum(a**2))


class StateManifold(eqx.Module):
    """The constraint set through one state of one problem (see the module docstring)."""

    #: "euclidean" (Plain, or a parametrization without known constraints) or "spheres".
    kind: str = eqx.field(static=True)
    #: LM with frozen directions: only the scales are free.
    frozen: bool = eqx.field(static=True)
    #: the radii ``r_k`` of the direction spheres (1 for LM; ``||v_k||`` for WN), or None.
    radii: jax.Array | None

    @classmethod
    def of(cls, problem, state) -> StateManifold:
        p = problem.parametrization
        if isinstance(p, (LMAll, LMLast)):
            radii = jnp.ones(len(state["v"]), dtype=jnp.result_type(float))
            return cls("spheres", p.freezes_directions, radii)
        if isinstance(p, WeightNorm):
            return cls("spheres", False, direction_norms(state))
        return cls("euclidean", False, None)

    # ---- geometry -------------------------------------------------------------------------
    def retract(self, state):
        """The nearest point of the manifold: ``v_k ↦ r_k v_k / ||v_k||`` (identity if flat)."""
        if self.kind == "euclidean":
            return state
        v = tuple(r * vk / _fro(vk) for r, vk in zip(self.radii, state["v"]))
        return {**state, "v": v}

    def tangent(self, state, vec):
        """Project an ambient vector (a state-shaped pytree) onto the tangent space at ``state``."""
        if self.kind == "euclidean":
            return vec
        if self.frozen:
            return {**vec, "v": tuple(jnp.zeros_like(g) for g in vec["v"])}
        out = []
        for v, g in zip(state["v"], vec["v"]):
            vh = v / _fro(v)
            out.append(g - jnp.sum(vh * g) * vh)
        return {**vec, "v": tuple(out)}

    def normal(self, state, vec):
        """``vec − tangent(vec)``."""
        return jax.tree.map(jnp.subtract, vec, self.tangent(state, vec))

    def weingarten(self, state, grad, vec):
        """``W(vec)``: the curvature term of the Riemannian Hessian, ``(⟨v_k, ∇_{v_k}L⟩/r_k²) ξ_k``
        on the direction components (zero elsewhere and on flat manifolds).

        The Riemannian Hessian of ``L`` restricted to the spheres is
        ``Hess L[ξ] = S(∇²L ξ) − W(ξ)`` for tangent ``ξ``.
        """
        zero = jax.tree.map(jnp.zeros_like, vec)
        if self.kind == "euclidean" or self.frozen:
            return zero
        v_part = tuple(
            jnp.sum(v * g) / _fro(v) ** 2 * xi for v, g, xi in zip(state["v"], grad["v"], vec["v"])
        )
        return {**zero, "v": v_part}

    def dimension(self, state) -> int:
        """The dimension of the manifold (of its tangent space)."""
        flat, _ = ravel_pytree(state)
        if self.kind == "euclidean":
            return int(flat.size)
        if self.frozen:
            return int(flat.size) - sum(int(v.size) for v in state["v"])
        return int(flat.size) - len(state["v"])

    def chart(self, problem, state):
        """``W ↦ state``: the map from layer weights to this manifold that keeps the network and
        the signs of the state's scales, so that ``chart(problem.to_weights(state)) = state``.

        Its differential carries a tangent vector of weight space (a symmetry of the network)
        to the state's tangent space. ``None`` for a parametrization it does not know.
        """
        p = problem.parametrization
        if isinstance(p, Plain):
            return lambda w: {"w": tuple(w)}
        if isinstance(p, LMAll):
            signs = jnp.sign(state["rho"])
            return lambda w: {
                "rho": signs * jnp.stack([_fro(x) for x in w]),
                "v": tuple(s * x / _fro(x) for s, x in zip(signs, w)),
            }
        if isinstance(p, LMLast):
            sign = jnp.sign(state["rho"])

            def chart(w):
                v = tuple(x / _fro(x) for x in w)
                rho = sign * jnp.prod(jnp.stack([_fro(x) for x in w]))
                return {"rho": rho, "v": v[:-1] + (sign * v[-1],)}

            return chart
        if isinstance(p, WeightNorm):
            signs, radii = jnp.sign(state["g"]), self.radii
            return lambda w: {
                "g": signs * jnp.stack([_fro(x) for x in w]),
                "v": tuple(s * r * x / _fro(x) for s, r, x in zip(signs, radii, w)),
            }
        return None
