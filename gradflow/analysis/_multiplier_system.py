"""The multiplier system of a Filippov equilibrium, and its pieces (THEORY 3.6).

With ``S`` the pre-activations held at zero (flat indices ``idx``, ``valid`` marking the used
slots of a fixed capacity), ``C`` the Jacobian of ``z_S``, ``G_0`` the gradient of the total loss
with the slopes ``pattern`` (``1[z > 0]`` off ``S``, 0 on it) and ``T`` the tangent projection of
the state's manifold (:mod:`._manifold`; one multiplier ``ν_k`` per sphere
``||v_k||² = r_k²``), the square system in ``u = (x, μ, ν)`` is

    T (G_0 + Cᵀμ) = 0,     z_S = 0,     (||v_k||² − r_k²)/2 = 0,

with ``x = 0`` on the dying weights (``free`` false). ``aux = (free, idx, valid, pattern)``
(:func:`system_aux`) carries the active set into the jitted functions, which compile once per
capacity (the next power of two of ``|S|``), not once per change of ``S``.

Here: the residual :func:`residual`, its dense :func:`jacobian` and matrix-free Newton step
(:func:`krylov_step`, LSMR on Jacobian-vector products), the relative residual
(:func:`measure`, :func:`relative_residual`), the best multipliers at fixed ``x``
(:func:`multipliers`), the back-propagated signals ``g = ∂L/∂h`` (:func:`signals`) and the
slopes ``α = μ/g`` (:func:`slopes`).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.linalg
import scipy.optimize
from jax.flatten_util import ravel_pytree

from .._loss import square_error
from ._switching import forward


def unravel(template):
    return ravel_pytree(template)[1]


def _gather(zflat, idx):
    return jnp.take(zflat, idx, mode="fill", fill_value=0.0)


def _parts(problem, template, flat_x, slopes):
    """Loss pieces with the given slopes: ``(fit, signal, decay, z)``; ``fit + signal`` is the
    mean of :func:`gradflow._loss.square_error` less the constant ``mean_n ||y_n||²`` (kept
    apart: the residual is scaled by the size of each cancelling term)."""
    state = unravel(template)(flat_x)
    weights = problem.network_weights(state)
    out, z = forward(problem.model, weights, problem.x_train, slopes, None, problem.chunk_size)
    y = problem.y_train
    fit = jnp.mean(jnp.sum(out**2, axis=1))
    signal = -2.0 * jnp.mean(jnp.sum(out * y, axis=1))
    return fit, signal, problem.decay_term(state), z


def _spheres(manifold, template, flat_x):
    """``(||v_k||² − r_k²)/2`` for every direction (empty for Plain)."""
    if manifold.kind == "euclidean":
        return jnp.zeros((0,), flat_x.dtype)
    state = unravel(template)(flat_x)
    return jnp.stack([(jnp.sum(v**2) - r**2) / 2 for v, r in zip(state["v"], manifold.radii)])


def _lagrangian(problem, manifold, template, flat_x, mu, nu, idx, valid, slopes):
    fit, signal, decay, z = _parts(problem, template, flat_x, slopes)
    z_s = jnp.where(valid, _gather(jnp.ravel(z), idx), 0.0)
    cons = _spheres(manifold, template, flat_x)
    return fit + signal + decay + mu @ z_s + nu @ cons, (z_s, cons)


def _residual_vector(problem, manifold, template, u, aux):
    """``R(u)``: the square system of the module docstring, ``u = (x, μ, ν)``."""
    free, idx, valid, slopes = aux
    p, m = free.size, idx.size
    x, mu, nu = u[:p], u[p : p + m], u[p + m :]
    grad, (z_s, cons) = jax.grad(_lagrangian, argnums=3, has_aux=True)(
        problem, manifold, template, x, mu, nu, idx, valid, slopes
    )
    return jnp.concatenate([jnp.where(free, grad, x), jnp.where(valid, z_s, mu), cons])


@eqx.filter_jit
def residual(problem, manifold, template, u, aux):
    return _residual_vector(problem, manifold, template, u, aux)


@eqx.filter_jit
def jacobian(problem, manifold, template, u, aux):
    return jax.jacfwd(lambda v: _residual_vector(problem, manifold, template, v, aux))(u)


@eqx.filter_jit
def krylov_step(problem, manifold, template, u, aux, rtol):
    """The minimum-norm ``δ`` of ``J δ = −R`` by LSMR on Jacobian-vector products."""
    r = _residual_vector(problem, manifold, template, u, aux)

    def matvec(v):
        return jax.jvp(lambda w: _residual_vector(problem, manifold, template, w, aux), (u,), (v,))[
            1
        ]

    op = lx.FunctionLinearOperator(matvec, jax.ShapeDtypeStruct(u.shape, u.dtype))
    solver = lx.LSMR(rtol=rtol, atol=0.0, max_steps=20 * u.size, conlim=1e14)
    return lx.linear_solve(op, -r, solver, throw=False).value


@eqx.filter_jit
def measure(problem, manifold, template, flat_x, mu, aux, zscale):
    """``(stationarity, scale, constraint)``: ``||T(G_0 + Cᵀμ)||`` on the free coordinates, the
    sum of the norms of the cancelling terms (fit, signal, decay, ``Cᵀμ``; each projected), and
    ``max_i |z_i| / zscale_i`` over ``S``."""
    free, idx, valid, slopes = aux
    state_of = unravel(template)
    state = state_of(flat_x)

    def proj(g):
        t = manifold.tangent(state, state_of(g))
        return jnp.where(free, ravel_pytree(t)[0], 0.0)

    def piece(i):
        def f(x):
            fit, signal, decay, z = _parts(problem, template, x, slopes)
            cons = mu @ jnp.where(valid, _gather(jnp.ravel(z), idx), 0.0)
            return (fit, signal, decay, cons)[i]

        return proj(jax.grad(f)(flat_x))

    pieces = [piece(i) for i in range(4)]
    total = sum(pieces)
    _, _, _, z = _parts(problem, template, flat_x, slopes)
    z_s = jnp.abs(_gather(jnp.ravel(z), idx)) / _gather(jnp.ravel(zscale), idx)
    cons = jnp.max(jnp.where(valid, z_s, 0.0), initial=0.0)
    return jnp.linalg.norm(total), sum(jnp.linalg.norm(q) for q in pieces), cons


@eqx.filter_jit
def pre_activations(problem, template, flat_x, slopes):
    return _parts(problem, template, flat_x, slopes)[3]


@eqx.filter_jit
def signals(problem, template, flat_x, slopes):
    """``g = ∂L/∂h`` at every entry ``(N, Z)`` (the back-propagated signal)."""
    state = unravel(template)(flat_x)
    weights = problem.network_weights(state)
    zero = jnp.zeros_like(slopes)

    def loss(extra):
        out, _ = forward(problem.model, weights, problem.x_train, slopes, extra, problem.chunk_size)
        return jnp.mean(square_error(out, problem.y_train))  # the one per-sample loss

    return jax.grad(loss)(zero)


@eqx.filter_jit
def lagrangian_signals(problem, template, flat_x, mu, aux):
    """``∂(L + μ·z_S)/∂h`` at every entry ``(N, Z)``: the back-propagated signal of the
    Lagrangian, which counts the paths through the later entries of ``S`` that ``μ`` weighs.
    An entry that joins ``S`` with slope ``a`` keeps the field unchanged with ``μ = a`` times
    this (:func:`signals` alone misses those paths when a sample has ``S`` in a later layer)."""
    _, idx, valid, slopes = aux
    state = unravel(template)(flat_x)
    weights = problem.network_weights(state)

    def lagrangian(extra):
        out, z = forward(problem.model, weights, problem.x_train, slopes, extra, problem.chunk_size)
        z_s = jnp.where(valid, _gather(jnp.ravel(z), idx), 0.0)
        return jnp.mean(square_error(out, problem.y_train)) + mu @ z_s

    return jax.grad(lagrangian)(jnp.zeros_like(slopes))


def with_alpha(slopes, idx, valid, alpha):
    flat = jnp.ravel(slopes)
    target = jnp.where(valid, idx, flat.size)
    return jnp.reshape(flat.at[target].set(alpha, mode="drop"), slopes.shape)


@eqx.filter_jit
def filippov_gradient(problem, manifold, template, flat_x, slopes, free):
    """``T G(W, α)`` on the free coordinates, for slopes that already hold ``α`` on ``S``."""
    state_of = unravel(template)

    def loss(x):
        fit, signal, decay, _ = _parts(problem, template, x, slopes)
        return fit + signal + decay

    g = jax.grad(loss)(flat_x)
    t = manifold.tangent(state_of(flat_x), state_of(g))
    return jnp.where(free, ravel_pytree(t)[0], 0.0)


@eqx.filter_jit
def _alpha_jacobian(problem, manifold, template, flat_x, slopes, idx, valid, alpha, free):
    def g(a):
        return filippov_gradient(
            problem, manifold, template, flat_x, with_alpha(slopes, idx, valid, a), free
        )

    return g(alpha), jax.jacfwd(g)(alpha)


def slopes(problem, manifold, template, flat_x, aux, mu, iterations: int = 3):
    """``α`` on ``S`` from the multipliers: ``μ/g`` clipped to ``[0, 1]``, then refined by
    Gauss–Newton on ``||T G(W, α)||`` (``G`` is multi-affine in ``α``: affine when no sample has
    entries of ``S`` in two layers). The Gauss–Newton steps are minimum-norm: along the
    directions of ``α`` that do not move ``T G`` (entries with no back-propagated signal, more
    entries than the gradient has independent directions) ``α`` keeps its in-range start, so an
    ``α`` outside ``[0, 1]`` is one the equations force (an unclipped start put ``α`` of order
    ±1e3 on entries whose ``g`` is nearly 0, measured on plain + decay margins nets)."""
    free, idx, valid, base = aux
    g = np.asarray(signals(problem, template, flat_x, base)).ravel()
    gi = np.where(np.asarray(valid), g[np.minimum(np.asarray(idx), g.size - 1)], 1.0)
    ok = np.asarray(valid) & (np.abs(gi) > 1e-12 * np.max(np.abs(gi), initial=0.0))
    alpha = np.where(ok, np.clip(np.asarray(mu) / np.where(ok, gi, 1.0), 0.0, 1.0), 0.5)
    alpha = jnp.asarray(alpha, flat_x.dtype)
    for _ in range(iterations):
        r, jac = (
            np.asarray(a)
            for a in _alpha_jacobian(
                problem, manifold, template, flat_x, base, idx, valid, alpha, free
            )
        )
        jac = jac[:, np.asarray(valid)]
        if jac.size == 0:
            break
        step = scipy.linalg.lstsq(jac, -r, lapack_driver="gelsy")[0]
        full = np.zeros(alpha.shape)
        full[np.asarray(valid)] = step
        alpha = alpha + jnp.asarray(full, alpha.dtype)
    return np.asarray(alpha), gi


def bounded_slopes(problem, manifold, template, flat_x, aux, alpha, iterations: int = 4):
    """``α ∈ [0, 1]`` on ``S`` minimizing ``||T G(W, α)||``, from ``alpha`` clipped: bounded
    least squares (SciPy's BVLS) on ``G``'s linearization in ``α``, repeated ``iterations`` times
    (once is exact where ``G`` is affine in ``α``). Returns ``(α, ||T G(W, α)||)``; the caller
    compares the norm with its tolerance. Where ``α`` is not unique (entries with no signal,
    dependent constraints) the unclipped solution may leave ``[0, 1]`` while another in the box
    solves the same equations: this finds it."""
    free, idx, valid, base = aux
    v = np.asarray(valid)
    alpha = np.asarray(alpha, dtype=float).copy()
    alpha[v] = np.clip(alpha[v], 0.0, 1.0)

    def measured(a):
        r, jac = _alpha_jacobian(
            problem, manifold, template, flat_x, base, idx, valid, jnp.asarray(a), free
        )
        return float(jnp.linalg.norm(r)), np.asarray(r), np.asarray(jac)[:, v]

    norm, r, jac = measured(alpha)
    for _ in range(iterations):
        if jac.size == 0 or norm == 0.0:
            break
        fit = scipy.optimize.lsq_linear(jac, jac @ alpha[v] - r, bounds=(0.0, 1.0), method="bvls")
        trial = alpha.copy()
        trial[v] = np.clip(fit.x, 0.0, 1.0)
        n_t, r_t, jac_t = measured(trial)
        if not n_t < norm:
            break
        alpha, norm, r, jac = trial, n_t, r_t, jac_t
    return alpha, norm


def capacity(m: int) -> int:
    return max(16, 1 << max(0, (m - 1)).bit_length())


def system_aux(free, s, pattern, total):
    cap = capacity(len(s))
    idx = np.full(cap, total, dtype=np.int32)
    idx[: len(s)] = s
    valid = np.zeros(cap, bool)
    valid[: len(s)] = True
    return (jnp.asarray(free), jnp.asarray(idx), jnp.asarray(valid), pattern)


@eqx.filter_jit
def multipliers(problem, manifold, template, flat_x, aux):
    """``(μ, ν)`` minimizing ``||G_0 + Cᵀμ + Nᵀν||`` on the free coordinates at fixed ``x``
    (LSMR on vector-Jacobian-free products: the ``x``-rows of ``J (0, μ, ν)``)."""
    free, idx, _, _ = aux
    p, m = flat_x.size, idx.size
    n_nu = _spheres(manifold, template, flat_x).size
    u0 = jnp.concatenate([flat_x, jnp.zeros(m + n_nu, flat_x.dtype)])
    r0 = _residual_vector(problem, manifold, template, u0, aux)[:p]

    def matvec(w):
        t = jnp.concatenate([jnp.zeros(p, w.dtype), w])
        return jax.jvp(
            lambda v: _residual_vector(problem, manifold, template, v, aux), (u0,), (t,)
        )[1][:p]

    op = lx.FunctionLinearOperator(matvec, jax.ShapeDtypeStruct((m + n_nu,), flat_x.dtype))
    solver = lx.LSMR(rtol=1e-14, atol=0.0, max_steps=20 * (m + n_nu) + 20, conlim=1e14)
    w = lx.linear_solve(op, -r0, solver, throw=False).value
    return w[:m], w[m:]


def best_multipliers(problem, manifold, template, flat, aux, dense: bool):
    """:func:`multipliers`, dense (least squares on the Jacobian's columns) when small."""
    if not dense:
        return tuple(np.asarray(a) for a in multipliers(problem, manifold, template, flat, aux))
    p, m = flat.size, aux[1].size
    n_nu = int(_spheres(manifold, template, flat).size)
    u = jnp.concatenate([flat, jnp.zeros(m + n_nu, flat.dtype)])
    jac = np.asarray(jacobian(problem, manifold, template, u, aux))
    r = np.asarray(residual(problem, manifold, template, u, aux))
    w = scipy.linalg.lstsq(jac[:p, p:], -r[:p], lapack_driver="gelsy")[0]
    return w[:m], w[m:]


def relative_residual(problem, manifold, template, flat, mu, aux, zscale) -> float:
    stat, scale, cons = (
        float(v) for v in measure(problem, manifold, template, flat, mu, aux, zscale)
    )
    rel = 0.0 if stat == 0 else (stat / scale if scale > 0 else math.inf)
    return max(rel, cons)
