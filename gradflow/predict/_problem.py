"""Predictions evaluated on a :class:`gradflow.Problem` and trained parameters.

``rho_eq(problem, params)`` is THEORY 4.1 at the directions of ``params`` (weights ``W_k``);
:func:`report` puts every applicable prediction next to simulated values (the
``predictions`` scenario prints it).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import _loss
from ._rho import quasi_interpolation
from ._rho import rho_eq as _rho_eq_arrays


def normalized_outputs(problem, params):
    """``(f_n, ρ)``: the normalized network's outputs ``f(V; x_n)`` and ``ρ = Π ||W_k||``."""
    weights = tuple(jnp.asarray(w) for w in params)
    rho = jnp.prod(jnp.stack([jnp.linalg.norm(w) for w in weights]))
    f = _loss.outputs(problem.model, weights, problem.x_train) / rho
    return f, rho


def rho_eq(problem_or_f, params_or_y, weight_decay=None):
    """THEORY 4.1's ``ρ_eq``: ``rho_eq(problem, params)`` or ``rho_eq(f, y, weight_decay)``."""
    if weight_decay is not None:
        return _rho_eq_arrays(problem_or_f, params_or_y, weight_decay)
    problem = problem_or_f
    f, _ = normalized_outputs(problem, params_or_y)
    return _rho_eq_arrays(f, problem.y_train, problem.weight_decay)


#: The label of :func:`report`'s column at the exact fixed point.
FIXED_POINT = "fixed point"
#: Its label when the point is not a certified fixed point (``FixedPoint.certified`` false):
#: the rows are still computed there, but nothing calls the point a fixed point.
UNCERTIFIED = "uncertified point"


def _gap(value: float, predicted: float) -> float:
    return abs(value / predicted - 1) if predicted != 0 else abs(value)


def _row(name, section, tag, columns: dict, regime: dict | None = None) -> dict:
    """One row: ``columns`` maps a column label to ``(value, predicted)``; the row's
    ``predicted`` is the first column's (the reference), each column also has its own.
    ``regime`` maps a column label to named numbers that say where the claim was checked
    (``train_acc``, ``max_residual``), stored as ``NAME[label]``."""
    first = next(iter(columns.values()))
    row = {"prediction": name, "theory": section, "tag": tag, "predicted": float(first[1])}
    for label, (value, predicted) in columns.items():
        row[label] = float(value)
        row[f"predicted[{label}]"] = float(predicted)
        row[f"gap[{label}]"] = _gap(float(value), float(predicted))
        for key, number in (regime or {}).get(label, {}).items():
            row[f"{key}[{label}]"] = float(number)
    return row


def _binary_regime(c: dict) -> dict:
    """Where the margin claims (4.3, 4.4) apply: near-interpolation, i.e. every sample fitted
    (``train_acc``: the share of positive margins ``y_n f_n``) and every residual small
    (``max_residual = max_n |1 − y_n ρ f_n|``)."""
    return {
        # = the train_acc observable (sign f = y; an output of exactly 0 counts as a miss in
        # both); not imported from _observables, which imports this package (a cycle)
        "train_acc": float(np.mean(c["m"] > 0)),
        "max_residual": float(np.max(np.abs(1.0 - c["rho"] * c["m"]))),
    }


def _column(problem, weights, t_end: float) -> dict:
    """The quantities of THEORY 4 at one set of weights reached at flow time ``t_end``."""
    weights = tuple(jnp.asarray(w) for w in weights)
    f, rho = normalized_outputs(problem, weights)
    f, rho = np.asarray(f), float(rho)
    y = np.asarray(problem.y_train)
    norms = np.array([float(jnp.linalg.norm(w)) for w in weights])
    n = y.shape[0]
    return {
        "f": f,
        "rho": rho,
        "rho_k": norms,
        "s": 2.0 / n * float(np.sum((y - rho * f) * f)),
        "m": np.sum(y * f, axis=1) if y.shape[1] == 1 else None,
        "gaps": norms[:-1] ** 2 - norms[1:] ** 2,
        "t": t_end,
    }


def _decays_every_layer(problem) -> bool:
    """Whether the decay is ``(λ/2) Σ_k ||W_k||²`` (plain, LM-all, WN: THEORY 4.2's setting), as
    opposed to LM-last's ``(λ/2) Π_k ||W_k||²``: compared at the problem's initial state."""
    state = problem.initial_state()
    decay = float(problem.parametrization.decay(state))
    total = float(sum(jnp.sum(w**2) for w in problem.to_weights(state)))
    return bool(np.isclose(decay, total, rtol=1e-10, atol=0))


