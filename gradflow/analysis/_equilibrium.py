"""Exact fixed points of the flows: ``velocity(state) = 0`` by Newton–Krylov on the manifold.

:func:`equilibrium` polishes a state (the end of a run, typically) into a zero of the flow's
right-hand side ``F = problem.velocity`` (THEORY 3) on the manifold of the problem's states
(:mod:`._manifold`: ``R^P`` for Plain, the unit spheres of ``V_k`` for LM, the spheres of
constant ``||v_k||`` for WN). Each iteration

1. solves the Newton system ``S J S δ = −F`` on the tangent space, where ``J δ`` is a
   Jacobian-vector product of the velocity (``jax.jvp``; ``J`` is never formed) and ``S`` the
   tangent projection (THEORY 2.4), with a Lineax Krylov solver to the relative tolerance
   ``η_k = min(10⁻³, 10⁻² r_k)`` (``r_k`` the relative residual: an inexact Newton method with
   forcing terms ``O(||F||)``, hence quadratic convergence). The default solver is LSMR, whose
   iterates approach the minimum-norm step: symmetries (rescalings, rotations of hidden units)
   make ``J`` nearly singular near a fixed point, with singular values that vanish like
   ``||F||²``, and a step that resolves them moves far along those flat directions (measured:
   restarted GMRES stalled at a relative residual of 1e-8 on an LM-all linear network where
   LSMR converged quadratically); GMRES (``linear_solver="gmres"``) is the other choice;
2. globalizes by backtracking on ``||F||``: the step ``state ← R(state + α δ)`` with the
   retraction ``R`` (``problem.project`` for LM) is accepted when
   ``||F|| ≤ (1 − 10⁻⁴ α) ||F||_old``, halving ``α`` from 1; if no ``α`` is accepted, a
   steepest-descent step of ``||F||²/2`` (``−S Jᵀ F``, a vector-Jacobian product) is tried
   instead, and if that fails too the solve stops.

Newton converges to whatever zero is near — a minimum or a saddle — which is the point: the
result reports the Hessian spectrum (:func:`gradflow.analysis.hessian_spectrum`) and its kind.

The ReLU flow's right-hand side is smooth only within one activation pattern (THEORY 1,
"Non-smoothness"); the result says whether the pattern on the training set changed between
the start and any iterate. Within one pattern the convergence is quadratic. A flow that ends
sliding on a switching surface (a pre-activation held at 0, common for ReLU networks with
more parameters than data) has no smooth fixed point there, and Newton stalls: the result is
then ``converged = False``.

The residual is ``||F||`` (Euclidean, state coordinates). It is judged relative to the size of
the terms that cancel at a fixed point: with ``f_n`` the outputs,
``scale = ||F_f|| + ||F_y|| + ||F_λ||``, the velocities of ``(1/N) Σ_n ||f_n||²``, of
``−(2/N) Σ_n ⟨f_n, y_n⟩`` and of the decay ``(λ/2) D``, which sum to ``F``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from .._trajectory import Trajectory
from .._validate import Shown, bad_value
from ._certificate import THRESHOLDS, Certificate, certify
from ._filippov import solve as filippov_solve
from ._manifold import StateManifold
from ._sliding_set import sliding_evidence
from ._spectrum import HessianSpectrum, hessian_spectrum
from ._switching import entry_layer, has_switching


@dataclasses.dataclass(frozen=True)
class FixedPoint:
    """The result of :func:`equilibrium`.

    Attributes:
        state: the polished state (the problem's parametrization).
        converged: whether ``relative residual ≤ tol`` (or ``residual ≤ atol``) was reached.
        iterations: Newton iterations taken.
        residuals: ``||velocity||`` at the start and after each iteration (``iterations + 1``).
        relative_residuals: the same divided by the scale of the cancelling terms (module
            docstring). For ReLU networks both are the relative residual of the multiplier
            system at each iterate (the start's, before the dying units were zeroed, is
            ``certificate.start_residual``).
        steps: the accepted step length ``α`` of each iteration (negative: a steepest-descent
            fallback step).
        linear_steps: the Krylov solver's steps in each Newton solve (LSMR iterations; GMRES
            restart cycles).
        linear_residuals: ``||S J S δ + F|| / ||F||`` of each Newton solve.
        pattern_flips: per iterate (start first), how many entries of the ReLU activation
            pattern on the training set differ from the start's (``None`` if the model does not
            expose pre-activations; always 0 for linear networks); for ReLU networks, the
            changes of the active set so far (joins and drops of ``S``).
        pattern_changed: whether any iterate's pattern differs from the start's.
        spectrum: the Hessian spectrum at ``state`` (``None`` with ``spectrum=False``); its
            ``kind`` is ``"uncertified"`` at a point that is not a certified fixed point.
        message: how the solve ended.
        certificate: for ReLU networks, the :class:`gradflow.analysis.Certificate` of the
            Filippov equilibrium (THEORY 3.6); ``None`` on the smooth path (linear networks).
    """

    state: Any
    converged: bool
    iterations: int
    residuals: np.ndarray
    relative_residuals: np.ndarray
    steps: np.ndarray
    linear_steps: np.ndarray
    linear_residuals: np.ndarray
    pattern_flips: np.ndarray | None
    pattern_changed: bool
    spectrum: HessianSpectrum | None
    message: str
    certificate: Certificate | None = None

    @property
    def certified(self) -> bool:
        """Whether this is a fixed point: the certificate's verdict for ReLU networks, the
        tolerance reached on the smooth path."""
        return self.converged if self.certificate is None else self.certificate.certified

    @property
    def residual(self) -> float:
        return float(self.residuals[-1])

    @property
    def relative_residual(self) -> float:
        return float(self.relative_residuals[-1])

    @property
    def kind(self) -> str | None:
        """``"minimum"``, ``"saddle"`` or ``"degenerate"`` (from the spectrum), or ``None``."""
        return None if self.spectrum is None else self.spectrum.kind

    def convergence_order(self, floor: float = 1e-14, last: int = 3) -> float:
        """The exponent ``p`` of ``r_{k+1} ≈ C r_k^p``, fitted by least squares to
        ``(log r_k, log r_{k+1})`` over the last ``last`` pairs of successive relative
        residuals with ``r_{k+1} > floor`` (2: quadratic convergence, 1: linear); NaN with
        fewer than two such pairs."""
        r = self.relative_residuals
        pairs = [(r[k], r[k + 1]) for k in range(len(r) - 1) if r[k + 1] > floor]
        pairs = pairs[-last:]
        if len(pairs) < 2:
            return math.nan
        x, y = np.log(np.asarray(pairs)).T
        return float(np.polyfit(x, y, 1)[0])

    def __repr__(self) -> str:
        """:meth:`describe` without the list of residuals: status, residual, pattern, Hessian
        counts (never the state or the eigenvalues)."""
        lines = self.describe().split("\n")
        lines = [line for line in lines if not line.startswith("relative residuals")]
        return "FixedPoint: " + "\n  ".join(lines).removeprefix("fixed point: ")

    def describe(self) -> str:
        if self.certificate is not None:
            return self._describe_filippov()
        lines = [
            f"fixed point: {'converged' if self.converged else 'NOT converged'} after "
            f"{self.iterations} Newton iterations ({self.message}); |velocity| = "
            f"{self.residual:.3e} (relative {self.relative_residual:.3e})",
            "relative residuals: " + " ".join(f"{r:.1e}" for r in self.relative_residuals),
        ]
        if self.pattern_flips is not None:
            lines.append(
                "ReLU activation pattern on the training set: "
                + (
                    f"changed (at most {int(np.max(self.pattern_flips))} entries)"
                    if self.pattern_changed
                    else "unchanged"
                )
            )
        if self.spectrum is not None:
            lines.append("Hessian: " + self.spectrum.describe())
        return "\n".join(lines)

    def _describe_filippov(self) -> str:
        c = self.certificate
        head = "fixed point" if c.certified else "NOT a fixed point"
        lines = [
            f"{head} (Filippov, THEORY 3.6): {c.verdict} after {self.iterations} Newton "
            f"iterations ({self.message})",
            "relative residuals: " + " ".join(f"{r:.1e}" for r in self.relative_residuals),
            c.describe(),
        ]
        if self.spectrum is not None:
            lines.append("Hessian (slopes 0 on S): " + self.spectrum.describe())
        return "\n".join(lines)


# ---- the jitted pieces ----------------------------------------------------------------------


def _velocity(problem, state):
    return problem.velocity(state)


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))


@eqx.filter_jit
def _residual(problem, state):
    """``(||F||, scale)`` with the scale of the cancelling terms (module docstring)."""
    vel = _velocity(problem, state)
    y = problem.y_train

    def fit(s):
        return jnp.mean(jnp.sum(problem.outputs(s) ** 2, axis=1))

    def signal(s):
        return -2.0 * jnp.mean(jnp.sum(problem.outputs(s) * y, axis=1))

    terms = (fit, signal, problem.decay_term)
    scale = sum(_norm(problem.velocity_from_grad(state, jax.grad(term)(state))) for term in terms)
    return _norm(vel), scale


@eqx.filter_jit
def _newton_direction(problem, manifold, state, eta, method: str, restart: int, max_steps: int):
    vel = _velocity(problem, state)

    def jvp(u):  # S J S on the tangent space, the identity on its complement
        xi = manifold.tangent(state, u)
        ju = jax.jvp(lambda s: _velocity(problem, s), (state,), (xi,))[1]
        return jax.tree.map(jnp.add, manifold.tangent(state, ju), manifold.normal(state, u))

    rhs = jax.tree.map(jnp.negative, vel)
    # Lineax's LSMR selects against a Python 1.0, which is float64 when x64 is on: a float32
    # problem's solve then fails on mixed dtypes, so it runs in float64 (the operator in the
    # problem's precision, its vectors cast at the boundary)
    wide = method == "lsmr" and jax.config.jax_enable_x64
    up = (lambda t: jax.tree.map(lambda a: a.astype(jnp.float64), t)) if wide else (lambda t: t)

    def down(t):
        return jax.tree.map(lambda a, s: a.astype(s.dtype), t, state)

    operator = lx.FunctionLinearOperator(
        lambda u: up(jvp(down(u))), jax.eval_shape(lambda: up(state))
    )
    if method == "lsmr":
        solver = lx.LSMR(rtol=eta, atol=0.0, max_steps=max_steps, conlim=1e12)
    else:
        size = sum(x.size for x in jax.tree.leaves(state))
        atol = eta * _norm(rhs) / math.sqrt(size)
        solver = lx.GMRES(rtol=eta, atol=atol, restart=restart, max_steps=max_steps)
    sol = lx.linear_solve(operator, up(rhs), solver, throw=False)
    delta = manifold.tangent(state, down(sol.value))
    tiny = jnp.finfo(eta.dtype).tiny
    lin_res = _norm(jax.tree.map(jnp.subtract, jvp(delta), rhs)) / jnp.maximum(_norm(rhs), tiny)
    return delta, sol.stats["num_steps"], lin_res


@eqx.filter_jit
def _descent_direction(problem, manifold, state):
    """``−S Jᵀ F`` (the steepest descent of ``||F||²/2``) and ``J`` of it."""
    vel, pullback = jax.vjp(lambda s: _velocity(problem, s), state)
    d = manifold.tangent(state, jax.tree.map(jnp.negative, pullback(vel)[0]))
    jd = jax.jvp(lambda s: _velocity(problem, s), (state,), (d,))[1]
    return d, jd, vel


@eqx.filter_jit
def _step(manifold, state, delta, alpha):
    return manifold.retract(jax.tree.map(lambda x, d: x + alpha * d, state, delta))


@eqx.filter_jit
def _pattern(problem, state):
    weights = problem.to_weights(state)
    pre = jax.vmap(lambda x: problem.model.pre_activations(weights, x))(problem.x_train)
    leaves = [jnp.ravel(z > 0) for z in jax.tree.leaves(pre)]
    return jnp.concatenate(leaves) if leaves else jnp.zeros((0,), bool)


def _pattern_or_none(problem, state):
    try:
        return np.asarray(_pattern(problem, state))
    except NotImplementedError:
        return None


# ---- the solver -----------------------------------------------------------------------------


def _check(
    tol,
    atol,
    max_iter,
    max_backtracks,
    zero_tol,
    lanczos_iter,
    linear_solver,
    forcing,
    gmres_restart,
):
    """Every argument of :func:`equilibrium`, before anything is computed."""

    def number(v):
        return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)

    def count(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

    if not (number(tol) and math.isfinite(tol) and tol > 0):
        raise bad_value("equilibrium", "tol", tol, "use a number > 0")
    if not (number(atol) and math.isfinite(atol) and atol >= 0):
        raise bad_value("equilibrium", "atol", atol, "use a number >= 0")
    for name, value in (("max_iter", max_iter), ("max_backtracks", max_backtracks)):
        if not count(value):
            raise bad_value("equilibrium", name, value, "use an integer >= 1")
    for name, value in (("lanczos_iter", lanczos_iter), ("gmres_restart", gmres_restart)):
        if value is not None and not count(value):
            raise bad_value("equilibrium", name, value, "use an integer >= 1, or None")
    if not (number(zero_tol) and 0 <= zero_tol < 1):
        raise bad_value("equilibrium", "zero_tol", zero_tol, "use a number in [0, 1)")
    if linear_solver not in ("lsmr", "gmres"):
        raise bad_value("equilibrium", "linear_solver", linear_solver, "use 'lsmr' or 'gmres'")
    if forcing is not None and not (number(forcing) and 0 < forcing < 1):
        raise bad_value("equilibrium", "forcing", forcing, "use a number in (0, 1), or None")


def _check_filippov(**values):
    """The ReLU path's arguments of :func:`equilibrium` (one line naming the bad one)."""
    ranges = {
        "switch_tol": (0, 1, False),
        "dying_tol": (0, 1, True),
        "alpha_tol": (0, 1, True),
        "filippov_tol": (0, 1, False),
        "identity_tol": (0, 1, False),
        "flow_tol": (0, 1, False),
        "settled_tol": (0, math.inf, False),
        "flow_time": (0, math.inf, True),
        "join_window": (0, 1, True),
    }
    for name, (low, high, closed) in ranges.items():
        v = values[name]
        ok = isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
        ok = ok and math.isfinite(v) and (v >= low if closed else v > low) and v < high
        if not ok:
            where = f"{'[' if closed else '('}{low:g}, {high:g})"
            raise bad_value("equilibrium", name, v, f"use a number in {where}")
    for name in ("max_changes", "dense_max"):
        v = values[name]
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0):
            raise bad_value("equilibrium", name, v, "use an integer >= 0")


