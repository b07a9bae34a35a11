"""Three-valued verdicts that print the regime they were reached in.

A figure checks a claim of the theory (docs/theory.md) that holds only under hypotheses: the
margin and neural-collapse claims (4.3, 4.4, 4.8) concern near-interpolating equilibria of the
decayed flows, the low-rank claim (4.6) near-interpolating solutions after a long exposure to
the decay, convergence orders (ODE theory) smooth right-hand sides. So every verdict line says,
beside the claim, *where* it was judged, and is one of

* **borne out** — every judged point is inside the claim's hypotheses and the claim holds there;
* **NOT borne out** — every judged point is inside the hypotheses and the claim fails there;
* **outside the claim's hypotheses** — some judged point's regime contradicts them: the run is
  no evidence either way (the numbers that put it there are printed).

:class:`Regime` holds the numbers that decide (train accuracy; ε = (λ/2)·ρ_d² of 4.3, ρ_d the
norm of a decayed layer, and the largest residual ``max_n |1 − y_n ρ f_n|`` — or the SQI defect δ
of 4.8 for several classes; the decay exposure λ·t, ``ηλ·steps`` for SGD; how settled the run
is); :class:`Hypotheses` the bounds a claim needs; :func:`judge` the verdict word. The words are
exactly :data:`BORNE_OUT`, :data:`NOT_BORNE_OUT` and :data:`OUTSIDE` (tests/test_figs.py parses
them; "NOT borne out" contains "borne out", and the regime text never uses either phrase).
"""

from __future__ import annotations

import dataclasses

import numpy as np

BORNE_OUT = "borne out"
NOT_BORNE_OUT = "NOT borne out"
OUTSIDE = "outside the claim's hypotheses"
WORDS = (BORNE_OUT, NOT_BORNE_OUT, OUTSIDE)


@dataclasses.dataclass(frozen=True)
class Regime:
    """Where one point of a figure ended: the numbers that say whether a claim applies there.

    Attributes (None: not measured, or not relevant to the claim):
        label: the point in words (``"λ=0.01"``).
        train_acc: training accuracy at the end.
        eps: THEORY 4.3's ε ≈ (λ/2)·ρ_d², ρ_d the Frobenius norm of a decayed layer (the last
            layer's scale ρ in LM-last).
        residual: ``max_n |1 − y_n ρ f_n|`` (binary) or the SQI defect δ (several classes).
        residual_name: how ``residual`` is printed (``"max|1−yρf|"`` or ``"δ"``).
        exposure: the decay's exposure λ·t (flow), ``ηλ·steps`` (SGD).
        exposure_name: how ``exposure`` is printed.
        settled: the relative change of the judged quantity over the run's last quarter.
        extra: further numbers, printed as ``name value`` (pairs).
        outside: reasons, found by the figure itself, why the point is outside the claim's
            hypotheses whatever the bounds (e.g. a ReLU right-hand side for a convergence order).
    """

    label: str
    train_acc: float | None = None
    eps: float | None = None
    residual: float | None = None
    residual_name: str = "max|1−yρf|"
    exposure: float | None = None
    exposure_name: str = "λ·t"
    settled: float | None = None
    extra: tuple = ()
    outside: tuple = ()

    def text(self, hyp: Hypotheses | None = None) -> str:
        """``label: train acc 1.000, ε 0.012, max|1−yρf| 0.08, λ·t 24, settled 3e-04`` and,
        with ``hyp``, ``(inside)`` or ``(out: λ·t < 20, ...)``."""
        parts = []
        if self.train_acc is not None:
            parts.append(f"train acc {self.train_acc:.3f}")
        if self.eps is not None:
            parts.append(f"ε {self.eps:.2g}")
        if self.residual is not None:
            parts.append(f"{self.residual_name} {self.residual:.2g}")
        if self.exposure is not None:
            parts.append(f"{self.exposure_name} {self.exposure:.3g}")
        if self.settled is not None:
            parts.append(f"settled {self.settled:.1e}")
        parts += [f"{name} {value}" for name, value in self.extra]
        text = f"{self.label}: " + ", ".join(parts)
        if hyp is not None:
            why = hyp.violations(self)
            text += " (out: " + ", ".join(why) + ")" if why else " (in)"
        return text


