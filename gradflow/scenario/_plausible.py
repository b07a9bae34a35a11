"""Plausibility of a scenario: the checks that need its problem built, made after validation
and the size limits and before anything is computed (``gradflow run``).

* The problem itself: inputs or a weight decay so large that the loss at the start overflows
  are refused by :class:`gradflow.Problem`; here they are named by their scenario key
  (``data``, ``problem.weight_decay``), as bad input rather than a divergence.
* Steps beyond the stability limit: GD, SGD and the SDE of SGD at a learning rate above
  ``2/λ_max``, ``λ_max`` the top Hessian eigenvalue of the loss at the initial weights
  (:func:`gradflow.stable_learning_rate`), get a warning (the edge of stability, or a
  catapult, may be what is studied); beyond :data:`STABILITY_FACTOR` times it they are refused
  (``--no-limits`` runs them, with the warning).
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

from .._validate import ConfigError, did_you_mean

if TYPE_CHECKING:
    from ._config import Scenario

#: A learning rate beyond this many times ``2/λ_max`` is refused unless ``--no-limits``.
STABILITY_FACTOR = 10.0

#: Problem's argument -> the scenario key that sets it
_KEYS = {"weight_decay": "problem.weight_decay", "data": "data", "model": "model"}


def check_plausible(config: Scenario, limits: bool = True):
    """Build ``config``'s problem and check it and its runs' learning rates (module
    docstring); raises :class:`ConfigError` (one line naming the key and the value), warns
    (:class:`UserWarning`) otherwise. Returns the problem."""
    from .._hessian import stable_learning_rate
    from ._run import build_problem

    try:
        problem = build_problem(config)
    except ValueError as err:  # "Problem: name=value is not allowed; ..."
        text = " ".join(str(err).split())
        found = re.match(r"Problem: (\w+)=(.*)$", text)
        if found and found[1] in _KEYS:
            key = _KEYS[found[1]]
            if key == "data" and "path" in config.table.get("data", {}):
                key = f"data.path={config.table['data']['path']!r}: data"
            raise ConfigError(f"{key}={found[2]}") from None
        raise ConfigError(text) from None
    _check_plot(config, problem)
    stepping = [spec for spec in config.runs if spec.dynamics in ("gd", "sgd", "sde")]
    if not stepping:
        return problem
    eta_max, lam = stable_learning_rate(problem)
    for spec in stepping:
        lr = spec.options["lr"]
        if not lr > eta_max:
            continue
        ratio = lr / eta_max
        what = (
            f"run {spec.label} steps at {ratio:.3g}× the stability limit 2/λ_max = "
            f"{eta_max:.3g} at the start (λ_max = {lam:.3g}, the top Hessian eigenvalue of "
            "the loss)"
        )
        if limits and ratio > STABILITY_FACTOR:
            raise ConfigError(
                f"{spec.dynamics}.lr={lr!r} is not allowed; {what}; use lr <= "
                f"{STABILITY_FACTOR * eta_max:.3g} (gradflow run --no-limits runs it anyway)"
            )
        warnings.warn(
            f"{spec.dynamics}.lr={lr!r}: {what}; it may not follow the flow", stacklevel=2
        )
    return problem


def _check_plot(config: Scenario, problem) -> None:
    """With ``output.observables`` groups, the names ``output.plot`` may use are known only
    from the problem: the standard observables and the groups' entries (sized with
    ``jax.eval_shape``: nothing is computed)."""
    groups = tuple(config.output["observables"])
    if not groups:
        return  # the names were checked against PLOTTABLE during validation
    import equinox as eqx

    from .._observables import observe

    recorded = eqx.filter_eval_shape(lambda: observe(problem, problem.initial_state(), groups))
    allowed = sorted(set(recorded) | {"balance_drift"})
    unknown = [name for name in config.output["plot"] if name not in allowed]
    if unknown:
        raise ConfigError(
            f"output.plot={list(config.output['plot'])!r} is not allowed; {unknown[0]!r} is "
            f"not recorded: use names among {', '.join(allowed)}"
            + did_you_mean(unknown[0], allowed)
        )
