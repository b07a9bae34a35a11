"""Predictions evaluated on a :class:`gradflow.Problem` and trained parameters.

``rho_eq(problem, params)`` is THEORY 4.1 at the directions of ``params`` (weights ``W_k``);
:func:`report` puts every applicable prediction next to simulated values (the
``predictions`` scenario prints it).
"""

from __future__ import annotations

import jax
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


def _row(name, section, tag, predicted, values: dict) -> dict:
    row = {"prediction": name, "theory": section, "tag": tag, "predicted": float(predicted)}
    for label, value in values.items():
        row[label] = float(value)
        row[f"gap[{label}]"] = (
            abs(float(value) / float(predicted) - 1) if predicted != 0 else abs(float(value))
        )
    return row


def report(problem, runs: dict) -> list[dict]:
    """Predicted vs simulated values at the end of each run (``runs``: label -> Trajectory).

    Rows (LM-last, binary or multiclass): ρ = ρ_eq(V) (4.1, exact at equilibrium); the
    quasi-interpolation residual ``1 − mean_n y_n ρ f_n ≈ ε = (λ/2)/(m² + λ/2)`` with ``m``
    the mean normalized margin (4.3, exact under equal margins); the normalized margin
    ``min_n y_n f_n ≈ 1/ρ`` (4.4, paper claim). Gaps are relative.
    """
    lam = float(problem.weight_decay)
    rows = []
    finals = {}
    for label, traj in runs.items():
        params = [np.asarray(w) for w in traj.final_params]
        if traj.seeds is not None:
            params = [w[0] for w in params]
        f, rho = normalized_outputs(problem, params)
        y = problem.y_train
        m = jax.device_get(jnp.sum(y * f, axis=1)) if y.shape[1] == 1 else None
        finals[label] = (np.asarray(f), float(rho), m)
    ref_label = next(iter(runs))
    f_ref, rho_ref, _ = finals[ref_label]
    rows.append(
        _row(
            "rho = rho_eq(V)",
            "4.1",
            "exact at equilibrium",
            float(_rho_eq_arrays(jnp.asarray(f_ref), problem.y_train, lam)),
            {k: v[1] for k, v in finals.items()},
        )
    )
    if problem.y_train.shape[1] == 1:
        m_mean = float(np.mean(finals[ref_label][2]))
        _, eps = quasi_interpolation(m_mean, lam)
        rows.append(
            _row(
                "residual 1 - mean(y rho f) = eps",
                "4.3",
                "exact under equal margins",
                float(eps),
                {k: 1 - np.mean(v[2]) * v[1] for k, v in finals.items()},
            )
        )
        rows.append(
            _row(
                "margin min(y f) = 1/rho",
                "4.4",
                "paper claim",
                1.0 / rho_ref,
                {k: np.min(v[2]) for k, v in finals.items()},
            )
        )
    return rows


def format_report(rows: list[dict]) -> str:
    """A plain-text table of :func:`report`'s rows."""
    lines = []
    for r in rows:
        sims = [
            k
            for k in r
            if k not in ("prediction", "theory", "tag", "predicted") and not k.startswith("gap[")
        ]
        parts = ", ".join(f"{k}={r[k]:.6g} (gap {r[f'gap[{k}]']:.2e})" for k in sims)
        lines.append(
            f"[{r['theory']}, {r['tag']}] {r['prediction']}: predicted "
            f"{r['predicted']:.6g}; {parts}"
        )
    return "\n".join(lines)