@dataclasses.dataclass(frozen=True)
class Hypotheses:
    """The bounds a claim's hypotheses put on a :class:`Regime` (None: no bound).

    A point is *inside* when ``train_acc ≥ min_train_acc``, ``eps ≤ max_eps``,
    ``residual ≤ max_residual``, ``exposure ≥ min_exposure`` and ``settled ≤ max_settled``; a
    number the bound needs but the regime lacks counts as a violation (it was not shown).
    """

    min_train_acc: float | None = None
    max_eps: float | None = None
    max_residual: float | None = None
    min_exposure: float | None = None
    max_settled: float | None = None

    def violations(self, r: Regime) -> list[str]:
        """What puts ``r`` outside, in words (empty: inside)."""
        out = list(r.outside)
        checks = (
            (self.min_train_acc, r.train_acc, "train acc", "<", lambda v, b: v >= b),
            (self.max_eps, r.eps, "ε", ">", lambda v, b: v <= b),
            (self.max_residual, r.residual, r.residual_name, ">", lambda v, b: v <= b),
            (self.min_exposure, r.exposure, r.exposure_name, "<", lambda v, b: v >= b),
            (self.max_settled, r.settled, "settled", ">", lambda v, b: v <= b),
        )
        for bound, value, name, sign, ok in checks:
            if bound is None:
                continue
            if value is None or not np.isfinite(value):
                out.append(f"{name} not measured")
            elif not ok(value, bound):
                out.append(f"{name} {sign} {bound:g}")
        return out

    def inside(self, r: Regime) -> bool:
        return not self.violations(r)

    def text(self) -> str:
        """The bounds in words: ``train acc ≥ 1, ε ≤ 0.1, λ·t ≥ 20``."""
        parts = []
        for bound, words in (
            (self.min_train_acc, "train acc ≥ {:g}"),
            (self.max_eps, "ε ≤ {:g}"),
            (self.max_residual, "residual ≤ {:g}"),
            (self.min_exposure, "exposure ≥ {:g}"),
            (self.max_settled, "settled ≤ {:g}"),
        ):
            if bound is not None:
                parts.append(words.format(bound))
        return ", ".join(parts) or "none"


#: THEORY 4.3: the margin and collapse claims (4.4, 4.8) concern near-interpolating equilibria
#: of the decayed flows: every training point fitted, ε small, every residual small, and the
#: decay's time scale 1/λ passed twenty times (λ·t ≥ 20).
QUASI_INTERPOLATION = Hypotheses(
    min_train_acc=1.0, max_eps=0.1, max_residual=0.5, min_exposure=20.0
)
#: Without decay the same claims compare against interpolating runs: train accuracy 1.
INTERPOLATION = Hypotheses(min_train_acc=1.0)


def _pairs(points, hyp):
    """``points``: regimes (with one ``hyp`` for all) or (regime, hypotheses) pairs."""
    return [p if isinstance(p, tuple) else (p, hyp) for p in points]


def judge(holds: bool, points, hyp: Hypotheses | None = None) -> str:
    """The verdict word for a claim judged at ``points`` (regimes judged against ``hyp``, or
    (regime, hypotheses) pairs): :data:`OUTSIDE` if any of them violates its hypotheses (or
    there are none), else :data:`BORNE_OUT` or :data:`NOT_BORNE_OUT` as ``holds`` says."""
    pairs = _pairs(points, hyp)
    if not pairs or any(not h.inside(r) for r, h in pairs):
        return OUTSIDE
    return BORNE_OUT if holds else NOT_BORNE_OUT


def regime_text(points, hyp: Hypotheses | None = None) -> str:
    """``regime [a: ... (in); b: ... (out: ...)]``: every point's numbers and whether it is
    inside its hypotheses (``hyp`` for all, or (regime, hypotheses) pairs); the hypotheses are
    stated once where they are shared."""
    pairs = _pairs(points, hyp)
    shared = {h for _, h in pairs}
    head = f"regime (hypotheses: {pairs[0][1].text()}) " if len(shared) == 1 else "regime "
    return head + "[" + "; ".join(r.text(h) for r, h in pairs) + "]"