def report(problem, runs: dict | None = None, *, equilibrium=None) -> list[dict]:
    """Predicted vs simulated values at the end of each run, and at the exact fixed point.

    Args:
        problem: the :class:`gradflow.Problem` the runs solved.
        runs: label -> :class:`gradflow.Trajectory` (seed 0 of an ensemble); the columns
            "end of run".
        equilibrium: a :class:`gradflow.analysis.FixedPoint` of ``problem``
            (:func:`gradflow.equilibrium`); adds the column ``"fixed point"``, where the rows
            tagged "exact at equilibrium" hold to the solver's residual — or, when the point
            is not certified (``equilibrium.certified`` false: a failed solve, or a ReLU
            point whose Filippov certificate failed), the column ``"uncertified point"``.

    Each row holds, per column, the simulated value, the prediction evaluated at that
    column's own state (``predicted[label]``) and their gap (relative, or absolute where the
    prediction is 0); ``predicted`` is the first column's. The rows that apply:

    * LM-last: ρ = ρ_eq(V) (4.1, exact at equilibrium); with binary targets the
      quasi-interpolation residual ``1 − mean_n y_n ρ f_n ≈ ε = (λ/2)/(m² + λ/2)`` with ``m``
      the mean normalized margin (4.3, exact under equal margins) and the normalized margin
      ``min_n y_n f_n ≈ 1/ρ`` (4.4, a paper claim). These two rows also hold, per column, the
      numbers that say whether the claims apply there (near-interpolation): ``train_acc[label]``
      (the share of positive margins) and ``max_residual[label]`` (``max_n |1 − y_n ρ f_n|``);
    * all layers decayed (plain with λ > 0, LM-all, WN): equal ``ρ_k``, i.e.
      ``max_k |ρ_k / ρ^{1/L} − 1| = 0``, and ``λ ρ^{2/L} = ρ s`` (4.2, exact at equilibrium);
    * plain, LM-all, WN: balancedness, ``ρ_k² − ρ_{k+1}² = gap(0) e^{−2λt}`` at the run's
      final time (``t = ∞`` at the fixed point), as ``max_k |gap_k − predicted_k| / Σ_k ρ_k²``
      (3.1, 4.5: exact for the flow).
    """
    lam = float(problem.weight_decay)
    columns = {}
    for label, traj in (runs or {}).items():
        params = [np.asarray(w) for w in traj.final_params]
        if traj.seeds is not None:
            params = [w[0] for w in params]
        t_end = float(traj.t[-1]) if len(traj.t) else 0.0
        columns[label] = _column(problem, params, t_end)
    if equilibrium is not None:
        label = FIXED_POINT if getattr(equilibrium, "certified", False) else UNCERTIFIED
        columns[label] = _column(problem, problem.to_weights(equilibrium.state), np.inf)
    if not columns:
        raise ValueError("report: no runs and no equilibrium were given; give at least one")
    rows = []
    if "rho_eq" in problem.parametrization.observables:  # LM-last (THEORY 4.1)
        rows.append(
            _row(
                "rho = rho_eq(V)",
                "4.1",
                "exact at equilibrium",
                {
                    k: (c["rho"], float(_rho_eq_arrays(jnp.asarray(c["f"]), problem.y_train, lam)))
                    for k, c in columns.items()
                },
            )
        )
        if problem.y_train.shape[1] == 1:
            regime = {k: _binary_regime(c) for k, c in columns.items()}
            eps = {
                k: float(quasi_interpolation(float(np.mean(c["m"])), lam)[1])
                for k, c in columns.items()
            }
            rows.append(
                _row(
                    "residual 1 - mean(y rho f) = eps",
                    "4.3",
                    "exact under equal margins",
                    {k: (1 - np.mean(c["m"]) * c["rho"], eps[k]) for k, c in columns.items()},
                    regime,
                )
            )
            rows.append(
                _row(
                    "margin min(y f) = 1/rho",
                    "4.4",
                    "paper claim",
                    {k: (np.min(c["m"]), 1.0 / c["rho"]) for k, c in columns.items()},
                    regime,
                )
            )
    all_layers = _decays_every_layer(problem)
    if all_layers and lam > 0:
        num = problem.num_layers
        rows.append(
            _row(
                "equal rho_k: max |rho_k / rho^(1/L) - 1| = 0",
                "4.2",
                "exact at equilibrium",
                {
                    k: (float(np.max(np.abs(c["rho_k"] / c["rho"] ** (1 / num) - 1))), 0.0)
                    for k, c in columns.items()
                },
            )
        )
        rows.append(
            _row(
                "lambda rho^(2/L) = rho s",
                "4.2",
                "exact at equilibrium",
                {k: (c["rho"] * c["s"], lam * c["rho"] ** (2 / num)) for k, c in columns.items()},
            )
        )
    if all_layers and problem.num_layers > 1:
        w0 = [np.asarray(w) for w in problem.model.weights]
        n0 = np.array([np.linalg.norm(w) for w in w0])
        gap0 = n0[:-1] ** 2 - n0[1:] ** 2

        def balance(c):
            decay = np.exp(-2 * lam * c["t"]) if lam > 0 else 1.0
            return float(np.max(np.abs(c["gaps"] - gap0 * decay)) / np.sum(c["rho_k"] ** 2))

        rows.append(
            _row(
                "balance gaps rho_k^2 - rho_{k+1}^2 = gap(0) e^(-2 lambda t)",
                "4.5",
                "exact for the flow",
                {k: (balance(c), 0.0) for k, c in columns.items()},
            )
        )
    return rows


def format_report(rows: list[dict]) -> str:
    """A plain-text table of :func:`report`'s rows: per column the simulated value, the
    prediction at that column's state and the gap."""
    lines = []
    for r in rows:
        labels = [k[len("gap[") : -1] for k in r if k.startswith("gap[")]
        parts = "; ".join(
            f"{k}: {r[k]:.6g} vs {r[f'predicted[{k}]']:.6g} (gap {r[f'gap[{k}]']:.2e}"
            + (
                f"; train acc {r[f'train_acc[{k}]']:.3f}, "
                f"max|1 - y rho f| {r[f'max_residual[{k}]']:.2g}"
                if f"train_acc[{k}]" in r
                else ""
            )
            + ")"
            for k in labels
        )
        lines.append(f"[{r['theory']}, {r['tag']}] {r['prediction']}: {parts}")
    return "\n".join(lines)
