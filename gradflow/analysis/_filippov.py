"""Filippov equilibria of ReLU flows: Newton on the multiplier system with an active set.

The system and its pieces are in :mod:`._multiplier_system`, the identification of ``S`` and
of the dying units in :mod:`._sliding_set`; this module holds the active-set solve.

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
   pre-activations at the start) form ``S`` (the middle of the widest gap of two decades or
   more below that, :func:`._sliding_set._cut`), and with them the entries that the caller's
   ``sliding`` mask names (the flow's own evidence: the entries that changed sign during the
   run's last steps, :func:`._sliding_set.sliding_evidence`), whatever their size.
2. **Newton** on the square system in ``u = (state, μ, ν)``: the dying weights obey ``x = 0``;
   steps are minimum-norm least-squares solutions (flat directions — parallel units, nearly
   redundant constraints — are not moved along), dense (``numpy.linalg.lstsq`` on the
   Jacobian from ``jax.jacfwd``) up to ``dense_max`` unknowns, else matrix-free (Lineax LSMR on
   Jacobian-vector products); backtracking on ``||R||``; the directions are retracted onto
   their spheres after each step.
3. **Active set.** *Join*: when a step would flip the sign of a pre-activation off ``S``, it is
   cut where the first one reaches zero — located by bisection on the step's fraction, on the
   pre-activations of the retracted point (:data:`CUT_BISECTIONS`), at the fraction ``τ_min``
   — and that entry joins ``S``, with every other entry that the full step takes across, whose
   linearly interpolated fraction is at most ``τ_min + join_window`` and whose ``|z|`` at the
   cut is already within the current relative residual of its scale (so the new constraint
   ``z = 0`` raises no part of the residual). ``join_window = 0``: the first alone, one join
   per iteration; every crossing of the full step joining at once was measured worse:
   ``|S|`` straight to 200, ``α`` of order ±1e6. A joining entry keeps its slope: its
   multiplier starts at its old slope (0 or 1) times the Lagrangian's signal
   ``∂(L + μ·z_S)/∂h`` (:func:`._multiplier_system.lagrangian_signals`), so the field, and
   ``||R||``, are continuous across the join (``μ = 0`` raised the residual 20x at a join on
   the neural_collapse nets). *Leave*: once the system is solved to ``tol``, ``α`` is
   computed (:func:`slopes`). Where it is outside ``[0, 1]``, another ``α`` may solve the same
   equations — ``α`` is not unique where entries carry no back-propagated signal or ``S`` has
   more entries than the gradient has independent directions (plain + decay margins nets at
   λ = 0.0025: ``|S|`` 207, the ``α``-Jacobian of rank 70) — so the box-constrained least
   squares (:func:`bounded_slopes`) is tried, and accepted when its Filippov residual is within
   ``filippov_tol`` of the scale. Else an entry with that ``α`` outside
   ``[−alpha_tol, 1 + alpha_tol]`` (the worst first) leaves ``S`` to the side that both
   one-sided fields push it to: with
   ``μ = α g`` they move ``z_i`` at ``μ |∇z_i|²`` (slope 0) and ``(μ − g) |∇z_i|²`` (slope 1),
   so to the positive side (slope 1) when ``α > 1`` and ``g > 0`` or ``α < 0`` and ``g < 0``,
   else to the negative side (slope 0). *Anti-cycling*: a set ``(S, pattern)`` met before is
   not solved again — the entry of smallest index is dropped instead (Bland's rule); the solve
   stops after ``max_changes`` changes.
4. **Stall** (``max_stall``, off by default): the solve stops when the relative residual has
   not halved in ``max_stall`` consecutive iterations (counted afresh after each drop, which
   poses a new system). Newton on the right ``(S, pattern)`` halves it at every step; a long
   run of iterations without halving is the slow crawl of a start whose S is wrong or whose
   flow had not settled (the margins nets' uncertified solves: 5.3e-5 to 5.1e-5 over 20
   iterations, 200 iterations in 3,645 s, benchmarks/results/equilibria_figures.json).

``S`` and the arrays that index it have a fixed capacity (the next power of two) so that the
jitted pieces compile once per capacity, not once per change of the active set.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree

from ._manifold import StateManifold
from ._multiplier_system import (
    best_multipliers,
    bounded_slopes,
    jacobian,
    krylov_step,
    lagrangian_signals,
    measure,
    pre_activations,
    relative_residual,
    residual,
    slopes,
    system_aux,
    unravel,
    with_alpha,
)
from ._sliding_set import identify
from ._switching import entry_layer, entry_unit


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
    first_step: float | None  # ||δx||/||x|| of the first Newton step (None: none was taken)
    jac: np.ndarray | None  # the last dense Jacobian (for the restricted Hessian)
    zscale: np.ndarray
    dead: np.ndarray  # (N·Z,) entries of the dying units (z = 0 identically)


#: Halvings of a Newton step's fraction in locating the first sign change off S (a cut): the
#: cut is then within 2**-50 of the step from the surface, far below any tolerance.
CUT_BISECTIONS = 50


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
    sliding=None,
    join_window: float = 0.0,
    filippov_tol: float = 1e-10,
    max_stall: int | None = None,
) -> Solve:
    """The active-set Newton solve of the module docstring from ``state``."""
    manifold = StateManifold.of(problem, state)
    state = manifold.retract(state)
    flat0, template, dying, free, s, pattern, zscale = identify(
        problem, state, switch_tol, dying_tol, sliding
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
    aux0 = system_aux(np.ones_like(free), s, pattern, total)
    dense = flat.size + aux0[1].size + n_nu <= dense_max
    mu0 = best_multipliers(problem, manifold, template, jnp.asarray(flat0), aux0, dense)[0]
    rel_start = relative_residual(
        problem, manifold, template, jnp.asarray(flat0), jnp.asarray(mu0), aux0, zscale
    )

    aux = system_aux(free, s, pattern, total)
    mu_full, nu = best_multipliers(problem, manifold, template, jnp.asarray(flat), aux, dense)
    mu = mu_full[: len(s)]
    rels, joins, drops, history, polish = [], 0, 0, set(), 0
    first_step = None
    steps, changes = [], []  # per iteration: step length (0: a drop), changes of S so far
    solved, cycled, jac, alpha = False, False, None, np.zeros(0)
    boxed_slopes = False
    message = f"max_iter = {max_iter} Newton iterations reached"
    state_of = unravel(template)
    anchor, since = np.inf, 0  # the stall rule: the residual last halved at `anchor`

    def retract(x):  # onto the spheres, the dying weights exactly zero
        x = np.where(free, x, 0.0)
        return np.asarray(ravel_pytree(manifold.retract(state_of(jnp.asarray(x))))[0])

    for _ in range(max_iter):
        aux = system_aux(free, s, pattern, total)
        cap = aux[1].size
        mu_p = pad(mu, cap)
        rel = relative_residual(
            problem, manifold, template, jnp.asarray(flat), jnp.asarray(mu_p), aux, zscale
        )
        rels.append(rel)
        if rel <= 0.5 * anchor:
            anchor, since = rel, 0
        else:
            since += 1
        if max_stall is not None and since >= max_stall:
            message = (
                f"stalled: the relative residual has not halved in {max_stall} Newton "
                f"iterations (max_stall; {anchor:.2e} then, {rel:.2e} now)"
            )
            break
        if rel <= tol and polish < 2 and rel > 100 * np.finfo(dtype).eps:
            polish += 1  # two more Newton steps past tol (quadratic: to the rounding floor)
        elif rel <= tol:
            alpha, g = slopes(
                problem, manifold, template, jnp.asarray(flat), aux, jnp.asarray(mu_p)
            )
            a = alpha[: len(s)]
            bad = np.flatnonzero((a < -alpha_tol) | (a > 1 + alpha_tol))
            if bad.size:  # another α in the box may solve the same equations
                boxed, norm = bounded_slopes(
                    problem, manifold, template, jnp.asarray(flat), aux, alpha
                )
                scale = float(
                    measure(
                        problem,
                        manifold,
                        template,
                        jnp.asarray(flat),
                        jnp.asarray(mu_p),
                        aux,
                        zscale,
                    )[1]
                )
                if norm <= filippov_tol * scale:
                    alpha, bad, boxed_slopes = boxed, bad[:0], True
            if bad.size == 0:
                solved = True
                message = "tolerance reached, every α in [0, 1]" + (
                    " (a bounded least-squares α: the unbounded one was not unique)"
                    if boxed_slopes
                    else ""
                )
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
            # the side both pieces of the field push it to: with μ = α g the field moves z_i
            # at μ|∇z|² on its negative side and (μ − g)|∇z|² on its positive side, so
            # α > 1 leaves to the positive side when g > 0 and α < 0 when g < 0
            pattern.flat[s[i]] = 1.0 if (a[i] > 1) == (g[i] > 0) else 0.0
            s, mu = np.delete(s, i), np.delete(mu, i)
            anchor, since = np.inf, 0  # a new system: the stall rule starts again
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
        if first_step is None:
            first_step = float(np.linalg.norm(delta[:p]) / np.linalg.norm(flat))

        # joins: a step that would flip a sign off S stops where the first one reaches zero
        def z_at(x):
            return np.asarray(pre_activations(problem, template, jnp.asarray(x), pattern)).ravel()

        off = np.ones(total, bool)
        off[s] = False
        off &= ~dead
        want = np.where(pattern.ravel() > 0, 1.0, -1.0)
        z0 = z_at(flat)
        x1 = retract(flat + delta[:p])
        z1 = z_at(x1)
        crossing = off & (want * z1 <= 0)
        if crossing.any() and joins + drops < max_changes:
            # the cut: bisection on the step's fraction, on the pre-activations of the retracted
            # point (z is a product of the layers: linear interpolation from a long Newton step
            # put the "first zero" where |z| was still 1e-3 of its scale, 20x the residual)
            lo, hi, z_lo, z_hi, x_lo = 0.0, 1.0, z0, z1, flat
            if (off & (want * z0 <= 0)).any():  # on the wrong side already: they join, τ = 0
                z_hi = z0
            else:
                for _ in range(CUT_BISECTIONS):
                    mid = 0.5 * (lo + hi)
                    x_mid = retract(flat + mid * delta[:p])
                    z_mid = z_at(x_mid)
                    if (off & (want * z_mid <= 0)).any():
                        hi, z_hi = mid, z_mid
                    else:
                        lo, z_lo, x_lo = mid, z_mid, x_mid
            first = off & (want * z_hi <= 0)
            step = lo
            flat = x_lo if lo > 0 else flat
            mu = mu + step * delta[p : p + len(s)]
            nu = nu + step * delta[p + cap :]
            # the first crossings join, and with a window every entry that the full step would
            # take across and that is already within the current relative residual of zero
            # (so its constraint z = 0 raises no part of the residual)
            with np.errstate(divide="ignore", invalid="ignore"):
                tau = np.where(crossing, z0 / (z0 - z1), np.inf)
            near = np.abs(z_lo) <= min(rel, switch_tol) * np.ravel(zscale)
            window = crossing & near & (tau <= np.min(tau[first], initial=1.0) + join_window)
            new = np.flatnonzero(first | (window if join_window else False))
            order = np.argsort(np.where(first[new], -1.0, tau[new]), kind="stable")
            new = new[order][: max(1, max_changes - joins - drops)]
            # a joining entry keeps the slope it had: μ = (old 0/1 slope) × the Lagrangian's
            # signal ∂(L + μ·z_S)/∂h there, under the old pattern, so the field is continuous
            # across the join; μ = 0 would switch a positive entry's contribution off at once
            # and raise ||R|| by that much
            was = pattern.flat[new].copy()
            g = np.asarray(
                lagrangian_signals(
                    problem,
                    template,
                    jnp.asarray(flat),
                    jnp.asarray(pad(mu, cap)),
                    system_aux(free, s, pattern, total),
                )
            ).ravel()
            pattern.flat[new] = 0.0
            s, mu = np.append(s, new), np.append(mu, was * g[new])
            joins += new.size
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
        aux = system_aux(free, s, pattern, total)
        mu_p = pad(mu, aux[1].size)
        rels.append(
            relative_residual(
                problem, manifold, template, jnp.asarray(flat), jnp.asarray(mu_p), aux, zscale
            )
        )
    aux = system_aux(free, s, pattern, total)
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
        first_step=first_step,
        jac=jac,
        zscale=zscale,
        dead=dead,
    )
    return result, template, manifold, flat0
