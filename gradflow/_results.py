"""How a run ended: :class:`RESULTS`, the failure values of every dynamics.

Kept outside :mod:`gradflow.dynamics` (which re-exports it, with the failure contract in
``dynamics/_failure.py``) so that :class:`gradflow.Trajectory` can name it without importing
the dynamics that build trajectories.
"""

from __future__ import annotations

import enum

from ._validate import bad_value


class RESULTS(enum.Enum):
    """How a run ended (Diffrax's ``RESULTS``, on the host): each member's value is the status
    string of ``stats["status"]``; :attr:`message` says what it means."""

    successful = "success"
    diverged = "diverged"
    blew_up = "blew_up"
    max_steps_reached = "max_steps"
    interrupted = "interrupted"
    failed = "failed"

    @property
    def message(self) -> str:
        return _MESSAGES[self.name]

    @classmethod
    def from_status(cls, status: str) -> RESULTS:
        """The member whose status string is ``status``."""
        try:
            return cls(status)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise bad_value("RESULTS", "status", status, f"use one of {allowed}") from None


_MESSAGES = {
    "successful": "",
    "diverged": "the loss or the state stopped being finite",
    "blew_up": "the loss or ρ grew beyond BLOW_UP times its start (finite)",
    "max_steps_reached": "max_steps was reached before t1; raise max_steps",
    "interrupted": "stopped by SIGINT or SIGTERM; resume from its checkpoint",
    "failed": "the solver reported another failure (Diffrax's result was not successful)",
}
