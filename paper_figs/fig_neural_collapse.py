"""Figure neural_collapse: NC1-NC3, the SQI defect δ and the singular values of M̃ along the
gradient flow with weight decay, for C = 4 and C = 10 digit classes (THEORY 4.8, 5).

Prediction [paper claim, conditional on symmetric quasi-interpolation (SQI), THEORY 4.8]: with
λ > 0, at an equilibrium where every output is ``(1 − ε)ỹ_n`` (centred targets
``ỹ_n = e_c − 1/C``, balanced classes), stationarity of the last layer gives exactly
``W_L ∝ M̃ᵀ`` (NC3) and ``M̃ᵀM̃ ∝ I − 11ᵀ/C`` (NC2: the centred class means form a simplex ETF,
so M̃ has rank C − 1 with equal singular values), with NC1 (within-class variability) → 0 and
NC4 (nearest-class-mean agreement) → 0.

The fair check of THEORY 4.8, at the full profile: bias-free ReLU MLPs with 4 layers (3 hidden
layers of 20) trained on centred targets, C = 4 (digits 0-3) and C = 10 (all ten digits), a
sweep over λ (two values > 0 and λ = 0), every λ > 0 integrated to λ·t = 20, and NC judged at
the Filippov equilibrium that ``gf.equilibrium`` certifies from the flow's end (after a short
fixed-step tail whose chattering seeds S, as in ``margins``; where it certifies — else at the
end, with the certificate's reason). Every point's regime prints the train
accuracy, the SQI defect ``δ = max_n ||F_n − (1 − ε̄)ỹ_n|| / ||ỹ_n||`` and the common
shortfall ε̄ (``_verdict.sqi_defect``), their ratio δ/ε̄ (the size, relative to the common
residual, of the residuals' spread: the first-order error of the identities above), λ·t and
the singular values of M̃ relative to the largest (the C-th is 0 by construction: centred
means of balanced classes sum to 0).

Criterion, per row (stated in the verdict): at the smallest λ > 0, at the certified equilibrium
(a λ > 0 point whose end is not certified is outside the hypotheses: THEORY 4.8's fair check
judges NC at a certified equilibrium; its numbers at the flow's end are still printed), NC1,
NC2 and NC3 are each ≥ FALL times below their value at t = 0, NC4 = 0, and M̃ has numerical
rank C − 1 (σ_{C−1}/σ_1 ≥ RANK_TOL); judged where the points are inside
``_verdict.QUASI_INTERPOLATION`` (train accuracy 1, ε̄ ≤ 0.1, δ ≤ 0.5, λ·t ≥ 20; λ = 0: train
accuracy 1).

A second row keeps the deep net of this figure's earlier versions — 9 bias-free layers with
decay on every one of them — to test the caveat of Súkeník et al. (2024, "Neural collapse
versus low-rank bias"): with L2 regularization on every layer of a deep net and C > 2, solutions
of lower rank than the simplex ETF can be preferred. That row is outside the hypotheses of the
fair check by design (depth); its line says which it shows: collapse (numerical rank of M̃
C − 1, NC2 small) or a low-rank solution (rank below C − 1).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

import gradflow as gf
from paper_figs import _common, _verdict

NAME = "neural_collapse"
KEYS = ("nc1", "nc2", "nc3")
FALL = 10.0  # the "order of magnitude" of the prediction
#: σ_{C−1}/σ_1 of M̃ at or above this: numerical rank C − 1 (a simplex ETF has 1)
RANK_TOL = 0.1
#: NC2 at or below this counts as "collapse" in the deep row's words (not a criterion)
COLLAPSED = 0.1
#: the horizon of every λ > 0 point, in units of the decay's time scale 1/λ (THEORY 4.8)
EXPOSURE = 20.0
#: the fast profile's horizon (seconds of CPU; λ·t < 20 there: outside the hypotheses)
FAST_T1 = 40.0
#: save points per run
SAVES = 50
#: gf.equilibrium's Newton iterations from each λ > 0 flow's end (with one join per iteration
#: and S by size alone, 30 ended at |S| = 30 on every full-profile net, none certified)
MAX_ITER = 60
#: ... and it stops after MAX_STALL iterations in a row that do not halve the relative residual
#: (``gf.equilibrium(..., max_stall=...)``). None of the paper profile's seven points (each
#: solved from the seeded S, then without it) certified in 60 iterations; they took 3,061 s,
#: each ending worse than its start (2026-12-07). Newton on the right active set halves the
#: residual every iteration. No saving is shown: with this bound, alone on the machine
#: (2026-12-08, paper_figs/README.md), the seven solves took 326-731 s, 3,289 s together, none
#: certified — not like for like with the 3,061 s without it (beside other work), and the dense
#: least squares of each iteration is the cost (benchmarks/README.md, "Why the neural_collapse
#: nets are not certified").
MAX_STALL = 15
#: Before the solve, as ``margins`` does: a fixed-step Heun tail of TAIL at steps of TAIL_STEP,
#: whose last EVIDENCE steps (saved at every step) show the entries that chatter across a
#: switching surface; they seed S (``gf.equilibrium(..., sliding=...)``, docs/equilibria.md).
TAIL = 2.0
TAIL_STEP = 1e-4
EVIDENCE = 200
#: the certificate's record beside a point's runs; the cache key does not cover this module, so
#: the name carries the settings that shape it (a record made with others is not read back)
EQUILIBRIUM = (
    f"equilibrium_it{MAX_ITER}_stall{MAX_STALL}_tail{TAIL:g}x{TAIL_STEP:g}_evidence{EVIDENCE}.json"
)
SQI = "sqi.json"
#: THEORY 5's NC1-NC4, compiled once per shape
_NC = jax.jit(gf.metrics.neural_collapse)


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the figure: the data, the network and the λ sweep."""

    classes: int
    n_train: int
    widths: tuple
    decays: tuple
    deep: bool = False