def _sliding(problem, sliding):
    """``sliding`` of :func:`equilibrium` as an ``(N, Z)`` boolean mask, or ``None``."""
    if sliding is None:
        return None
    n = int(np.shape(problem.x_train)[0])
    z = int(np.size(entry_layer(problem.model, problem.x_train)))
    if isinstance(sliding, Trajectory):
        if sliding.seeds is not None or "w0" not in sliding.observables:
            raise bad_value(
                "equilibrium",
                "sliding",
                Shown(f"<a Trajectory with observables {sorted(sliding.observables)}>"),
                'record the run\'s last steps with observables=("weights",) (one trajectory, '
                "no seeds), or pass an (N, Z) boolean mask",
            )
        shapes = [np.shape(w) for w in problem.to_weights(problem.initial_state())]
        saved = [np.asarray(sliding[f"w{k}"]) for k in range(len(shapes))]
        sliding = [
            problem.to_state(tuple(jnp.asarray(w[i].reshape(sh)) for w, sh in zip(saved, shapes)))
            for i in range(len(sliding.t))
        ]
    if isinstance(sliding, (list, tuple)):
        return sliding_evidence(problem, sliding)
    mask = np.asarray(sliding)
    if mask.dtype != bool or mask.shape != (n, z):
        raise bad_value(
            "equilibrium",
            "sliding",
            Shown(f"<an array of dtype {mask.dtype} and shape {mask.shape}>"),
            f"use an ({n}, {z}) boolean mask (samples x hidden pre-activations), a Trajectory of "
            "the run's last steps recorded with the weights observable, or a list of states",
        )
    return mask


