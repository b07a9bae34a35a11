"""The four parametrizations of THEORY 3 as objects: their states, weights, decay and velocity.

A *state* is the pytree that every dynamics (ODE, SDE, SGD) evolves:

====================  =====  ==========================================  =====================
class                 name   state                                       weights ``W_k``
====================  =====  ==========================================  =====================
:class:`Plain`        none   ``{"w": (W_1, ..., W_L)}``                  ``W_k``
:class:`LMAll`        lm-all ``{"rho": (L,), "v": (V_1, ..., V_L)}``     ``ρ_k V_k``
:class:`LMLast`       lm-last ``{"rho": (), "v": (V_1, ..., V_L)}``      ``V_k`` (k < L), ``ρ V_L``
:class:`WeightNorm`   wn     ``{"g": (L,), "v": (v_1, ..., v_L)}``       ``g_k v_k / ||v_k||``
====================  =====  ==========================================  =====================

Each dynamics descends the total loss ``L(state) = L_data(W(state)) + (λ/2) D(state)`` where
``D`` is ``Σ||W_k||²`` (Plain), ``Σρ_k²`` (LMAll), ``ρ²`` (LMLast) or ``Σg_k²`` (WeightNorm).
The velocity is ``−∇L`` with, for the LM variants, the direction gradients projected on the
tangent space of the unit sphere, ``S_k G = G − ⟨V_k, G⟩ V_k`` (THEORY 2.4), and (LMLast) the
last direction's divided by ``ρ²``. With ``||V_k|| = 1`` this reproduces THEORY 3.1–3.3 exactly:

* LMAll:  ``dρ_k/dt = (ρ/ρ_k) s − λρ_k``,  ``dV_k/dt = ρ S_k A_k``;
* LMLast: ``dρ/dt = s − λρ``,  ``dV_k/dt = ρ S_k A_k`` (k<L),  ``dV_L/dt = (1/ρ) S_L A_L``;
* WeightNorm: plain gradient flow on ``(g, v)``.

The strings ``"none"``, ``"lm-all"``, ``"lm-last"`` and ``"wn"`` are shorthands, resolved once by
:func:`resolve_parametrization`; nothing else in gradflow compares them.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._validate import bad_value
from .predict._rho import rho_eq


def _fro(a):
    return jnp.sqrt(jnp.sum(a**2))


def layer_norms(weights):
    """``ρ_k = ||W_k||_F`` for every layer."""
    return jnp.stack([_fro(w) for w in weights])


def direction_norms(state):
    """``||v_k||`` for every layer (WN: constant along the flow, THEORY 3.3)."""
    return jnp.stack([_fro(v) for v in state["v"]])


def _tangent(v, g):
    """``S g = g − ⟨v̂, g⟩ v̂`` with ``v̂ = v / ||v||``."""
    vh = v / _fro(v)
    return g - jnp.sum(vh * g) * vh


class AbstractParametrization(eqx.Module):
    """How the weights ``W_k`` are written as a state, and the flow that state follows.

    Subclasses are final; they hold no arrays (only static options), so a parametrization is
    part of a jitted function's structure, not of its traced values.
    """

    #: The shorthand accepted wherever a parametrization is (API and scenarios).
    name: ClassVar[str]
    #: The observables this parametrization adds to the standard ones (see ``gf.flow``).
    observables: ClassVar[tuple[str, ...]] = ()

    @property
    def freezes_directions(self) -> bool:
        return False

    @abc.abstractmethod
    def to_state(self, weights) -> dict:
        """Map weights ``W`` to the state (the network function is kept)."""

    @abc.abstractmethod
    def to_weights(self, state) -> tuple:
        """The layer weights ``W_k`` of a state (see the module table)."""

    @abc.abstractmethod
    def decay(self, state):
        """``D(state)``: the sum of squares that weight decay penalizes as ``(λ/2) D``."""

    def velocity(self, state, grad):
        """The flow's velocity from the gradient ``grad = ∇L(state)`` (same pytree).

        Also used for the SDE's noise (a gradient-shaped vector) and for SGD steps.
        """
        return jax.tree.map(jnp.negative, grad)

    def project(self, state):
        """Put the state back on its constraint set (identity unless a subclass has one)."""
        return state

    def extra_observables(self, state, normalized_outputs, targets, weight_decay) -> dict:
        """The entries of :attr:`observables` at ``state`` (``f(V; x_n)`` given)."""
        return {}

    def describe(self) -> str:
        return self.name


class Plain(AbstractParametrization):
    """``normalization="none"``: gradient flow on the weights themselves (THEORY 3.1)."""

    name: ClassVar[str] = "none"

    def to_state(self, weights) -> dict:
        return {"w": tuple(weights)}

    def to_weights(self, state) -> tuple:
        return tuple(state["w"])

    def decay(self, state):
        return sum(jnp.sum(w**2) for w in state["w"])


class _LM(AbstractParametrization):
    """The Lagrange-multiplier normalizations (THEORY 3.2): unit-norm directions ``V_k``."""

    freeze_directions: bool = eqx.field(default=False, static=True)

    @property
    def freezes_directions(self) -> bool:
        return self.freeze_directions

    def decay(self, state):
        return jnp.sum(state["rho"] ** 2)

    def velocity(self, state, grad):
        vel_v = tuple(-_tangent(v, g) for v, g in zip(state["v"], grad["v"]))
        vel_v = self._scale_directions(state, vel_v)
        if self.freeze_directions:
            vel_v = tuple(jnp.zeros_like(v) for v in vel_v)
        return {"rho": -grad["rho"], "v": vel_v}

    def _scale_directions(self, state, vel_v):
        return vel_v

    def project(self, state):
        return {"rho": state["rho"], "v": tuple(v / _fro(v) for v in state["v"])}

    def extra_observables(self, state, normalized_outputs, targets, weight_decay) -> dict:
        err = jnp.max(jnp.stack([jnp.abs(_fro(v) - 1.0) for v in state["v"]]))
        return {"unit_norm_error": err}

    def describe(self) -> str:
        return self.name + (" (directions frozen)" if self.freeze_directions else "")


class LMAll(_LM):
    """``normalization="lm-all"``: every layer ``W_k = ρ_k V_k`` with decay ``(λ/2)ρ_k²``.

    Args:
        freeze_directions: hold every ``V_k`` fixed, so that the ``ρ_k`` follow the balanced
            reduced ODE of THEORY 4.2.
    """

    name: ClassVar[str] = "lm-all"
    observables: ClassVar[tuple[str, ...]] = ("unit_norm_error",)

    def to_state(self, weights) -> dict:
        weights = tuple(weights)
        norms = layer_norms(weights)
        return {"rho": norms, "v": tuple(w / n for w, n in zip(weights, norms))}

    def to_weights(self, state) -> tuple:
        v = state["v"]
        return tuple(state["rho"][k] * v[k] for k in range(len(v)))


class LMLast(_LM):
    """``normalization="lm-last"`` (the paper's setting): unit directions ``V_1..V_{L−1}``,
    last layer ``ρ V_L`` with decay ``(λ/2)ρ²``.

    Args:
        freeze_directions: hold every ``V_k`` fixed, so that ρ relaxes to ``ρ_eq`` in closed
            form (THEORY 4.1).
    """

    name: ClassVar[str] = "lm-last"
    observables: ClassVar[tuple[str, ...]] = ("unit_norm_error", "rho_eq")

    def to_state(self, weights) -> dict:
        weights = tuple(weights)
        norms = layer_norms(weights)
        return {"rho": jnp.prod(norms), "v": tuple(w / n for w, n in zip(weights, norms))}

    def to_weights(self, state) -> tuple:
        v = state["v"]
        return tuple(v[:-1]) + (state["rho"] * v[-1],)

    def _scale_directions(self, state, vel_v):
        return vel_v[:-1] + (vel_v[-1] / state["rho"] ** 2,)

    def extra_observables(self, state, normalized_outputs, targets, weight_decay) -> dict:
        out = super().extra_observables(state, normalized_outputs, targets, weight_decay)
        out["rho_eq"] = rho_eq(normalized_outputs, targets, weight_decay)
        return out


class WeightNorm(AbstractParametrization):
    """``normalization="wn"``: ``W_k = g_k v_k/||v_k||``, decay on the scales ``g_k`` only
    (THEORY 3.3); ``||v_k||`` is recorded as ``v_norm``."""

    name: ClassVar[str] = "wn"
    observables: ClassVar[tuple[str, ...]] = ("v_norm",)

    def to_state(self, weights) -> dict:
        weights = tuple(weights)
        norms = layer_norms(weights)
        return {"g": norms, "v": tuple(w / n for w, n in zip(weights, norms))}

    def to_weights(self, state) -> tuple:
        v = state["v"]
        return tuple(state["g"][k] * v[k] / _fro(v[k]) for k in range(len(v)))

    def decay(self, state):
        return jnp.sum(state["g"] ** 2)

    def extra_observables(self, state, normalized_outputs, targets, weight_decay) -> dict:
        return {"v_norm": direction_norms(state)}


#: shorthand -> class, in the order the docs list them.
PARAMETRIZATIONS: dict[str, type[AbstractParametrization]] = {
    cls.name: cls for cls in (Plain, LMAll, LMLast, WeightNorm)
}
NORMALIZATIONS = tuple(PARAMETRIZATIONS)
#: The shorthands whose parametrization can freeze its directions.
FREEZABLE = tuple(n for n, cls in PARAMETRIZATIONS.items() if issubclass(cls, _LM))


def resolve_parametrization(
    normalization, freeze_directions: bool = False, where: str = "Problem"
) -> AbstractParametrization:
    """An :class:`AbstractParametrization` from a shorthand or an instance.

    ``freeze_directions=True`` applies to the LM parametrizations only (``"lm-all"``,
    ``"lm-last"``); for an instance it must agree with the instance's own option.
    """
    if not isinstance(freeze_directions, bool):
        raise bad_value(where, "freeze_directions", freeze_directions, "use True or False")
    if isinstance(normalization, AbstractParametrization):
        if freeze_directions and not normalization.freezes_directions:
            if not isinstance(normalization, _LM):
                raise _freeze_error(where, normalization.name)
            return type(normalization)(freeze_directions=True)
        return normalization
    if not isinstance(normalization, str) or normalization not in PARAMETRIZATIONS:
        raise bad_value(
            where,
            "normalization",
            normalization,
            "use one of "
            + ", ".join(map(repr, NORMALIZATIONS))
            + " or a gf.Plain/LMAll/LMLast/WeightNorm instance",
        )
    cls = PARAMETRIZATIONS[normalization]
    if freeze_directions:
        if normalization not in FREEZABLE:
            raise _freeze_error(where, normalization)
        return cls(freeze_directions=True)
    return cls()


def _freeze_error(where: str, name: str) -> ValueError:
    return bad_value(
        where,
        "freeze_directions",
        True,
        f"it applies to normalization {' or '.join(map(repr, FREEZABLE))} only, not {name!r}",
    )