#: profile -> row name -> Row. The paper profile doubles the samples (20 and 10 per class) and
#: adds λ = 0.005 (to λ·t = 20: t = 4,000): about four times the full profile's flow work.
ROWS = {
    "fast": {
        "C=4": Row(4, 20, (16, 16, 16), (0.02, 0.0)),
        "C=10": Row(10, 30, (16, 16, 16), (0.02, 0.0)),
        "9 layers": Row(4, 20, (16,) * 8, (0.01,), deep=True),
    },
    "full": {
        "C=4": Row(4, 40, (20, 20, 20), (0.02, 0.01, 0.0)),
        "C=10": Row(10, 50, (20, 20, 20), (0.02, 0.01, 0.0)),
        "9 layers": Row(4, 40, (16,) * 8, (0.01,), deep=True),
    },
    "paper": {
        "C=4": Row(4, 80, (20, 20, 20), (0.02, 0.01, 0.005, 0.0)),
        "C=10": Row(10, 100, (20, 20, 20), (0.02, 0.01, 0.005, 0.0)),
        "9 layers": Row(4, 80, (16,) * 8, (0.01,), deep=True),
    },
}


def _horizon(profile: str, row: Row, lam: float) -> float:
    """λ·t = 20 for λ > 0; λ = 0 runs as long as the row's largest λ (its shortest horizon)."""
    if profile == "fast":
        return FAST_T1
    return EXPOSURE / (lam if lam > 0 else max(row.decays))


