"""The certificate of a Filippov equilibrium (THEORY 3.6, 4.9): what was checked, with numbers.

A point is **certified** only when every check passes at its stated threshold:

* the multiplier system's relative residual ``≤ tol`` (``||T(G_0 + Cᵀμ)||`` over the sum of the
  norms of the cancelling terms, and ``max |z_S| / rms_k``), and the Filippov gradient with the
  slopes ``α`` themselves, ``||T G(W, α)||`` over the same scale, ``≤ filippov_tol``;
* every ``α ∈ [−alpha_tol, 1 + alpha_tol]``;
* no pre-activation off ``S`` has a sign other than the start's pattern (entries that joined
  ``S`` are on it);
* THEORY 4.9 per layer: ``(2/N) K^k r = λ F`` (Plain; every layer decayed) or
  ``(2/N) K^k_V r = s f`` (LM, WN: every direction at rest), relative defect
  ``||lhs − rhs|| / (||lhs|| + ||rhs||) ≤ identity_tol``, with the Jacobians taken at the slopes
  ``α`` (the identities hold for every slope at ``z = 0``);
* a short flow (``gf.flow`` for ``flow_time``, default tolerances) from the point stays:
  relative drift of the state ``≤ flow_tol`` (default ``1e-4``, the flow's ``rtol``) and no
  sign change off ``S`` at its end.

Reported without a threshold: the Hessian of the Lagrangian restricted to the sliding manifold
(``ker C`` on the tangent space, dying weights held), its eigen-range and kind; the counts
(``|S|``, dying units, flat directions = the numerically zero singular values of the system);
and whether zero is stable for each dying unit: with ``g(â) = ∇_b L`` at incoming weights ``â``
(unit norm) and outgoing weights ``b = 0``, the second variation ``2⟨b, g(a)⟩ + μ_a|a|² +
μ_b|b|²`` (``μ = λ`` for Plain; ``−⟨v, ∇_v L⟩/r²``, the curvature of the sphere, for LM and WN)
is positive iff ``||g(â)|| < √(μ_a μ_b)`` for every ``â``. The maximum is *sampled* (random
directions), a lower estimate of the supremum. A ratio ``≥ 1`` means the unit can revive along
some direction: the point is an equilibrium (the dying weights' gradient is exactly zero) but
a saddle, and the Hessian's kind says so.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..dynamics import flow
from ._dying_units import dying_ratio
from ._multiplier_system import (
    filippov_gradient,
    jacobian,
    measure,
    pre_activations,
    relative_residual,
    system_aux,
)
from ._sliding_hessian import hessian_kind, restricted_hessian
from ._stationarity_identity import identity_defects

#: The default thresholds of a certificate (``gf.equilibrium``'s keyword arguments).
THRESHOLDS = {
    "tol": 1e-12,
    "filippov_tol": 1e-10,
    "alpha_tol": 1e-9,
    "identity_tol": 1e-9,
    "flow_tol": 1e-4,
}


#: A first Newton step longer than this fraction of the state means the start is not near the
#: equilibrium its own S points to (measured on the neural_collapse nets at λ·t = 20: relative
#: residual 1e-4, a settled-looking start, but a first step of 73% of the state).
SETTLED_STEP = 0.01

#: A certified point farther than this fraction of the state from the solve's start (the
#: flow's end) is an equilibrium, but not shown to be the limit of the flow that reached the
#: start (:attr:`Certificate.flow_limit`): the same bound as :data:`SETTLED_STEP`, the distance
#: beyond which the start is not near the equilibrium its own S points to.
LIMIT_DISTANCE = SETTLED_STEP


@dataclasses.dataclass(frozen=True)
class Certificate:
    """What :func:`gradflow.equilibrium` checked at a ReLU network's point (module docstring).

    Attributes:
        certified: every check passed.
        verdict: ``"certified"``, ``"not settled"``, ``"stuck on switching surfaces"``,
            ``"rounding floor"``, ``"not converged"``, or ``"not checked"`` (every check
            passed but the short flow was not run, ``flow_time = 0``).
        reasons: one line per failed check, with its numbers (empty when certified).
        relative_residual: of the multiplier system.
        filippov_residual: ``||T G(W, α)||`` relative to the same scale.
        alpha_range: ``(min α, max α)`` over ``S`` (``None`` when ``S`` is empty).
        sign_flips: pre-activations off ``S`` whose sign differs from the start's pattern.
        identity_defects: THEORY 4.9's relative defect, one per layer.
        dying_ratio: sampled ``max ||g(â)|| / √(μ_a μ_b)`` over the dying units (< 1: zero is
            stable for them; ``None`` without dying units, and for WN, whose loss does not see
            ``||v_k||``).
        flow_drift: ``max ||x(t) − x|| / ||x||`` of the short flow (``None``: not run).
        flow_sign_changes: sign changes off ``S`` at the end of the short flow.
        hessian_range: eigen-range of the Hessian restricted to the sliding manifold.
        hessian_kind: ``"minimum"``, ``"saddle"`` or ``"degenerate"`` there (only meaningful
            when certified).
        n_switching, n_dying, n_flat: ``|S|``, dying units, flat directions.
        joins, drops: the active set's changes.
        distance: ``||x − x_start|| / ||x_start||``.
        start_residual: the start's relative residual (its own ``S``, best multipliers).
        thresholds: the thresholds used.
        switching: ``(|S|, 2)``: sample and pre-activation (flat index over the hidden layers,
            first layer first) of each entry of ``S``.
        alpha: the slopes ``α`` on ``S``, in that order.
        dying: ``(hidden layer, unit)`` of each dying unit (0-based).
        first_step: ``||δx|| / ||x||`` of the solve's first Newton step: how far the
            linearization at the start puts the equilibrium of the start's ``S`` (``None``: no
            Newton step was taken). Above :data:`SETTLED_STEP` a failure is put down to a flow
            that had not settled, whatever the start's residual.
    """

    certified: bool
    verdict: str
    reasons: tuple[str, ...]
    relative_residual: float
    filippov_residual: float
    alpha_range: tuple[float, float] | None
    sign_flips: int
    identity_defects: tuple[float, ...]
    dying_ratio: float | None
    flow_drift: float | None
    flow_sign_changes: int | None
    hessian_range: tuple[float, float] | None
    hessian_kind: str | None
    n_switching: int
    n_dying: int
    n_flat: int | None
    joins: int
    drops: int
    distance: float
    start_residual: float
    thresholds: dict
    switching: np.ndarray
    alpha: np.ndarray
    dying: tuple
    first_step: float | None = None

    @property
    def flow_limit(self) -> str | None:
        """Whether the certified point may be taken for the limit of the flow whose end the
        solve started from (``None`` when not certified): ``"the flow's limit"`` when it is
        within :data:`LIMIT_DISTANCE` of the start and its Hessian on the sliding manifold is
        not a saddle (a minimum, or degenerate along flat directions); else
        ``"another equilibrium"`` (farther: the flow had not got there, and a Newton solve
        may find any equilibrium of the start's active set) or ``"a saddle near the start"``
        (the flow may yet leave it; an unsettled flow slows down near saddles). The short
        flow of the certificate shows that the point is an equilibrium, not that it is this
        flow's limit; this is the evidence for the latter."""
        if not self.certified:
            return None
        if not self.distance <= LIMIT_DISTANCE:
            return "another equilibrium"
        if self.hessian_kind == "saddle":
            return "a saddle near the start"
        return "the flow's limit"

    def record(self) -> dict:
        """The certificate as plain JSON values (for a results file): every attribute but the
        per-entry arrays ``switching``, ``alpha`` and ``dying`` (their sizes are
        ``n_switching`` and ``n_dying``); tuples become lists, NumPy scalars Python numbers."""

        def plain(value):
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            if hasattr(value, "dtype") and np.ndim(value) == 0:  # NumPy or JAX scalars
                return np.asarray(value).item()
            return value

        skip = {"switching", "alpha", "dying"}
        fields = {
            f.name: plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in skip
        }
        return {**fields, "flow_limit": self.flow_limit}

    def describe(self) -> str:
        head = (
            "certified Filippov equilibrium"
            if self.certified
            else f"NOT certified ({self.verdict})"
        )
        a = "none" if self.alpha_range is None else "[{:.3g}, {:.3g}]".format(*self.alpha_range)
        lines = [
            f"{head}: relative residual {self.relative_residual:.2e} (start "
            f"{self.start_residual:.2e}), Filippov residual {self.filippov_residual:.2e}, "
            f"alpha in {a}, {self.sign_flips} sign flips off S",
            f"|S| = {self.n_switching}, dying units {self.n_dying}"
            + ("" if self.dying_ratio is None else f" (stability ratio {self.dying_ratio:.3g})")
            + f", flat directions {self.n_flat}, active-set joins {self.joins}, drops "
            f"{self.drops}; {100 * self.distance:.3g}% from the start",
            "THEORY 4.9 defects per layer: " + " ".join(f"{d:.1e}" for d in self.identity_defects),
        ]
        if self.flow_drift is not None:
            lines.append(
                f"short flow from the point: drift {self.flow_drift:.2e}, "
                f"{self.flow_sign_changes} sign changes off S"
            )
        if self.hessian_range is not None:
            lines.append(
                "Hessian on the sliding manifold: eigenvalues in [{:.4g}, {:.4g}]".format(
                    *self.hessian_range
                )
                + (f" ({self.hessian_kind})" if self.certified else " (no kind: not certified)")
            )
        if self.certified:
            kind = (
                "Hessian on S not computed"
                if self.hessian_kind is None
                else f"Hessian on S: {self.hessian_kind}"
            )
            near = f"{100 * self.distance:.3g}% from the start, {kind}"
            bound = f"{100 * LIMIT_DISTANCE:g}%"
            lines.append(
                {
                    "the flow's limit": f"the flow's limit: {near} (within {bound})",
                    "another equilibrium": (
                        f"another equilibrium, not shown to be the flow's limit: {near} "
                        f"(> {bound}; run the flow longer)"
                    ),
                    "a saddle near the start": (
                        f"a saddle near the start, not shown to be the flow's limit: {near}"
                    ),
                }[self.flow_limit]
            )
        lines += [f"failed: {r}" for r in self.reasons]
        return "\n".join(lines)


def flat_norm(state) -> float:
    return float(jnp.linalg.norm(ravel_pytree(state)[0]))


# ---- the certificate from a solve -----------------------------------------------------------


def _ratio(num: float, den: float) -> float:
    """``num / den``, 0 where ``num = 0`` (the zero state: nothing to measure, not 0/0) and
    ``inf`` where only ``den = 0``."""
    if num == 0:
        return 0.0
    return num / den if den > 0 else float("inf")


def _verdict(sol, failed: dict, start_rel: float, final_rel: float, tol: float) -> str:
    if not failed:
        return "certified"
    if list(failed) == ["unchecked"]:
        return "not checked"
    if "settled" in failed:  # the start explains the failure before the path does
        return "not settled"
    if (
        sol.cycled
        or sol.message.startswith("max_changes")
        or (sol.message.startswith("stalled") and sol.joins + sol.drops > 0)
    ):
        return "stuck on switching surfaces"
    if "flow" in failed or "signs" in failed:
        return "not settled"
    if not sol.solved and final_rel <= 1e3 * np.finfo(float).eps:
        return "rounding floor"
    return "not converged"


def certify(
    problem,
    sol,
    template,
    manifold,
    flat,
    *,
    thresholds: dict,
    flow_time: float,
    settled_tol: float,
    start_flat,
) -> Certificate:
    """The :class:`Certificate` of the point ``flat`` found by a solve (module docstring)."""
    state_of = ravel_pytree(template)[1]
    state = state_of(jnp.asarray(flat))
    total = sol.pattern.size
    aux = system_aux(sol.free, sol.s, sol.pattern, total)
    cap = aux[1].size
    mu_p = np.zeros(cap)
    mu_p[: len(sol.s)] = sol.mu
    rel = relative_residual(
        problem, manifold, template, jnp.asarray(flat), jnp.asarray(mu_p), aux, sol.zscale
    )
    _, scale, _ = (
        float(v)
        for v in measure(
            problem, manifold, template, jnp.asarray(flat), jnp.asarray(mu_p), aux, sol.zscale
        )
    )
    fg = filippov_gradient(
        problem, manifold, template, jnp.asarray(flat), jnp.asarray(sol.slopes), aux[0]
    )
    fil = _ratio(float(jnp.linalg.norm(fg)), scale)
    alpha = sol.alpha
    a_range = (float(alpha.min()), float(alpha.max())) if alpha.size else None
    z = np.asarray(pre_activations(problem, template, jnp.asarray(flat), sol.pattern)).ravel()
    off = np.ones(total, bool)
    off[sol.s] = False
    want = sol.pattern.ravel() > 0
    dead = sol.dead  # the dying units' entries: z = 0 identically, no sign
    flips = int(np.sum(off & ~dead & ((z > 0) != want)))
    defects = tuple(float(d) for d in identity_defects(problem, state, jnp.asarray(sol.slopes)))
    ratio = dying_ratio(problem, state, sol.dying)
    h_range = kind = None
    if sol.jac is not None:
        # the multipliers ν of the spheres (their values do not enter the Hessian's Jacobian
        # blocks); counted from the manifold, not from ``sol.jac``, which is the last Newton
        # step's and has another size when S changed after it
        n_nu = 0 if manifold.kind == "euclidean" else len(template["v"])
        u = np.concatenate([flat, mu_p, np.zeros(n_nu)])
        jac = np.asarray(jacobian(problem, manifold, template, jnp.asarray(u), aux))
        eig = restricted_hessian(jac, flat.size, len(sol.s), cap, sol.free)
        if eig.size:
            h_range, kind = (float(eig[0]), float(eig[-1])), hessian_kind(eig)
    drift = changes = None
    if flow_time > 0:
        tr = flow(problem, t1=flow_time, state0=state, save_every=flow_time / 4)
        ends = ravel_pytree(tr.final_state)[0]
        x0 = np.asarray(flat)
        drift = _ratio(float(np.linalg.norm(np.asarray(ends) - x0)), float(np.linalg.norm(x0)))
        z_end = np.asarray(pre_activations(problem, template, ends, sol.pattern)).ravel()
        changes = int(np.sum(off & ~dead & ((z_end > 0) != want)))
    distance = _ratio(float(np.linalg.norm(flat - start_flat)), float(np.linalg.norm(start_flat)))
    t = thresholds
    failed = {}
    if not sol.solved:
        failed["solve"] = f"the solve did not finish: {sol.message}"
    if not rel <= t["tol"]:
        failed["residual"] = f"relative residual {rel:.2e} > tol = {t['tol']:g}"
    if not fil <= t["filippov_tol"]:
        failed["filippov"] = (
            f"Filippov residual with the slopes alpha {fil:.2e} > {t['filippov_tol']:g}"
        )
    if a_range is not None and not (
        a_range[0] >= -t["alpha_tol"] and a_range[1] <= 1 + t["alpha_tol"]
    ):
        failed["alpha"] = f"alpha in [{a_range[0]:.3g}, {a_range[1]:.3g}], outside [0, 1]"
    if flips:
        failed["signs"] = f"{flips} pre-activations off S changed sign"
    worst = max(defects, default=0.0)
    if not worst <= t["identity_tol"]:
        failed["identity"] = f"THEORY 4.9 defect {worst:.2e} > {t['identity_tol']:g}"
    if ratio is not None and not ratio < 1 and kind is not None:
        kind = "saddle"  # a dying unit can revive along a direction of its cone
    if drift is None:
        failed["unchecked"] = "the short flow was not run (flow_time = 0): not certifiable"
    elif not (drift <= t["flow_tol"] and changes == 0):
        failed["flow"] = (
            f"a flow of t = {flow_time:g} from the point moves {drift:.2e} (> {t['flow_tol']:g}) "
            f"or changes {changes} signs off S: not the flow's limit"
        )
    start_rel = sol.relative_residuals[0]
    if failed and start_rel > settled_tol:
        failed["settled"] = (
            f"the start's relative residual {start_rel:.2e} > {settled_tol:g}: the flow had not "
            "settled (run it longer, lambda t >= 20)"
        )
    elif failed and sol.first_step is not None and sol.first_step > SETTLED_STEP:
        failed["settled"] = (
            f"the first Newton step moves the state by {sol.first_step:.2e} of its norm "
            f"(> {SETTLED_STEP:g}): the equilibrium the start's S points to is that far, so the "
            "flow had not settled (run it longer)"
        )
    return Certificate(
        certified=not failed,
        verdict=_verdict(sol, failed, start_rel, rel, t["tol"]),
        reasons=tuple(failed.values()),
        relative_residual=rel,
        filippov_residual=fil,
        alpha_range=a_range,
        sign_flips=flips,
        identity_defects=defects,
        dying_ratio=ratio,
        flow_drift=drift,
        flow_sign_changes=changes,
        hessian_range=h_range,
        hessian_kind=kind,
        n_switching=len(sol.s),
        n_dying=len(sol.dying),
        n_flat=sol.n_flat,
        joins=sol.joins,
        drops=sol.drops,
        distance=distance,
        start_residual=start_rel,
        thresholds=dict(t),
        switching=np.stack(np.divmod(np.asarray(sol.s, int), sol.pattern.shape[1]), axis=1),
        alpha=np.asarray(alpha),
        dying=tuple(sol.dying),
        first_step=sol.first_step,
    )