def _start(problem, state):
    if state is None:
        return problem.initial_state()
    if isinstance(state, Trajectory):
        if state.seeds is not None:
            raise bad_value(
                "equilibrium",
                "state",
                f"a Trajectory of {len(state.seeds)} seeds",
                "use one state, e.g. jax.tree.map(lambda x: x[i], trajectory.final_state)",
            )
        status = state.stats.get("status", "success")
        finite = all(np.all(np.isfinite(np.asarray(w))) for w in state.final_params)
        if status in ("diverged", "blew_up", "interrupted", "max_steps") or not finite:
            raise bad_value(
                "equilibrium",
                "state",
                Shown(
                    f"<a Trajectory with status {status!r}, t_reached = "
                    f"{state.stats.get('t_reached')}>"
                ),
                "its run failed, and its end is no flow's: start from a successful run, or "
                "pass a state explicitly",
            )
        if state.final_state is None:
            return problem.to_state(tuple(jnp.asarray(w) for w in state.final_params))
        state = state.final_state
    expected = jax.tree.structure(problem.initial_state())
    shapes = [np.shape(x) for x in jax.tree.leaves(problem.initial_state())]
    if jax.tree.structure(state) != expected or [np.shape(x) for x in jax.tree.leaves(state)] != (
        shapes
    ):
        raise bad_value(
            "equilibrium",
            "state",
            f"a {type(state).__name__} of structure {jax.tree.structure(state)}",
            f"use a state of this problem's parametrization ({problem.normalization}): "
            f"structure {expected}, leaf shapes {shapes}",
        )
    dtype = getattr(problem, "dtype", jnp.result_type(float))
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), state)


