"""The Hessian spectrum of the total loss at a state, on the state's manifold, by Lanczos.

:func:`hessian_spectrum` computes the eigenvalues of the Riemannian Hessian of
``L(state) = L_data(W(state)) + (λ/2) D(state)`` (THEORY 3) on the manifold of the problem's
states (:mod:`._manifold`): for Plain it is ``∇²L``; for LM (and WN, whose flow keeps
``||v_k||``) it is ``S ∇²L S − W`` on the tangent space of the spheres, where ``S`` is the
tangent projection of THEORY 2.4 and ``W`` the Weingarten (curvature) term
``(⟨v_k, ∇_{v_k}L⟩/r_k²) ξ_k``. At a critical point this is the Hessian of ``L`` along any curve
of the manifold, so its inertia says whether the fixed point is a minimum or a saddle of the
constrained problem. WN's zero modes ``v_k ↦ c v_k`` (the loss does not see ``||v_k||``) are not
in the tangent space and so not in the spectrum.

The eigenvalues come from Lanczos on Hessian-vector products (forward-over-reverse; the Hessian
is never formed) with full reorthogonalization; when the Krylov space closes (a repeated
eigenvalue, or a zero block) the iteration restarts from a random vector orthogonal to the
basis, so with ``num_iter = dim`` it returns every eigenvalue with its multiplicity.

Zero modes of known continuous symmetries are named and counted (:func:`symmetry_generators`):
per-neuron (per-channel) rescaling of ReLU networks, ``W_k ↦ diag(c) W_k``,
``W_{k+1} ↦ W_{k+1} diag(c)^{-1}``, one per hidden unit, when ``λ = 0``; ``GL(d_k)`` of each
hidden layer of a linear network when ``λ = 0`` (``d_k²`` modes), and its norm-preserving
subgroup ``O(d_k)`` when ``λ > 0`` (``d_k(d_k − 1)/2`` modes). Their directions are carried to
the state's coordinates by the differential of the parametrization's chart, so (for example)
LM-last, whose state has no layer scales, loses the ``L − 1`` layer-wise rescalings.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree

from .._validate import bad_value
from ..models import MLP, DeepLinear, LocalCNN
from ._manifold import StateManifold

KINDS = ("minimum", "saddle", "degenerate", "uncertified")


@dataclasses.dataclass(frozen=True)
class HessianSpectrum:
    """Eigenvalues of the (Riemannian) Hessian of the total loss at one state.

    Attributes:
        eigenvalues: ascending; every eigenvalue when ``complete``, else the Ritz values.
        dim: the dimension of the manifold (the size of the full spectrum).
        complete: whether ``eigenvalues`` is the full spectrum (Lanczos ran ``dim`` steps, or
            the dense method). The counts below are exact only then.
        zero_tol: an eigenvalue is "zero" when ``|μ| ≤ zero_tol · max|μ|``.
        n_negative, n_zero, n_positive: the counts.
        symmetries: named families of zero modes -> the number of independent directions
            (the rank of the family's generators at this state).
        n_symmetry: the rank of all the families' generators together.
        symmetry_residual: ``max ||H ξ|| / (||H|| ||ξ||)`` over the generators (0 at an exact
            critical point; small means the named modes are indeed zero modes).
        kind: ``"saddle"`` if there is a negative eigenvalue; otherwise ``"degenerate"`` if
            there are more zero eigenvalues than named symmetries explain, else ``"minimum"``
            (a strict minimum modulo the symmetries). A second-order statement, meaningful at
            a critical point.
    """

    eigenvalues: np.ndarray
    dim: int
    complete: bool
    zero_tol: float
    n_negative: int
    n_zero: int
    n_positive: int
    symmetries: dict
    n_symmetry: int
    symmetry_residual: float
    kind: str

    @property
    def min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def max(self) -> float:
        return float(self.eigenvalues[-1])

    def __repr__(self) -> str:
        """The kind, range and counts (:meth:`describe`), never the eigenvalues."""
        return f"HessianSpectrum({self.describe()})"

    def describe(self) -> str:
        named = ", ".join(f"{k}: {v}" for k, v in self.symmetries.items()) or "none"
        return (
            f"{self.kind}: eigenvalues in [{self.min:.6g}, {self.max:.6g}] on a manifold of "
            f"dimension {self.dim}; {self.n_negative} negative, {self.n_zero} zero "
            f"(|μ| ≤ {self.zero_tol:g}·max|μ|), {self.n_positive} positive"
            + ("" if self.complete else " (Ritz values: counts are not exact)")
            + f"; symmetry zero modes {self.n_symmetry} ({named})"
        )


# ---- the operator ---------------------------------------------------------------------------


def _operator(problem, manifold, state):
    """``ξ ↦ S ∇²L S ξ − W(S ξ)`` on flat vectors, and the flat state."""
    flat, unravel = ravel_pytree(state)
    grad = jax.grad(problem.loss)(state)

    def matvec(u):
        xi = manifold.tangent(state, unravel(u))
        hv = jax.jvp(jax.grad(problem.loss), (state,), (xi,))[1]
        out = jax.tree.map(
            jnp.subtract, manifold.tangent(state, hv), manifold.weingarten(state, grad, xi)
        )
        return ravel_pytree(out)[0]

    def project(u):
        return ravel_pytree(manifold.tangent(state, unravel(u)))[0]

    return matvec, project, flat


@eqx.filter_jit
def _lanczos(problem, manifold, state, randoms):
    """Lanczos with full reorthogonalization: the tridiagonal ``(α, β)`` of ``len(randoms) − 1``
    steps. ``randoms`` holds the start vector and the restart vectors (ambient Gaussians)."""
    matvec, project, flat = _operator(problem, manifold, state)
    num_iter, n = randoms.shape[0] - 1, flat.size
    dtype = flat.dtype

    def orthogonalize(q, w):
        # twice is enough; the projection keeps rounding errors off the tangent space, where
        # the basis cannot remove them and a small β would amplify them
        w = project(w - q.T @ (q @ w))
        return project(w - q.T @ (q @ w))

    def random_unit(q, j):
        r = orthogonalize(q, randoms[j])
        return r / jnp.maximum(jnp.linalg.norm(r), jnp.finfo(dtype).tiny)

    q = jnp.zeros((num_iter + 1, n), dtype)
    q = q.at[0].set(random_unit(q, num_iter))

    def body(j, carry):
        q, alpha, beta, scale = carry
        w = matvec(q[j])
        a = jnp.vdot(q[j], w)
        w = orthogonalize(q, w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        closed = b <= 1e-10 * scale  # an invariant subspace: restart orthogonally to it
        nxt = jnp.where(closed, random_unit(q, j), w / jnp.where(closed, 1.0, b))
        beta = beta.at[j].set(jnp.where(closed, 0.0, b))
        return q.at[j + 1].set(nxt), alpha.at[j].set(a), beta, scale

    zeros = jnp.zeros(num_iter, dtype)
    _, alpha, beta, _ = jax.lax.fori_loop(
        0, num_iter, body, (q, zeros, zeros, jnp.zeros((), dtype))
    )
    return alpha, beta


def _lanczos_eigenvalues(problem, manifold, state, num_iter: int, seed: int) -> np.ndarray:
    flat, _ = ravel_pytree(state)
    randoms = np.random.default_rng(seed).standard_normal((num_iter + 1, flat.size))
    alpha, beta = _lanczos(problem, manifold, state, jnp.asarray(randoms, flat.dtype))
    alpha, beta = np.asarray(alpha), np.asarray(beta)
    if num_iter == 1:
        return alpha
    return scipy.linalg.eigh_tridiagonal(alpha, beta[:-1], eigvals_only=True)


@eqx.filter_jit
def _dense(problem, manifold, state):
    matvec, project, flat = _operator(problem, manifold, state)
    eye = jnp.eye(flat.size, dtype=flat.dtype)
    return jax.vmap(project)(eye), jax.vmap(matvec)(eye)


@eqx.filter_jit
def _apply(problem, manifold, state, vectors):
    matvec, _, _ = _operator(problem, manifold, state)
    return jax.vmap(matvec)(vectors)


def tangent_hessian(problem, state):
    """The Riemannian Hessian as a dense ``(d, d)`` matrix in an orthonormal basis of the
    tangent space, and that basis ``(P, d)`` in flat state coordinates (small problems only:
    ``P`` Hessian-vector products)."""
    manifold = StateManifold.of(problem, state)
    dim = manifold.dimension(state)
    proj, hmat = (np.asarray(a) for a in _dense(problem, manifold, state))
    vals, vecs = np.linalg.eigh((proj + proj.T) / 2)
    basis = vecs[:, np.argsort(vals)[::-1][:dim]]  # the projector's eigenvalue-1 vectors
    h = basis.T @ hmat.T @ basis  # hmat's rows are H e_i
    return (h + h.T) / 2, basis


# ---- symmetries ----------------------------------------------------------------------------


def _rescaling(w_in, w_out):
    """Per-unit rescaling of layer ``k`` (rows, or output channels, of ``w_in``) against layer
    ``k+1`` (the matching columns, or input channels, of ``w_out``): one generator per unit,
    stacked on a leading axis. A dense ``w_out`` after a convolution sees each channel as a
    block of ``S`` consecutive columns (the features are flattened channel first)."""
    d = w_in.shape[0]
    eye = jnp.eye(d, dtype=w_in.dtype)
    d_in = eye.reshape((d, d) + (1,) * (w_in.ndim - 1)) * w_in[None]
    if w_out.ndim == 2:
        mask = jnp.repeat(eye, w_out.shape[1] // d, axis=1)  # (d, d·S)
        d_out = -w_out[None] * mask[:, None, :]
    else:
        d_out = -w_out[None] * eye.reshape((d, 1, d) + (1,) * (w_out.ndim - 2))
    return d_in, d_out


def _linear_group(w_in, w_out, orthogonal: bool):
    """``W_k ↦ A W_k``, ``W_{k+1} ↦ −W_{k+1} A`` for ``A`` in a basis of ``gl(d)`` (or of the
    antisymmetric matrices, ``o(d)``)."""
    d = w_in.shape[0]
    if orthogonal:
        a, b = np.triu_indices(d, 1)
        basis = np.zeros((len(a), d, d))
        basis[np.arange(len(a)), a, b], basis[np.arange(len(a)), b, a] = 1.0, -1.0
    else:
        basis = np.eye(d * d).reshape(d * d, d, d)
    basis = jnp.asarray(basis, w_in.dtype)
    return jnp.einsum("gab,bk->gak", basis, w_in), -jnp.einsum("oa,gab->gob", w_out, basis)


def weight_symmetries(model, weights, weight_decay: float) -> dict:
    """Named families of infinitesimal symmetries of the loss in weight space (see the module
    docstring): name -> a tuple (one entry per layer) of stacked generators ``(G, *W_k.shape)``.
    Empty for models it does not know."""
    weights = tuple(weights)
    num = len(weights)
    linear = isinstance(model, DeepLinear) or (
        isinstance(model, MLP) and model.activation == "linear"
    )
    relu = isinstance(model, LocalCNN) or (isinstance(model, MLP) and model.activation == "relu")
    families = {}
    for k in range(num - 1):
        w_in, w_out = weights[k], weights[k + 1]
        if linear:
            orthogonal = weight_decay > 0
            group = f"O({w_in.shape[0]})" if orthogonal else f"GL({w_in.shape[0]})"
            d_in, d_out = _linear_group(w_in, w_out, orthogonal)
            name = f"{group}, hidden layer {k + 1}"
        elif relu and weight_decay == 0:
            d_in, d_out = _rescaling(w_in, w_out)
            name = f"ReLU rescaling, hidden layer {k + 1}"
        else:
            continue
        gens = d_in.shape[0]
        families[name] = tuple(
            d_in if i == k else d_out if i == k + 1 else jnp.zeros((gens, *w.shape), w.dtype)
            for i, w in enumerate(weights)
        )
    return families


@eqx.filter_jit
def _push(problem, state, no_decay: bool):
    """The generators of :func:`weight_symmetries` carried to the state's coordinates by the
    chart's differential: name -> ``(G, P)``; and the chart's round trip ``chart(W(state))``."""
    manifold = StateManifold.of(problem, state)
    chart = manifold.chart(problem, state)
    weights = problem.to_weights(state)
    back = ravel_pytree(chart(weights))[0]
    families = weight_symmetries(problem.model, weights, 0.0 if no_decay else 1.0)

    def push(t):
        return ravel_pytree(jax.jvp(chart, (weights,), (t,))[1])[0]

    return {name: jax.vmap(push)(gens) for name, gens in families.items()}, back


def symmetry_generators(problem, state) -> dict:
    """Named families of zero-mode directions at ``state``, in flat state coordinates:
    name -> array ``(G, P)`` (the tangent vectors of the symmetry orbit through ``state``).

    Empty with frozen directions, for a parametrization or a model it does not know, and when
    no continuous symmetry applies (ReLU networks with ``λ > 0``).
    """
    manifold = StateManifold.of(problem, state)
    if manifold.chart(problem, state) is None or manifold.frozen:
        return {}
    pushed, back = _push(problem, state, float(problem.weight_decay) == 0)
    if not pushed:
        return {}
    flat = np.asarray(ravel_pytree(state)[0])
    if back.shape != flat.shape or not np.allclose(back, flat, rtol=1e-10, atol=1e-12):
        return {}
    return {name: np.asarray(g) for name, g in pushed.items()}


def _rank(a: np.ndarray) -> int:
    if a.size == 0:
        return 0
    s = np.linalg.svd(a, compute_uv=False)
    return int(np.sum(s > 1e-8 * s[0])) if s[0] > 0 else 0


# ---- the spectrum --------------------------------------------------------------------------


def hessian_spectrum(
    problem,
    state=None,
    *,
    method: str = "lanczos",
    num_iter: int | None = None,
    zero_tol: float = 1e-8,
    seed: int = 0,
) -> HessianSpectrum:
    """The spectrum of the Riemannian Hessian of the total loss at ``state`` (module docstring).

    Args:
        problem: a :class:`gradflow.Problem`.
        state: a state of ``problem`` (default: its initial state).
        method: ``"lanczos"`` (matrix-free; ``num_iter`` Hessian-vector products) or
            ``"dense"`` (``P`` products and a dense eigendecomposition: small problems, a
            reference).
        num_iter: Lanczos steps; default ``min(dim, 400)``. With ``num_iter = dim`` the
            spectrum is complete.
        zero_tol: relative threshold of a zero eigenvalue, ``|μ| ≤ zero_tol · max|μ|``.
        seed: the seed of Lanczos' start (and restart) vectors.
    """
    state = problem.initial_state() if state is None else state
    if method not in ("lanczos", "dense"):
        raise bad_value("hessian_spectrum", "method", method, "use 'lanczos' or 'dense'")
    if not (isinstance(zero_tol, (int, float)) and 0 <= zero_tol < 1):
        raise bad_value("hessian_spectrum", "zero_tol", zero_tol, "use a number in [0, 1)")
    manifold = StateManifold.of(problem, state)
    dim = manifold.dimension(state)
    if num_iter is not None and (
        not isinstance(num_iter, int) or isinstance(num_iter, bool) or num_iter < 1
    ):
        raise bad_value("hessian_spectrum", "num_iter", num_iter, "use an integer >= 1")
    if method == "dense":
        eig = np.linalg.eigvalsh(tangent_hessian(problem, state)[0])
        complete = True
    else:
        m = min(dim, 400) if num_iter is None else min(num_iter, dim)
        eig = np.sort(_lanczos_eigenvalues(problem, manifold, state, m, seed))
        complete = m == dim
    top = float(np.max(np.abs(eig))) if eig.size else 0.0
    thr = zero_tol * top
    n_neg, n_zero = int(np.sum(eig < -thr)), int(np.sum(np.abs(eig) <= thr))
    gens = symmetry_generators(problem, state)
    named = {name: _rank(g) for name, g in gens.items()}
    n_sym = _rank(np.concatenate(list(gens.values()))) if gens else 0
    residual = 0.0
    if gens and top > 0:
        allg = np.concatenate(list(gens.values()))
        hv = np.asarray(_apply(problem, manifold, state, jnp.asarray(allg)))
        norms = np.linalg.norm(allg, axis=1)
        ok = norms > 0
        residual = float(np.max(np.linalg.norm(hv[ok], axis=1) / (top * norms[ok]), initial=0))
    if n_neg:
        kind = "saddle"
    elif n_zero > n_sym:
        kind = "degenerate"
    else:
        kind = "minimum"
    return HessianSpectrum(
        eigenvalues=eig,
        dim=dim,
        complete=complete,
        zero_tol=float(zero_tol),
        n_negative=n_neg,
        n_zero=n_zero,
        n_positive=int(eig.size) - n_neg - n_zero,
        symmetries=named,
        n_symmetry=n_sym,
        symmetry_residual=residual,
        kind=kind,
    )