def points(profile: str) -> dict:
    """(row, λ) -> the typed overrides of that point of ``neural_collapse.toml``."""
    out = {}
    for name, row in ROWS[profile].items():
        for lam in row.decays:
            t1 = _horizon(profile, row, lam)
            out[(name, lam)] = {
                "data.classes": list(range(row.classes)),
                "data.n_train": row.n_train,
                "model.widths": list(row.widths),
                "problem.weight_decay": lam,
                "time.t1": t1,
                "time.save_every": t1 / SAVES,
            }
    return out


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper)."""
    profile = _common.profile_of(profile)
    sets = points(profile)
    results = _common.sweep(NAME, profile, sets, log=log)
    for key, res in results.items():
        problem = _common.problem(NAME, profile, sets[key])
        _common.json_record(res, SQI, lambda p=problem, r=res: _end_record(p, r))
        # a certificate needs a settled flow (λ·t ≳ 20, docs/equilibria.md); the fast
        # profile's runs end at λ·t < 1, where the solve could only answer "not settled"
        if key[1] > 0 and profile != "fast":
            _common.json_record(
                res, EQUILIBRIUM, lambda p=problem, r=res, k=key: _equilibrium(p, r, k, log)
            )
    return results


def state_record(problem, state) -> dict:
    """At ``state``: NC1-NC4 (THEORY 5), the SQI defect δ and common shortfall ε̄ against the
    training targets, the train accuracy, the layer norms and the singular values of the
    centred class means M̃ relative to the largest."""
    y = np.asarray(problem.y_train)
    labels = np.argmax(y, axis=1)
    f = np.asarray(problem.outputs(state))
    h = np.asarray(problem.features(state))
    weights = [np.asarray(w) for w in problem.to_weights(state)]
    nc = _NC(h, labels, weights[-1], f)
    delta, eps_bar = _verdict.sqi_defect(f, y)
    means = np.stack([h[labels == c].mean(axis=0) for c in range(y.shape[1])])
    sv = np.linalg.svd(means - means.mean(axis=0), compute_uv=False)
    return {
        **{k: float(v) for k, v in nc.items()},
        "delta": delta,
        "eps_bar": eps_bar,
        "train_acc": float(np.mean(np.argmax(f, 1) == labels)),
        "rho_k": [float(np.linalg.norm(w)) for w in weights],
        "sigma_means": (sv / sv[0]).tolist(),
    }


def _end_record(problem, res) -> dict:
    traj = res.runs()["flow"]
    return state_record(problem, problem.to_state(tuple(np.asarray(w) for w in traj.final_params)))


def _equilibrium(problem, res, key, log) -> dict:
    """``gf.equilibrium`` from the flow's end (after :func:`_common.sliding_tail`, whose last
    steps seed S): its certificate and :func:`state_record` at the
    point it returns (which is never worse than the start)."""
    traj = res.runs()["flow"]
    end = problem.to_state(tuple(np.asarray(w) for w in traj.final_params))
    tail_end, last, tail_steps, tail_seconds = _common.sliding_tail(
        problem, end, TAIL, TAIL_STEP, EVIDENCE
    )
    start = time.perf_counter()
    fp = gf.equilibrium(
        problem,
        tail_end,
        spectrum=False,
        max_iter=MAX_ITER,
        max_stall=MAX_STALL,
        dense_max=4000,
        sliding=last,
    )
    seconds = time.perf_counter() - start
    record = {
        **_common.certificate_record(fp),
        "iterations": int(fp.iterations),
        "seconds": seconds,
        "tail_steps": tail_steps,
        "tail_seconds": tail_seconds,
        "fixed": state_record(problem, fp.state),
    }
    log(
        f"  equilibrium of {NAME} {key[0]} λ={key[1]:g}: {record['verdict']}, relative "
        f"residual {record['start_residual']:.1e} -> {record['relative_residual']:.1e} "
        # a failed solve returns its start (0 iterations of the returned point): say why
        f"({fp.message.split(';')[0]}; tail {tail_seconds:.0f} s, solve {seconds:.1f} s)"
    )
    return record


def _rank(sigma, classes: int) -> int:
    """Numerical rank of M̃ at :data:`RANK_TOL` relative to σ_1."""
    return int(np.sum(np.asarray(sigma[:classes]) >= RANK_TOL))


def _judged(res) -> tuple[dict, str]:
    """The state the claim is judged at: the certified equilibrium, else the flow's end."""
    eq = _common.read_json(res, EQUILIBRIUM)
    if eq is not None and eq["certified"]:
        return eq["fixed"], "certified equilibrium"
    return _common.read_json(res, SQI), "end of the flow"


def _eq_words(eq) -> str:
    if eq is None:
        return "equilibrium not sought (fast profile: λ·t < 1)"
    alpha = eq["alpha_range"]
    words = (
        f"gf.equilibrium {eq['verdict']} (relative residual {eq['start_residual']:.1e} -> "
        f"{eq['relative_residual']:.1e}, |S| {eq['n_switching']}, dying units {eq['n_dying']}"
    )
    if alpha is not None:
        words += f", α in [{alpha[0]:.2g}, {alpha[1]:.2g}]"
    # records written before Certificate.record() kept only the largest, as identity_defect
    defects = eq.get("identity_defects") or [eq.get("identity_defect")]
    if defects[0] is not None:
        words += f", THEORY 4.9 defect ≤ {max(defects):.1e}"
    if eq["flow_drift"] is not None:
        words += f", short-flow drift {eq['flow_drift']:.1e}"
    words += f", {eq['distance']:.1e} from the end)"
    if not eq["certified"] and eq["reasons"]:
        words += " — " + eq["reasons"][0]
    return words


