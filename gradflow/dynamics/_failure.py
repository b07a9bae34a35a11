"""One failure contract for every dynamics (``gf.simulate``, ``gf.flow``, the SDE, ``gf.sgd``).

Every run ends with a :class:`RESULTS` member on its trajectory (``traj.result``; the string
``traj.stats["status"]`` names it, and is what a saved file keeps):

* ``RESULTS.successful`` (``"success"``): it reached ``t1``, its loss finite and bounded;
* ``RESULTS.diverged`` (``"diverged"``): the loss (or the state) stopped being finite;
* ``RESULTS.blew_up`` (``"blew_up"``): finite, but the total loss or ρ grew beyond
  :data:`BLOW_UP` times ``max(its value at t = 0, 1)``, or, for SGD / GD, the loss beyond
  :data:`STEP_BLOW_UP` times it (a descent method at a stable step does not raise its loss
  a hundredfold: GD at 17× ``2/λ_max`` raised it 250× and ρ 10⁴× and was a "success" before);
* ``RESULTS.max_steps_reached`` (``"max_steps"``): the run ran out of ``max_steps`` before
  ``t1``;
* ``RESULTS.interrupted`` (``"interrupted"``): SIGINT / SIGTERM (:class:`gradflow.Interrupted`,
  a ``KeyboardInterrupt``, raised whatever ``throw`` is);
* ``RESULTS.failed`` (``"failed"``): another failure reported by the Diffrax solver.

``throw=True`` (the default) raises :class:`RunFailed` (``Diverged`` for "diverged" and
"blew_up", ``MaxStepsReached`` for "max_steps"), which carries the partial trajectory
(``.trajectory``); ``throw=False`` returns that trajectory instead (Diffrax's switch).
The older switches ``on_failure`` (``"raise"`` / ``"return"``), ``on_max_steps`` (flow, SDE:
``"truncate"`` is ``"return"``) and ``on_divergence`` (SGD) are deprecated aliases of
``throw`` (:func:`throw_from_aliases`).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._results import RESULTS
from .._validate import bad_value, check_choice

#: The status strings, in the order of :class:`RESULTS`.
STATUSES = tuple(m.value for m in RESULTS)
#: A finite run is "blew_up" when its final total loss or ρ exceeds BLOW_UP · max(value at 0, 1).
BLOW_UP = 1e6
#: SGD / GD is also "blew_up" when its loss exceeds STEP_BLOW_UP · max(its value at 0, 1).
STEP_BLOW_UP = 1e2


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


_ALIASES = {
    "on_failure": ("raise", "return"),
    "on_max_steps": ("raise", "truncate"),
    "on_divergence": ("raise", "return"),
}


def throw_from_aliases(where: str, throw, **aliases) -> bool:
    """``throw`` (True: raise, False: return), mapping the deprecated switches ``on_failure``,
    ``on_max_steps`` and ``on_divergence`` onto it (``"raise"``: True; ``"return"`` /
    ``"truncate"``: False) with a :class:`DeprecationWarning`. ``None`` means not given;
    give one of them at most."""
    given = {k: v for k, v in aliases.items() if v is not None}
    for name, value in given.items():
        check_choice(where, name, value, _ALIASES[name])
    if throw is not None and not isinstance(throw, bool):
        raise bad_value(where, "throw", throw, "use True (raise RunFailed) or False (return it)")
    if not given:
        return True if throw is None else throw
    name = next(iter(given))
    if throw is not None:
        raise bad_value(where, "throw", throw, f"give throw or {name}, not both")
    if len(given) > 1:
        other = list(given)[1]
        raise bad_value(where, other, given[other], f"give {name} or {other}, not both")
    warnings.warn(
        f"{where}: {name}= is deprecated; use throw={given[name] == 'raise'}",
        DeprecationWarning,
        stacklevel=3,
    )
    return given[name] == "raise"


def blown_up(traj, factor: float = BLOW_UP, names=("loss", "rho")) -> bool:
    """Whether a run's ``names`` (total loss, ρ) grew beyond ``factor`` times
    ``max(their start, 1)`` (see the module docstring)."""
    for name in names:
        if name not in traj.observables:
            continue
        v = np.abs(np.asarray(traj[name], dtype=float))
        v = v[None] if traj.seeds is None else v  # (seed, t)
        if v.ndim < 2 or v.shape[1] == 0:
            continue
        v = v.reshape(v.shape[0], v.shape[1], -1)
        start = v[:, 0]
        end = np.where(np.isfinite(v), v, 0.0).max(axis=1)
        if np.any(end > factor * np.maximum(start, 1.0)):
            return True
    return False


def raise_or_return(traj, throw: bool, message: str):
    """The trajectory, or the :class:`RunFailed` of its status (module docstring)."""
    status = traj.stats.get("status")
    if status == "success" or not throw:
        return traj
    kind = MaxStepsReached if status == "max_steps" else Diverged
    raise kind(message, traj, status)
