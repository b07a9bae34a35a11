"""The noise of SGD as a matrix-free Diffrax diffusion (THEORY 3.4).

A mini-batch gradient has covariance ``Σ = c(B) (1/N) Σ_n (g_n − ḡ)(g_n − ḡ)ᵀ`` with
``g_n = ∇ℓ_n`` and ``c = 1/B`` (with replacement) or ``(N − B)/(B (N − 1))`` (without). The
SDE of SGD is, in the state's coordinates,

    d state = v(state) dt + G(state) dβ,        β = (β_1, …, β_N) standard Brownian motions,

with ``v`` the flow's velocity (``−∇L`` projected/scaled by the normalization) and

    G ξ = P_state( −sqrt(η c / N) ∇_state Σ_n (ξ_n − ξ̄) ℓ_n ),

``P_state`` the *same* linear map that turns a gradient into the velocity
(``Problem.velocity_from_grad`` without its sign flip: the tangent projection of the LM
directions, lm-last's ``1/ρ²`` on the last direction). For ``normalization="none"``,
``G Gᵀ = η Σ`` exactly; in general ``G Gᵀ = η P Σ Pᵀ``. ``G ξ`` is ONE vector-Jacobian product
of the per-sample losses (:func:`gradflow._loss.sample_losses`, through ``Problem.data_loss``
with sample weights): no ``P × P`` covariance, no ``N × P`` matrix of per-sample gradients.
Through ``Problem.data_loss`` it runs in chunks of ``problem.chunk_size`` samples, so its peak
memory is ``O(chunk_size · activations + P)``; the weights are cast to ``problem.precision``.
The sign makes the noise of the ``none`` SDE ``−η (g_S − ḡ)`` per unit ``dt = η``, as in SGD.

Pieces:

* :class:`SGDNoise`: ``(lr, batch_size, sampling)`` and the coefficient ``c``.
* :func:`diffusion` / :func:`noise_operator`: ``G ξ`` as a function / a Lineax operator, the
  vector field of a ``diffrax.ControlTerm`` (:func:`diffusion_term`).
* :class:`SGDTerm`: drift and diffusion in one term with control ``(dt, dβ)``. Its ``vf`` and
  ``prod`` are those of ``MultiTerm(ODETerm(v), ControlTerm(G, β))``; its ``vf_prod`` fuses
  them into one gradient of ``Σ_n u_n ℓ_n + (λ dt / 2) D``, ``u_n = dt/N + sqrt(ηc/N)(dβ_n − dβ̄)``,
  so an Euler–Maruyama step costs one gradient, like an Euler step of the ODE.
* :class:`StepBrownianPath`: the increments of a fixed-step run, keyed by step index.
"""

# ruff: noqa: F722 (jaxtyping shape strings)

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validate import bad_value, check_choice

SAMPLING = ("without-replacement", "with-replacement")


def noise_coefficient(n: int, batch_size: int, sampling: str) -> float:
    """``c(B)`` of THEORY 3.4: ``1/B`` with replacement, ``(N − B)/(B (N − 1))`` without."""
    if sampling == "with-replacement":
        return 1.0 / batch_size
    return 0.0 if n == 1 else (n - batch_size) / (batch_size * (n - 1))


class SGDNoise(eqx.Module):
    """The noise of SGD with learning rate ``lr = η`` and batch size ``B`` (THEORY 3.4).

    Pass it to ``gf.flow(problem, ..., noise=gf.SGDNoise(lr, batch_size), key=key)`` to
    integrate the SDE ``d state = v dt + G dβ`` (``G Gᵀ = η Σ``) instead of the ODE.

    Args:
        lr: ``η > 0``. It scales the noise (``sqrt(η)``) and sets the default step (``η/4``);
            the time axis is the flow's, ``t = η · step``, as for ``gf.sgd``.
        batch_size: ``B ≥ 1`` (at most ``N``, checked against the problem).
        sampling: ``"without-replacement"``, ``c = (N − B)/(B (N − 1))`` (zero at ``B = N``), or
            ``"with-replacement"``, ``c = 1/B``. The SDE has independent increments: it models
            SGD whose batches are drawn independently at each step. ``gf.sgd``'s
            ``"without-replacement"`` reshuffles once per epoch, so its batches within an
            epoch are *negatively* correlated (their gradients sum to the full gradient): it
            has the SDE's one-step covariance, but less noise than the SDE on time scales
            longer than an epoch ``η N / B``. ``"with-replacement"`` matches exactly.
    """

    lr: float
    batch_size: int
    sampling: str = "without-replacement"

    def __check_init__(self):
        lr, b = self.lr, self.batch_size
        if (
            isinstance(lr, bool)
            or not isinstance(lr, (int, float, np.integer, np.floating))
            or (not (math.isfinite(lr) and lr > 0))
        ):
            raise bad_value("SGDNoise", "lr", lr, "use a finite number > 0")
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise bad_value("SGDNoise", "batch_size", b, "use an integer >= 1")
        check_choice("SGDNoise", "sampling", self.sampling, SAMPLING)

    def coefficient(self, n: int) -> float:
        """``c`` for a dataset of ``n`` samples (raises if ``B > n``)."""
        if self.batch_size > n:
            raise bad_value(
                "SGDNoise", "batch_size", self.batch_size, f"use at most N={n} (the data's size)"
            )
        return noise_coefficient(n, int(self.batch_size), self.sampling)

    def scale(self, n: int) -> float:
        """``sqrt(η c / N)``: the weight of ``(ξ_n − ξ̄)`` in ``G ξ``."""
        return math.sqrt(float(self.lr) * self.coefficient(n) / n)

    def describe(self) -> dict:
        return {"lr": float(self.lr), "batch_size": int(self.batch_size), "sampling": self.sampling}