def _point_words(rec: dict, classes: int) -> str:
    sv = "/".join(f"{x:.2g}" for x in rec["sigma_means"][: classes - 1])
    return (
        f"NC1 {rec['nc1']:.2g}, NC2 {rec['nc2']:.2g}, NC3 {rec['nc3']:.2g}, NC4 {rec['nc4']:.2g}, "
        f"δ {rec['delta']:.2g}, ε̄ {rec['eps_bar']:.2g}, σ(M̃)/σ_1 {sv} "
        f"(rank {_rank(rec['sigma_means'], classes)} of C − 1 = {classes - 1})"
    )


def _regime(label, rec, lam, t1, classes, outside=()) -> _verdict.Regime:
    return _verdict.Regime(
        label,
        train_acc=rec["train_acc"],
        eps=rec["eps_bar"],
        residual=rec["delta"],
        residual_name="δ",
        exposure=lam * t1,
        extra=(
            ("δ/ε̄", f"{rec['delta'] / rec['eps_bar']:.2g}" if rec["eps_bar"] > 0 else "n/a"),
            ("rank M̃", f"{_rank(rec['sigma_means'], classes)}/{classes - 1}"),
        ),
        outside=tuple(outside),
    )


def _row_verdict(name: str, row: Row, inputs: dict) -> str:
    """One row's measured numbers, regime and verdict word."""
    lams = [lam for lam in row.decays if lam > 0]
    parts, pts = [], []
    for lam in row.decays:
        res = inputs[(name, lam)]
        traj = res.runs()["flow"]
        t1 = float(np.asarray(traj.t)[-1])
        end = _common.read_json(res, SQI)
        text = f"λ={lam:g} (t={t1:g}): end {_point_words(end, row.classes)}"
        if lam > 0:
            eq = _common.read_json(res, EQUILIBRIUM)
            text += "; " + _eq_words(eq)
            if eq is not None and eq["certified"]:
                text += "; there " + _point_words(eq["fixed"], row.classes)
        parts.append(text)
        rec, where = _judged(res)
        outside = (
            ("9 layers, decay on every one: the low-rank caveat's regime",) if row.deep else ()
        )
        if lam > 0 and where != "certified equilibrium":
            # THEORY 4.8's fair check judges NC at a certified equilibrium (3.6, 4.9)
            eq = _common.read_json(res, EQUILIBRIUM)
            outside += (f"not certified: {'not sought' if eq is None else eq['verdict']}",)
        hyp = _verdict.QUASI_INTERPOLATION if lam > 0 else _verdict.INTERPOLATION
        pts.append((_regime(f"λ={lam:g} ({where})", rec, lam, t1, row.classes, outside), hyp))
    # the criterion at the smallest λ > 0
    lam = min(lams)
    res = inputs[(name, lam)]
    rec, where = _judged(res)
    start = {k: float(np.asarray(res.runs()["flow"][k])[0]) for k in KEYS}
    falls = {k: start[k] / max(rec[k], np.finfo(float).tiny) for k in KEYS}
    free = _common.read_json(inputs[(name, 0.0)], SQI) if 0.0 in row.decays else None
    below = free is None or all(rec[k] < free[k] for k in KEYS)
    rank = _rank(rec["sigma_means"], row.classes)
    # λ = 0's end is reported beside, not judged: THEORY 4.8 claims nothing of the flow
    # without decay (an interpolating flow from a small init may collapse as far)
    holds = all(f >= FALL for f in falls.values()) and rec["nc4"] == 0
    holds = holds and rank == row.classes - 1
    measured = (
        f"{name} (C={row.classes}, N={row.n_train}, {len(row.widths) + 1} layers of "
        f"{row.widths[0]}): "
        + "; ".join(parts)
        + f"; at λ={lam:g} ({where}) falls from t=0 NC1 {falls['nc1']:.0f}x, NC2 "
        f"{falls['nc2']:.1f}x, NC3 {falls['nc3']:.1f}x"
        + (
            ""
            if free is None
            else f" ({'below' if below else 'not below'} λ=0's end: reported, not a criterion)"
        )
    )
    if row.deep:
        if rank < row.classes - 1:
            shows = f"shows a low-rank solution (rank M̃ {rank} < C − 1 = {row.classes - 1})"
        elif rec["nc2"] <= COLLAPSED:
            shows = f"shows collapse (rank M̃ {rank} = C − 1, NC2 {rec['nc2']:.2g})"
        else:
            shows = f"shows neither: rank M̃ {rank} = C − 1 but NC2 {rec['nc2']:.2g} > {COLLAPSED:g}"
        word = f"{_verdict.judge(holds, pts)} ({shows})"
    else:
        word = _verdict.judge(holds, pts)
    return f"{measured}; {_verdict.regime_text(pts)}: {name}: {word}"