def equilibrium(
    problem,
    state=None,
    *,
    tol: float = 1e-12,
    atol: float = 0.0,
    max_iter: int = 50,
    max_backtracks: int = 30,
    spectrum: bool = True,
    lanczos_iter: int | None = None,
    zero_tol: float = 1e-8,
    linear_solver: str = "lsmr",
    forcing: float | None = None,
    gmres_restart: int | None = None,
    seed: int = 0,
    switch_tol: float = 1e-2,
    dying_tol: float = 1e-4,
    alpha_tol: float = THRESHOLDS["alpha_tol"],
    filippov_tol: float = THRESHOLDS["filippov_tol"],
    identity_tol: float = THRESHOLDS["identity_tol"],
    flow_time: float = 1.0,
    flow_tol: float = THRESHOLDS["flow_tol"],
    settled_tol: float = 1e-3,
    max_changes: int = 200,
    dense_max: int = 3000,
    sliding=None,
    join_window: float = 0.01,
    max_stall: int | None = None,
) -> FixedPoint:
    """The fixed point of the flow of ``problem`` near ``state``, by Newton–Krylov (module
    docstring), with the Hessian spectrum there.

    Args:
        problem: a :class:`gradflow.Problem` (any parametrization).
        state: the starting state (default: the problem's initial state), or a
            :class:`gradflow.Trajectory` (its final state). LM directions are first retracted
            onto their unit spheres; WN's ``||v_k||`` are kept.
        tol: stop when ``||velocity|| ≤ tol · scale`` (relative to the cancelling terms; the
            default is for float64 — a float32 problem reaches about ``1e-6``).
        atol: or when ``||velocity|| ≤ atol``.
        max_iter: the most Newton iterations.
        max_backtracks: the most halvings of the step in one line search.
        spectrum: compute :func:`gradflow.analysis.hessian_spectrum` at the result.
        lanczos_iter, zero_tol, seed: passed to it (``num_iter``, ``zero_tol``, ``seed``).
        linear_solver: ``"lsmr"`` (Lineax's LSMR: the minimum-norm step, which does not move
            along the zero modes of the symmetries) or ``"gmres"`` (Lineax's GMRES).
        forcing: a fixed relative tolerance ``η`` of the Newton solves instead of the adaptive
            ``η_k = min(10⁻³, 10⁻² r_k)``; a fixed ``η`` gives linear convergence (a control).
        gmres_restart: GMRES's Krylov dimension before a restart (default: the state's size
            up to 200).
        switch_tol, dying_tol, alpha_tol, max_changes, dense_max: ReLU networks only: how
            ``S`` and the dying units are identified, the tolerance on ``α ∈ [0, 1]``, the most
            changes of the active set, and the largest system solved densely
            (:mod:`gradflow.analysis._filippov`).
        sliding: ReLU networks only: the pre-activations that the flow shows sliding, which
            join ``S`` at the start whatever their size (``switch_tol``'s gap finds only those
            decades below the rest): an ``(N, Z)`` boolean mask (samples × hidden
            pre-activations, first hidden layer first), a list of the states of the run's last
            steps, or a :class:`gradflow.Trajectory` of them recorded with
            ``observables=("weights",)``, e.g. a short fixed-step tail saved at every step
            (:func:`gradflow.analysis.sliding_evidence`: the entries whose sign changes back
            and forth between consecutive states; a fixed-step scheme chatters across the
            surfaces the flow slides on). The start's relative residual is measured with this
            ``S``. A seeded solve that is not certified is done again without the seed, and the
            certified one (else the one of smaller relative residual) is returned, its message
            saying so.
        join_window: ReLU networks only: when a Newton step would flip signs off ``S``, it is
            cut where the first entry reaches zero (at the fraction ``τ_min`` of the step), and
            every entry that would reach zero by ``τ_min + join_window`` and is already within
            the current relative residual of zero joins ``S`` with it (0: the first alone, one
            join per iteration, the rule before 0.2.0). The cut is located on the retracted
            point's pre-activations by bisection, and a joining entry keeps its slope (its
            multiplier starts where the field is continuous), so a join does not raise the
            residual.
        max_stall: ReLU networks only: stop when the relative residual has not halved in
            ``max_stall`` consecutive Newton iterations (counted afresh after each drop from
            ``S``; default None: never). Newton on the right active set halves it at every step;
            a long crawl is a start that had not settled or an ``S`` that is wrong, and its
            failure is then said at that cost, not after ``max_iter`` iterations.
        filippov_tol, identity_tol, flow_time, flow_tol, settled_tol: ReLU networks only: the
            certificate's thresholds, the length of the short flow from the point (0: none),
            and the start's relative residual above which a failure is put down to a flow
            that had not settled (:mod:`gradflow.analysis._certificate`; so is a failure whose
            first Newton step is longer than ``SETTLED_STEP = 0.01`` of the state).

    For a ReLU network (:class:`gradflow.models.MLP` with ReLU, :class:`gradflow.models.LocalCNN`)
    without frozen directions, the point is a **Filippov equilibrium** (THEORY 3.6), found by
    Newton on the multiplier system with an active set and returned with a
    :class:`gradflow.analysis.Certificate`; ``FixedPoint.certified`` says whether every check
    passed and ``certificate.verdict`` why not. The point returned is never worse (relative
    residual) than the start: if the solve ends worse, the start is returned.

    Returns:
        A :class:`FixedPoint`.
    """
    _check(
        tol,
        atol,
        max_iter,
        max_backtracks,
        zero_tol,
        lanczos_iter,
        linear_solver,
        forcing,
        gmres_restart,
    )
    _check_filippov(
        switch_tol=switch_tol,
        dying_tol=dying_tol,
        alpha_tol=alpha_tol,
        filippov_tol=filippov_tol,
        identity_tol=identity_tol,
        flow_time=flow_time,
        flow_tol=flow_tol,
        settled_tol=settled_tol,
        max_changes=max_changes,
        dense_max=dense_max,
        join_window=join_window,
    )
    if max_stall is not None and not (
        isinstance(max_stall, (int, np.integer))
        and not isinstance(max_stall, bool)
        and max_stall >= 1
    ):
        raise bad_value("equilibrium", "max_stall", max_stall, "use an integer >= 1, or None")
    state = _start(problem, state)
    if has_switching(problem.model) and not problem.freeze_directions:
        return _filippov(
            problem,
            state,
            dict(
                tol=tol,
                filippov_tol=filippov_tol,
                alpha_tol=alpha_tol,
                identity_tol=identity_tol,
                flow_tol=flow_tol,
            ),
            dict(
                switch_tol=switch_tol,
                dying_tol=dying_tol,
                alpha_tol=alpha_tol,
                max_iter=max_iter,
                max_changes=max_changes,
                max_backtracks=max_backtracks,
                dense_max=dense_max,
                sliding=_sliding(problem, sliding),
                join_window=join_window,
                max_stall=max_stall,
            ),
            flow_time=flow_time,
            settled_tol=settled_tol,
            spectrum=spectrum,
            spectrum_options=dict(num_iter=lanczos_iter, zero_tol=zero_tol, seed=seed),
        )
    manifold = StateManifold.of(problem, state)
    state = manifold.retract(state)
    flat = ravel_pytree(state)[0]
    size, dtype = int(flat.size), flat.dtype
    restart = min(size, 200) if gmres_restart is None else int(gmres_restart)
    floor = 10 * float(np.finfo(dtype).eps)  # the smallest useful Krylov tolerance
    max_steps = 4 * restart if linear_solver == "gmres" else 10 * size

    def measure(s):
        r, scale = (float(v) for v in _residual(problem, s))
        rel = 0.0 if r == 0 else (r / scale if scale > 0 else math.inf)
        return r, rel

    pattern0 = _pattern_or_none(problem, state)
    flips = None if pattern0 is None else [0]
    r, rel = measure(state)
    residuals, relatives, steps, lin_steps, lin_res = [r], [rel], [], [], []
    message = f"max_iter = {max_iter} reached"
    converged = False
    for _ in range(max_iter):
        if rel <= tol or r <= atol:
            converged, message = True, "tolerance reached"
            break
        eta = max(min(1e-3, 1e-2 * rel), floor) if forcing is None else forcing
        delta, nsteps, lres = _newton_direction(
            problem, manifold, state, jnp.asarray(eta, dtype), linear_solver, restart, max_steps
        )
        lin_steps.append(int(nsteps))
        lin_res.append(float(lres))
        accepted = None
        alpha = 1.0
        for _ in range(max_backtracks):
            trial = _step(manifold, state, delta, jnp.asarray(alpha, dtype))
            r_trial, rel_trial = measure(trial)
            if np.isfinite(r_trial) and r_trial <= (1 - 1e-4 * alpha) * r:
                accepted = (trial, r_trial, rel_trial, alpha)
                break
            alpha /= 2
        if accepted is None:  # the Newton direction does not reduce ||F||: steepest descent
            d, jd, vel = _descent_direction(problem, manifold, state)
            jd2 = float(_norm(jd)) ** 2
            alpha = -float(
                sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(vel), jax.tree.leaves(jd)))
            )
            alpha = alpha / jd2 if jd2 > 0 else 0.0
            for _ in range(max_backtracks if alpha > 0 else 0):
                trial = _step(manifold, state, d, jnp.asarray(alpha, dtype))
                r_trial, rel_trial = measure(trial)
                if np.isfinite(r_trial) and r_trial < r:
                    accepted = (trial, r_trial, rel_trial, -alpha)
                    break
                alpha /= 2
        if accepted is None:
            message = "no step reduces the residual (at the rounding floor, or stuck)"
            break
        state, r, rel, alpha = accepted
        residuals.append(r)
        relatives.append(rel)
        steps.append(alpha)
        if flips is not None:
            flips.append(int(np.sum(_pattern_or_none(problem, state) != pattern0)))
    else:
        if rel <= tol or r <= atol:
            converged, message = True, "tolerance reached"
    spec = (
        hessian_spectrum(problem, state, num_iter=lanczos_iter, zero_tol=zero_tol, seed=seed)
        if spectrum
        else None
    )
    return FixedPoint(
        state=state,
        converged=converged,
        iterations=len(steps),
        residuals=np.asarray(residuals),
        relative_residuals=np.asarray(relatives),
        steps=np.asarray(steps),
        linear_steps=np.asarray(lin_steps, dtype=int),
        linear_residuals=np.asarray(lin_res),
        pattern_flips=None if flips is None else np.asarray(flips),
        pattern_changed=bool(flips is not None and max(flips) > 0),
        spectrum=spec,
        message=message,
    )