def line(
    name: str,
    predicted: str,
    measured: str,
    points,
    hyp: Hypotheses | None,
    word: str,
    why: str = "",
) -> str:
    """One verdict line: ``NAME: predicted ...; measured ...; regime ...: WORD (why)``."""
    if word not in WORDS:
        raise ValueError(f"word={word!r} is not allowed; use one of {', '.join(map(repr, WORDS))}")
    return (
        f"{name}: predicted {predicted}; measured {measured}; {regime_text(points, hyp)}: "
        f"{word}" + (f" ({why})" if why else "")
    )


def decayed_norm2(rho_k, normalization: str) -> float:
    """ρ_d² of THEORY 4.3's ε: the squared norm of a decayed layer (LM-last: the last layer's
    scale; otherwise the mean over the layers, equal at the balanced equilibrium)."""
    rho_k = np.asarray(rho_k, dtype=float)
    if normalization == "lm-last":
        return float(rho_k[-1] ** 2)
    return float(np.mean(rho_k**2))


def binary_residual(outputs, targets) -> float:
    """``max_n |1 − y_n F_n|`` for outputs ``F`` (of the network with its scale ρ) and ±1
    targets, both shape (N,) or (N, 1)."""
    f = np.ravel(np.asarray(outputs, dtype=float))
    y = np.ravel(np.asarray(targets, dtype=float))
    return float(np.max(np.abs(1.0 - y * f)))


def sqi_defect(outputs, targets) -> tuple[float, float]:
    """THEORY 4.8's SQI defect ``δ = max_n ||F_n − (1 − ε̄) y_n|| / ||y_n||`` of outputs ``F``
    (N, C) against the targets ``y`` they were trained on (centred ``ỹ_n`` or one-hot rows), with
    ``ε̄ = 1 − Σ⟨F_n, y_n⟩ / Σ||y_n||²`` the least-squares common shortfall; returns (δ, ε̄)."""
    f = np.asarray(outputs, dtype=float)
    y = np.asarray(targets, dtype=float)
    eps_bar = 1.0 - float(np.sum(f * y) / np.sum(y * y))
    norms = np.linalg.norm(y, axis=1)
    return float(np.max(np.linalg.norm(f - (1.0 - eps_bar) * y, axis=1) / norms)), eps_bar


def run_regime(traj, label: str, settled: float | None = None, **fields) -> Regime:
    """The :class:`Regime` at the end of a binary run ``traj`` (a :class:`gradflow.Trajectory`;
    an ensemble's worst seed): train accuracy, ε = (λ/2)·ρ_d², ``max_n |1 − y_n ρ f_n|`` (from
    the ``margins`` observable when the run saved it) and λ·t (for SGD, t = η·steps, so this
    is ηλ·steps). ``fields`` override or add :class:`Regime` fields."""
    lam = float(traj.config["problem"]["weight_decay"])
    normalization = traj.config["problem"].get("normalization", "none")
    acc = np.atleast_1d(np.asarray(traj["train_acc"], dtype=float)[..., -1])
    rho = np.atleast_1d(np.asarray(traj["rho"], dtype=float)[..., -1])
    rho_k = np.asarray(traj["rho_k"], dtype=float)
    rho_k = rho_k.reshape(-1, *rho_k.shape[-2:])[:, -1]  # (seed, layer) at the end
    eps = max(0.5 * lam * decayed_norm2(r, normalization) for r in rho_k)
    residual = None
    if "margins" in traj.observables:
        m = np.asarray(traj["margins"], dtype=float)
        m = m.reshape(-1, *m.shape[-2:])[:, -1]  # (seed, sample)
        residual = float(np.max(np.abs(1.0 - rho[:, None] * m)))
    kind = getattr(traj, "kind", "flow")
    values = {
        "train_acc": float(acc.min()),
        "eps": eps,
        "residual": residual,
        "exposure": lam * float(np.asarray(traj.t)[-1]),
        "exposure_name": "ηλ·steps" if kind in ("sgd", "gd") else "λ·t",
        "settled": settled,
    }
    values.update(fields)
    return Regime(label, **values)