YLABELS = {
    "nc1": "NC1 = Tr(Σ_W Σ_B^†)/C (log)",
    "nc2": "NC2 = equinorm + equiangularity gap (log)",
    "nc3": "NC3 = ||W_Lᵀ/||W_L|| − M̃/||M̃|| ||² (log)",
}


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    profile = _profile(inputs)
    rows = ROWS[profile]
    fig, axes = plt.subplots(len(rows), 4, figsize=(15, 3.2 * len(rows)))
    for axrow, (name, row) in zip(axes, rows.items(), strict=True):
        for i, lam in enumerate(row.decays):
            res = inputs[(name, lam)]
            traj = res.runs()["flow"]
            color = f"C{i}" if lam > 0 else "k"
            for ax, key in zip(axrow[:3], KEYS, strict=True):
                ax.plot(traj.t, np.asarray(traj[key]), color=color, lw=1.2, label=f"λ = {lam:g}")
            end = _common.read_json(res, SQI)
            k = np.arange(1, row.classes)
            axrow[3].plot(
                k,
                end["sigma_means"][: row.classes - 1],
                "o-",
                color=color,
                label=f"λ = {lam:g}, end",
            )
            eq = _common.read_json(res, EQUILIBRIUM)
            if eq is not None and eq["certified"]:
                axrow[3].plot(
                    k,
                    eq["fixed"]["sigma_means"][: row.classes - 1],
                    "s",
                    mfc="none",
                    ms=9,
                    color=color,
                    label=f"λ = {lam:g}, certified equilibrium",
                )
        for ax, key in zip(axrow[:3], KEYS, strict=True):
            ax.set_yscale("log")
            ax.set_xlabel("flow time t")
            ax.set_ylabel(YLABELS[key], fontsize=8)
            ax.set_title(
                f"{key.upper()}, {name} (C = {row.classes}, N = {row.n_train}, "
                f"{len(row.widths) + 1} layers)",
                fontsize=9,
            )
        axrow[0].legend(fontsize=7)
        axrow[3].axhline(RANK_TOL, color="grey", lw=0.8, ls=":")
        axrow[3].set_ylim(0, 1.05)
        axrow[3].set_xticks(np.arange(1, row.classes))
        axrow[3].set_xlabel("index i of the singular value (1 … C − 1)")
        axrow[3].set_ylabel("σ_i(M̃)/σ_1 (simplex ETF: all 1)", fontsize=8)
        axrow[3].set_title(f"singular values of M̃, {name}", fontsize=9)
        axrow[3].legend(fontsize=6)
    fig.suptitle(
        "Neural collapse of the gradient flow with weight decay on every layer, centred targets "
        "(one-hot − 1/C), each λ > 0 to λ·t = 20"
        + (" (fast profile: shorter)" if profile == "fast" else ""),
        fontsize=9,
    )
    verdict = (
        f"{NAME}: predicted (conditional on SQI, THEORY 4.8) NC1-NC3 → 0 with M̃ a simplex ETF "
        f"(rank C − 1); criterion per row: at the smallest λ > 0, at the certified equilibrium "
        f"(a λ > 0 end that is not certified is outside the hypotheses), NC1-NC3 each ≥ "
        f"{FALL:g}x below t=0, NC4 = 0, "
        f"σ_(C−1)/σ_1 of M̃ ≥ {RANK_TOL:g}; measured "
        + "; ".join(_row_verdict(name, row, inputs) for name, row in rows.items())
    )
    return _common.finish(fig, out_dir, NAME, verdict)


def _profile(inputs: dict) -> str:
    """The profile whose rows ``inputs`` holds (its keys are (row, λ); the λ grids of the
    profiles differ)."""
    for profile, rows in ROWS.items():
        if set(inputs) == {(n, lam) for n, r in rows.items() for lam in r.decays}:
            return profile
    raise ValueError(f"neural_collapse: inputs {sorted(inputs)} match no profile of ROWS")
