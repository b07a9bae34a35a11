"""Filippov equilibria of ReLU flows: Newton on the multiplier system with an active set.

THEORY 3.6. With ``S`` the pre-activations held at zero, ``C`` the Jacobian of ``z_S`` and
``G_0`` the gradient of the total loss with ReLU slope 0 on ``S`` (and the pattern's slopes
``1[z > 0]`` elsewhere), a Filippov equilibrium solves

    T (G_0 + Cᵀμ) = 0,     z_S = 0,

with ``T`` the tangent projection of the state's manifold (:mod:`._manifold`; written with one
multiplier ``ν_k`` per sphere ``||v_k||² = r_k²``), and slopes ``α = μ/g ∈ [0, 1]``
(``g_i = ∂L/∂h_i``, the back-propagated signal) with every other pre-activation's sign kept.

:func:`solve` does, from a state (the end of a settled flow):

1. **S and dying units.** A unit whose incoming and outgoing weights are both below
   ``dying_tol`` times the largest of its layer is *dying*: its weights are set exactly to zero
   and held there (its pre-activations are identically zero and would make the system
   singular; the certificate checks that zero is stable for it). Of the other pre-activations,
   those with ``|z| ≤ switch_tol · rms_k`` (``rms_k`` the root mean square of layer ``k``'s
   pre-activations at the start) form ``S``.
2. **Newton** on the square system in ``u = (state, μ, ν)``: the dying weights obey ``x = 0``;
   steps are minimum-norm least-squares solutions (flat directions — parallel units, nearly
   redundant constraints — are not moved along), dense (``numpy.linalg.lstsq`` on the
   Jacobian from ``jax.jacfwd``) up to ``dense_max`` unknowns, else matrix-free (Lineax LSMR on
   Jacobian-vector products); backtracking on ``||R||``; the directions are retracted onto
   their spheres after each step.
3. **Active set.** *Join*: when a step would flip the sign of a pre-activation off ``S``, it is
   cut where the first one (linear interpolation of ``z``) reaches zero, and that entry joins
   ``S``. *Leave*: once the system is solved to ``tol``, ``α`` is computed (:func:`slopes`); an
   entry with ``α < −alpha_tol`` leaves ``S`` to the negative side (slope 0), one with
   ``α > 1 + alpha_tol`` to the positive side (slope 1), the worst first. *Anti-cycling*: a
   set ``(S, pattern)`` met before is not solved again — the entry of smallest index is dropped
   instead (Bland's rule); the solve stops after ``max_changes`` changes.

``S`` and the arrays that index it have a fixed capacity (the next power of two) so that the
jitted pieces compile once per capacity, not once per change of the active set.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree

from .._loss import square_error
from ._manifold import StateManifold
from ._switching import entry_layer, entry_unit, forward, unit_masks, unit_norms

# ---- the system -----------------------------------------------------------------------------


def _unravel(template):
    return ravel_pytree(template)[1]


def _gather(zflat, idx):
    return jnp.take(zflat, idx, mode="fill", fill_value=0.0)


def _parts(problem, template, flat_x, slopes):
    """Loss pieces with the given slopes: ``(fit, signal, decay, z)``; ``fit + signal`` is the
    mean of :func:`gradflow._loss.square_error` less the constant ``mean_n ||y_n||²`` (kept
    apart: the residual is scaled by the size of each cancelling term)."""
    state = _unravel(template)(flat_x)
    weights = problem.network_weights(state)
    out, z = forward(problem.model, weights, problem.x_train, slopes)
    y = problem.y_train
    fit = jnp.mean(jnp.sum(out**2, axis=1))
    signal = -2.0 * jnp.mean(jnp.sum(out * y, axis=1))
    return fit, signal, problem.decay_term(state), z


def _spheres(manifold, template, flat_x):
    """``(||v_k||² − r_k²)/2`` for every direction (empty for Plain)."""
    if manifold.kind == "euclidean":
        return jnp.zeros((0,), flat_x.dtype)
    state = _unravel(template)(flat_x)
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
    state_of = _unravel(template)
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
    state = _unravel(template)(flat_x)
    weights = problem.network_weights(state)
    zero = jnp.zeros_like(slopes)

    def loss(extra):
        out, _ = forward(problem.model, weights, problem.x_train, slopes, extra)
        return jnp.mean(square_error(out, problem.y_train))  # the one per-sample loss

    return jax.grad(loss)(zero)


def with_alpha(slopes, idx, valid, alpha):
    flat = jnp.ravel(slopes)
    target = jnp.where(valid, idx, flat.size)
    return jnp.reshape(flat.at[target].set(alpha, mode="drop"), slopes.shape)


@eqx.filter_jit
def filippov_gradient(problem, manifold, template, flat_x, slopes, free):
    """``T G(W, α)`` on the free coordinates, for slopes that already hold ``α`` on ``S``."""
    state_of = _unravel(template)

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
    """``α`` on ``S`` from the multipliers: ``μ/g`` refined by Gauss–Newton on
    ``||T G(W, α)||`` (``G`` is multi-affine in ``α``: affine when no sample has entries of
    ``S`` in two layers, where ``μ/g`` is already exact)."""
    free, idx, valid, base = aux
    g = np.asarray(signals(problem, template, flat_x, base)).ravel()
    gi = np.where(np.asarray(valid), g[np.minimum(np.asarray(idx), g.size - 1)], 1.0)
    ok = np.asarray(valid) & (np.abs(gi) > 1e-12 * np.max(np.abs(gi), initial=0.0))
    alpha = np.where(ok, np.asarray(mu) / np.where(ok, gi, 1.0), 0.5)  # g = 0: α is free
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


# ---- the active-set solve -------------------------------------------------------------------


@dataclasses.dataclass
class Solve:
    """What :func:`solve` found (the certificate is built from it)."""

    flat: np.ndarray
    mu: np.ndarray
    s: np.ndarray  # indices of S into the flat entries
    slopes: np.ndarray  # (N, Z): 0/1 off S, α on S (for the certificate)
    pattern: np.ndarray  # (N, Z): slopes at the start (0/1; S entries 0)
    start_s: np.ndarray
    dying: list  # (layer, unit)
    free: np.ndarray  # bool, flat state coordinates
    alpha: np.ndarray
    relative_residuals: list
    joins: int
    drops: int
    solved: bool  # Newton reached tol on the final (S, pattern)
    message: str
    cycled: bool
    steps: list  # per iteration: the step length (a join's cut; 0 for a drop)
    changes: list  # per iteration: joins + drops so far
    n_flat: int | None
    jac: np.ndarray | None  # the last dense Jacobian (for the restricted Hessian)
    zscale: np.ndarray
    dead: np.ndarray  # (N·Z,) entries of the dying units (z = 0 identically)


def _capacity(m: int) -> int:
    return max(16, 1 << max(0, (m - 1)).bit_length())


def _aux(free, s, pattern, total):
    cap = _capacity(len(s))
    idx = np.full(cap, total, dtype=np.int32)
    idx[: len(s)] = s
    valid = np.zeros(cap, bool)
    valid[: len(s)] = True
    return (jnp.asarray(free), jnp.asarray(idx), jnp.asarray(valid), pattern)


def identify(problem, state, switch_tol: float, dying_tol: float):
    """``(flat, template, dying, free, S, pattern, zscale)`` at ``state`` (module docstring)."""
    given = np.asarray(ravel_pytree(state)[0])
    weights = [np.asarray(w) for w in problem.to_weights(state)]
    dying = []
    for k, (n_in, n_out) in enumerate(unit_norms(weights)):
        small = (n_in <= dying_tol * max(n_in.max(), 1e-300)) & (
            n_out <= dying_tol * max(n_out.max(), 1e-300)
        )
        dying += [(k, int(j)) for j in np.flatnonzero(small)]
    key = "w" if "w" in state else "v"
    masks = [np.zeros(np.shape(w), bool) for w in state[key]]
    for k, j in dying:
        m_in, m_out = unit_masks(problem.model, weights, k, j)
        for i in range(len(masks)):
            masks[i] |= m_in[i] | m_out[i]
    state = {
        **state,
        key: tuple(np.where(m, 0.0, np.asarray(v)) for m, v in zip(masks, state[key])),
    }
    state = jax.tree.map(lambda a: jnp.asarray(a, problem.dtype), state)
    dying_tree = jax.tree.map(lambda a: np.zeros(np.shape(a), bool), state)
    dying_tree = {**dying_tree, key: tuple(masks)}
    free = ~np.asarray(ravel_pytree(dying_tree)[0], bool)
    flat, _ = ravel_pytree(state)
    z = np.asarray(_relu_pre_activations(problem, state))
    layer = entry_layer(problem.model, problem.x_train)
    rms = np.array([np.sqrt(np.mean(z[:, layer == k] ** 2)) for k in range(layer.max() + 1)])
    zscale = np.broadcast_to(np.maximum(rms[layer], 1e-300), z.shape).copy()
    dead_entries = np.zeros(z.shape, bool)
    unit = entry_unit(problem.model, problem.x_train)
    for k, j in dying:
        dead_entries[:, (layer == k) & (unit == j)] = True
    near = np.abs(z) <= _cut(np.abs(z) / zscale, dead_entries, switch_tol) * zscale
    near &= ~dead_entries
    pattern = ((z > 0) & ~near & ~dead_entries).astype(np.asarray(flat).dtype)
    return given, state, dying, free, np.flatnonzero(near.ravel()), pattern, zscale


def _cut(ratio, dead, switch_tol: float) -> float:
    """The threshold of ``S``: the middle (geometric) of the widest gap between consecutive
    values of ``|z| / rms`` below ``switch_tol`` (the gap to the first value above it
    included), so that ``S`` is what the flow holds at zero, apart from the rest by decades;
    0 (``S`` empty) when that gap is less than a factor 100."""
    values = np.sort(ratio[~dead].ravel())
    below = values[values <= switch_tol]
    if below.size == 0:
        return 0.0
    above = values[values > switch_tol]
    upper = np.append(below[1:], above[0] if above.size else switch_tol)
    gaps = np.log(np.maximum(upper, 1e-300)) - np.log(np.maximum(below, 1e-300))
    i = int(np.argmax(gaps))
    if gaps[i] < np.log(100.0):  # no two decades apart: nothing is held at zero
        return 0.0
    return float(np.sqrt(max(below[i], 1e-300) * upper[i]))


@eqx.filter_jit
def _relu_pre_activations(problem, state):
    return forward(problem.model, problem.network_weights(state), problem.x_train)[1]


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


def _multipliers(problem, manifold, template, flat, aux, dense: bool):
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


def _relative(problem, manifold, template, flat, mu, aux, zscale) -> float:
    stat, scale, cons = (
        float(v) for v in measure(problem, manifold, template, flat, mu, aux, zscale)
    )
    rel = 0.0 if stat == 0 else (stat / scale if scale > 0 else math.inf)
    return max(rel, cons)


def solve(
    problem,
    state,
    *,
    tol: float,
    switch_tol: float,
    dying_tol: float,
    alpha_tol: float,
    max_iter: int,
    max_changes: int,
    max_backtracks: int,
    dense_max: int,
) -> Solve:
    """The active-set Newton solve of the module docstring from ``state``."""
    manifold = StateManifold.of(problem, state)
    state = manifold.retract(state)
    flat0, template, dying, free, s, pattern, zscale = identify(
        problem, state, switch_tol, dying_tol
    )
    template = manifold.retract(template)
    flat = np.asarray(ravel_pytree(template)[0])
    total = pattern.size
    dead = np.zeros(pattern.shape, bool)
    layer, unit = (
        entry_layer(problem.model, problem.x_train),
        entry_unit(problem.model, problem.x_train),
    )
    for k, j in dying:
        dead[:, (layer == k) & (unit == j)] = True
    dead = dead.ravel()
    n_nu = 0 if manifold.kind == "euclidean" else len(template["v"])
    dtype = flat.dtype
    start_s = s.copy()

    def pad(mu, cap):
        out = np.zeros(cap, dtype)
        out[: len(mu)] = mu
        return out

    # the start, measured as it was given (every coordinate free), with its best multipliers
    aux0 = _aux(np.ones_like(free), s, pattern, total)
    dense = flat.size + aux0[1].size + n_nu <= dense_max
    mu0 = _multipliers(problem, manifold, template, jnp.asarray(flat0), aux0, dense)[0]
    rel_start = _relative(
        problem, manifold, template, jnp.asarray(flat0), jnp.asarray(mu0), aux0, zscale
    )

    aux = _aux(free, s, pattern, total)
    mu_full, nu = _multipliers(problem, manifold, template, jnp.asarray(flat), aux, dense)
    mu = mu_full[: len(s)]
    rels, joins, drops, history, polish = [], 0, 0, set(), 0
    steps, changes = [], []  # per iteration: step length (0: a drop), changes of S so far
    solved, cycled, jac, alpha = False, False, None, np.zeros(0)
    message = f"max_iter = {max_iter} Newton iterations reached"
    state_of = _unravel(template)

    def retract(x):  # onto the spheres, the dying weights exactly zero
        x = np.where(free, x, 0.0)
        return np.asarray(ravel_pytree(manifold.retract(state_of(jnp.asarray(x))))[0])

    for _ in range(max_iter):
        aux = _aux(free, s, pattern, total)
        cap = aux[1].size
        mu_p = pad(mu, cap)
        rel = _relative(
            problem, manifold, template, jnp.asarray(flat), jnp.asarray(mu_p), aux, zscale
        )
        rels.append(rel)
        if rel <= tol and polish < 2 and rel > 100 * np.finfo(dtype).eps:
            polish += 1  # two more Newton steps past tol (quadratic: to the rounding floor)
        elif rel <= tol:
            alpha, _ = slopes(
                problem, manifold, template, jnp.asarray(flat), aux, jnp.asarray(mu_p)
            )
            a = alpha[: len(s)]
            bad = np.flatnonzero((a < -alpha_tol) | (a > 1 + alpha_tol))
            if bad.size == 0:
                solved, message = True, "tolerance reached, every α in [0, 1]"
                break
            if joins + drops >= max_changes:
                message = f"max_changes = {max_changes} changes of S reached"
                break
            key = (tuple(sorted(int(i) for i in s)), hash(pattern.tobytes()))
            if key in history:
                cycled = True
                i = bad[np.argmin(s[bad])]  # Bland's rule: the smallest index
            else:
                viol = np.maximum(-a[bad], a[bad] - 1)
                i = bad[np.argmax(viol)]
            history.add(key)
            pattern.flat[s[i]] = 1.0 if a[i] > 1 else 0.0
            s, mu = np.delete(s, i), np.delete(mu, i)
            drops += 1
            steps.append(0.0)
            changes.append(joins + drops)
            continue
        u = np.concatenate([flat, mu_p, nu])
        r = np.asarray(residual(problem, manifold, template, jnp.asarray(u), aux))
        if u.size <= dense_max:
            jac = np.asarray(jacobian(problem, manifold, template, jnp.asarray(u), aux))
            delta = scipy.linalg.lstsq(jac, -r, cond=1e-13, lapack_driver="gelsy")[0]
        else:
            jac = None
            delta = np.asarray(
                krylov_step(
                    problem,
                    manifold,
                    template,
                    jnp.asarray(u),
                    aux,
                    jnp.asarray(1e-3 * min(rel, 1e-2)),
                )
            )
        p = flat.size
        # joins: a step that would flip a sign off S stops where the first one reaches zero
        z0 = np.asarray(pre_activations(problem, template, jnp.asarray(flat), pattern)).ravel()
        z1 = np.asarray(
            pre_activations(problem, template, jnp.asarray(flat + delta[:p]), pattern)
        ).ravel()
        off = np.ones(total, bool)
        off[s] = False
        off &= ~dead
        want = np.where(pattern.ravel() > 0, 1.0, -1.0)
        crossing = off & (want * z1 <= 0)
        if crossing.any() and joins + drops < max_changes:
            with np.errstate(divide="ignore", invalid="ignore"):
                tau = np.where(crossing, z0 / (z0 - z1), np.inf)
            tau = np.where(crossing & (want * z0 <= 0), 0.0, tau)  # on the wrong side already
            i = int(np.argmin(tau))
            step = float(np.clip(tau[i], 0.0, 1.0))
            flat = retract(flat + step * delta[:p])
            mu = mu + step * delta[p : p + len(s)]
            nu = nu + step * delta[p + cap :]
            s, mu = np.append(s, i), np.append(mu, 0.0)
            pattern.flat[i] = 0.0
            joins += 1
            steps.append(step)
            changes.append(joins + drops)
            continue
        norm_r = np.linalg.norm(r)
        accepted = False
        t = 1.0
        for _ in range(max_backtracks):
            trial = np.concatenate(
                [
                    retract(flat + t * delta[:p]),
                    mu_p + t * delta[p : p + cap],
                    nu + t * delta[p + cap :],
                ]
            )
            r_t = np.asarray(residual(problem, manifold, template, jnp.asarray(trial), aux))
            if np.all(np.isfinite(r_t)) and np.linalg.norm(r_t) <= (1 - 1e-4 * t) * norm_r:
                accepted = True
                break
            t /= 2
        if not accepted and rel <= tol:  # polishing has reached the rounding floor
            polish = 2
            continue
        if not accepted:
            message = "no Newton step reduces the system's residual (rounding floor, or stuck)"
            break
        flat = retract(trial[:p])
        steps.append(t)
        changes.append(joins + drops)
        mu = trial[p : p + len(s)]
        nu = trial[p + cap :]
    else:
        aux = _aux(free, s, pattern, total)
        mu_p = pad(mu, aux[1].size)
        rels.append(
            _relative(
                problem, manifold, template, jnp.asarray(flat), jnp.asarray(mu_p), aux, zscale
            )
        )
    aux = _aux(free, s, pattern, total)
    mu_p = pad(mu, aux[1].size)
    if alpha.size != aux[1].size or not solved:
        alpha, _ = slopes(problem, manifold, template, jnp.asarray(flat), aux, jnp.asarray(mu_p))
    final_slopes = np.asarray(with_alpha(jnp.asarray(pattern), aux[1], aux[2], jnp.asarray(alpha)))
    n_flat = None
    if jac is not None:
        sv = np.linalg.svd(jac, compute_uv=False)
        n_flat = int(np.sum(sv <= 1e-9 * sv[0]))
    result = Solve(
        flat=flat,
        mu=mu,
        s=np.asarray(s, int),
        slopes=final_slopes,
        pattern=pattern,
        start_s=start_s,
        dying=dying,
        free=free,
        alpha=alpha[: len(s)],
        relative_residuals=[rel_start] + rels,
        joins=joins,
        drops=drops,
        solved=solved,
        message=message,
        cycled=cycled,
        steps=steps,
        changes=changes,
        n_flat=n_flat,
        jac=jac,
        zscale=zscale,
        dead=dead,
    )
    return result, template, manifold, flat0