def _filippov(problem, state, thresholds, options, **kwargs) -> FixedPoint:
    """The ReLU path of :func:`equilibrium`: solve, never worse than the start, certify; a
    solve from a seeded ``S`` (``sliding``) that is not certified is done again without the
    seed, and the certified one (else the one of smaller relative residual) is returned."""
    point = _filippov_once(problem, state, thresholds, options, **kwargs)
    if options.get("sliding") is None or point.certified:
        return point
    again = _filippov_once(problem, state, thresholds, {**options, "sliding": None}, **kwargs)
    seeded = (
        f"from the S seeded by the flow's evidence: {point.certificate.verdict} "
        f"({point.relative_residual:.2e}, {point.iterations} iterations)"
    )
    if again.certified or again.relative_residual < point.relative_residual:
        return dataclasses.replace(
            again, message=f"{again.message}; without the seed (the solve {seeded})"
        )
    return dataclasses.replace(
        point, message=f"{point.message}; {seeded}, and without it: {again.certificate.verdict}"
    )


def _filippov_once(
    problem, state, thresholds, options, *, flow_time, settled_tol, spectrum, spectrum_options
) -> FixedPoint:
    """One solve from ``options``' S, never worse than the start, certified."""
    sol, template, manifold, flat0 = filippov_solve(
        problem, state, tol=thresholds["tol"], filippov_tol=thresholds["filippov_tol"], **options
    )
    rels = sol.relative_residuals
    flat = sol.flat
    message = sol.message
    if not rels[-1] <= rels[0]:  # never return a point worse than the start
        first_step = sol.first_step  # what the solve's first step said of the start
        sol, template, manifold, flat0 = filippov_solve(
            problem,
            state,
            tol=thresholds["tol"],
            filippov_tol=thresholds["filippov_tol"],
            **{**options, "max_iter": 0},
        )
        sol.message = message = (
            f"{message}; the point found (relative residual {rels[-1]:.2e}) was worse than the "
            f"start ({rels[0]:.2e}), so the start is returned"
        )
        sol.relative_residuals = [rels[0], rels[0]]
        sol.first_step = first_step
        flat = flat0
    cert = certify(
        problem,
        sol,
        template,
        manifold,
        flat,
        thresholds=thresholds,
        flow_time=flow_time,
        settled_tol=settled_tol,
        start_flat=flat0,
    )
    point = ravel_pytree(template)[1](jnp.asarray(flat))
    spec = hessian_spectrum(problem, point, **spectrum_options) if spectrum else None
    if spec is not None and not cert.certified:
        spec = dataclasses.replace(spec, kind="uncertified")
    rel = np.asarray(sol.relative_residuals[1:])  # the iterates (the start: certificate)
    steps = np.asarray(sol.steps[: len(rel) - 1], dtype=float)
    return FixedPoint(
        state=point,
        converged=bool(sol.solved and rel[-1] <= thresholds["tol"]),
        iterations=len(steps),
        residuals=rel,
        relative_residuals=rel,
        steps=steps,
        linear_steps=np.zeros(len(steps), dtype=int),
        linear_residuals=np.zeros(len(steps)),
        pattern_flips=np.asarray([0] + list(sol.changes[: len(steps)]), dtype=int),
        pattern_changed=bool(cert.joins + cert.drops > 0 or cert.sign_flips > 0),
        spectrum=spec,
        message=message,
        certificate=cert,
    )