def diffusion(problem, state, xi: Float[Array, " N"], scale: Float[Array, ""]):
    """``G ξ``: one VJP, ``P(−∇ Σ_n scale (ξ_n − ξ̄) ℓ_n)`` (a state-shaped pytree)."""
    u = scale * (xi - jnp.mean(xi))
    grad = jax.grad(problem.data_loss)(state, None, None, u)
    return problem.velocity_from_grad(state, grad)


def noise_operator(problem, state, scale) -> lx.FunctionLinearOperator:
    """``G(state)`` as a Lineax operator from ``R^N`` to the state's pytree."""
    shape = jax.ShapeDtypeStruct((problem.n_train,), jnp.result_type(float))
    return lx.FunctionLinearOperator(lambda xi: diffusion(problem, state, xi, scale), shape)


class _NoiseField(eqx.Module):
    scale: Array

    def __call__(self, t, y, args):
        return noise_operator(args, y, self.scale)


def diffusion_term(scale, brownian: diffrax.AbstractBrownianPath) -> diffrax.ControlTerm:
    """``ControlTerm(G, β)``: the diffusion alone (``args`` must be the ``Problem``)."""
    return diffrax.ControlTerm(_NoiseField(jnp.asarray(scale)), brownian)


class SGDTerm(diffrax.AbstractTerm):
    """Drift and diffusion of the SDE of SGD, control ``(dt, dβ)``; ``args`` is the Problem.

    ``vf``/``prod`` are those of ``MultiTerm(ODETerm(v), diffusion_term(scale, β))``;
    ``vf_prod`` computes the same sum with one gradient (see the module docstring).
    """

    scale: Float[Array, ""]
    brownian: diffrax.AbstractBrownianPath

    def vf(self, t, y, args):
        return args.velocity(y), noise_operator(args, y, self.scale)

    def contr(self, t0, t1, **kwargs):
        return t1 - t0, self.brownian.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control):
        (drift, op), (dt, dw) = vf, control
        return jax.tree.map(lambda a, b: a * dt + b, drift, op.mv(dw))

    def vf_prod(self, t, y, args, control):
        dt, dw = control
        u = dt / dw.shape[0] + self.scale * (dw - jnp.mean(dw))
        grad = jax.grad(args.loss)(y, None, None, u, args.weight_decay * dt)
        return args.velocity_from_grad(y, grad)


class StepBrownianPath(diffrax.AbstractBrownianPath):
    """Brownian increments for a fixed-step run: ``N(0, (t1 − t0) I)`` keyed by step index.

    The increment over ``[t0, t1]`` uses ``fold_in(key, round((t0 − origin)/dt))``, so every
    step of a run has its own key (as ``gf.sgd``'s ``fold_in(key, step)``), whatever the time
    (Diffrax's ``UnsafeBrownianPath`` keys on the times cast to float32, which can collide
    once the float32 spacing of ``t`` exceeds the step). Only increments between the steps of
    the grid ``origin + k dt`` are valid: use it with ``ConstantStepSize`` only.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    key: PRNGKeyArray
    origin: Float[Array, ""]
    dt: Float[Array, ""]
    levy_area: type = eqx.field(static=True, default=diffrax.BrownianIncrement)

    @property
    def t0(self):
        return -jnp.inf

    @property
    def t1(self):
        return jnp.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        del left
        if t1 is None:
            raise ValueError("StepBrownianPath: only increments evaluate(t0, t1) are defined")
        step = jnp.round((t0 - self.origin) / self.dt).astype(jnp.int32)
        dtype = jnp.result_type(float)
        h = jnp.asarray(t1 - t0, dtype)
        w = jr.normal(jr.fold_in(self.key, step), self.shape, dtype) * jnp.sqrt(h)
        return diffrax.BrownianIncrement(dt=h, W=w) if use_levy else w
