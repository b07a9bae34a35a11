"""One failure contract for every dynamics (``gf.flow``, the SDE, ``gf.sgd``).

Every run ends with ``stats["status"]`` one of :data:`STATUSES`:

* ``"success"``: it reached ``t1``, its loss finite and bounded;
* ``"diverged"``: the loss (or the state) stopped being finite;
* ``"blew_up"``: finite, but the total loss or ρ grew beyond :data:`BLOW_UP` times
  ``max(its value at t = 0, 1)`` (e.g. GD above its stable step: loss 5e52, finite);
* ``"max_steps"``: an adaptive solve ran out of ``max_steps`` before ``t1``;
* ``"interrupted"``: SIGINT / SIGTERM (:class:`gradflow.Interrupted`, a ``KeyboardInterrupt``).

``on_failure="raise"`` (the default) raises :class:`RunFailed` (``Diverged`` for "diverged" and
"blew_up", ``MaxStepsReached`` for "max_steps"), which carries the partial trajectory
(``.trajectory``, its stats holding the status and ``t_reached``); ``on_failure="return"``
returns that trajectory instead; ``throw=True`` / ``False`` (Diffrax's name) is the same switch.
The older switches ``on_max_steps`` (flow, SDE: ``"truncate"``
is ``"return"``) and ``on_divergence`` (SGD) are kept as aliases.
"""

from __future__ import annotations

import numpy as np

from .._validate import bad_value, check_choice

STATUSES = ("success", "diverged", "blew_up", "max_steps", "interrupted")
#: A finite run is "blew_up" when its final total loss or ρ exceeds BLOW_UP · max(value at 0, 1).
BLOW_UP = 1e6
ON_FAILURE = ("raise", "return")


class RunFailed(RuntimeError):
    """A run that did not succeed; ``.trajectory`` holds what was computed, ``.status`` why."""

    def __init__(self, message: str, trajectory, status: str = "diverged"):
        super().__init__(message)
        self.trajectory = trajectory
        self.status = status


class Diverged(RunFailed):
    """A run whose loss stopped being finite, or blew up (``.status``)."""


class MaxStepsReached(RunFailed):
    """An adaptive solve that ran out of ``max_steps`` before ``t1``."""


def from_throw(where: str, throw, on_failure):
    """``on_failure`` from Diffrax's switch ``throw`` (``True``: raise, ``False``: return),
    when it is given (``None``: ``on_failure`` as it is)."""
    if throw is None:
        return on_failure
    if not isinstance(throw, bool):
        raise bad_value(where, "throw", throw, "use True (raise RunFailed) or False (return it)")
    if on_failure is not None:
        raise bad_value(where, "throw", throw, "give throw or on_failure, not both")
    return "raise" if throw else "return"


def resolve_on_failure(where: str, on_failure, legacy: str, value, legacy_default) -> str:
    """``"raise"`` or ``"return"`` from ``on_failure`` and the older switch ``legacy``."""
    if on_failure is not None:
        check_choice(where, "on_failure", on_failure, ON_FAILURE)
        if value != legacy_default:
            raise bad_value(where, legacy, value, "give on_failure or " + legacy + ", not both")
        return on_failure
    return "raise" if value == "raise" else "return"


def blown_up(traj) -> bool:
    """Whether a run's total loss or ρ grew beyond :data:`BLOW_UP` (see the module docstring)."""
    for name in ("loss", "rho"):
        if name not in traj.observables:
            continue
        v = np.abs(np.asarray(traj[name], dtype=float))
        v = v[None] if traj.seeds is None else v  # (seed, t)
        if v.ndim < 2 or v.shape[1] == 0:
            continue
        v = v.reshape(v.shape[0], v.shape[1], -1)
        start = v[:, 0]
        end = np.where(np.isfinite(v), v, 0.0).max(axis=1)
        if np.any(end > BLOW_UP * np.maximum(start, 1.0)):
            return True
    return False


def raise_or_return(traj, on_failure: str, message: str):
    """The trajectory, or the :class:`RunFailed` of its status (module docstring)."""
    status = traj.stats.get("status")
    if status == "success" or on_failure == "return":
        return traj
    kind = MaxStepsReached if status == "max_steps" else Diverged
    raise kind(message, traj, status)
