"""The integration core shared by the ODE and the SDE (and any later Diffrax-based solver).

* :func:`save_times`: the save grid of every dynamics (SGD saves at the nearest step);
* :func:`check_run_arguments`: the checks every dynamics makes of its time span and limits;
* :func:`solve`: ONE ``diffrax.diffeqsolve`` call with the observables at the save times
  (``SaveAt(fn=observe)``), the final state and the controller state; called inside each
  dynamics' compiled function;
* :func:`run_stats`: ONE place that turns what :func:`solve` returned into ``stats``.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._observables import GROUPS
from .._observables import saveat as observation_saveat
from .._validate import bad_value, check_choice
from ..diffrax_ext import FloorState, SpectralRecord


def save_times(t0: float, t1: float, save_every=None, ts=None, where: str = "flow") -> np.ndarray:
    """The save grid: ``ts`` if given, else ``t0, t0 + save_every, ..., t1``, else 101 points."""
    if ts is not None:
        ts = np.asarray(ts, dtype=float)
        if ts.ndim != 1 or ts.size == 0 or np.any(np.diff(ts) <= 0):
            raise bad_value(where, "ts", ts, "use a non-empty increasing 1-D array")
        if ts[0] < t0 or ts[-1] > t1:
            raise bad_value(where, "ts", ts, f"times must lie in [t0, t1] = [{t0}, {t1}]")
        return ts
    if save_every is not None:
        if not save_every > 0:
            raise bad_value(where, "save_every", save_every, "use a number > 0")
        n = int(np.floor((t1 - t0) / save_every + 1e-9))
        grid = t0 + save_every * np.arange(n + 1)
        return grid if np.isclose(grid[-1], t1) else np.append(grid, t1)
    return np.linspace(t0, t1, 101)


def traced(value):
    """A numerical setting as a NumPy float64 scalar, which ``eqx.filter_jit`` traces (a Python
    float would be static): one compilation serves every ``rtol``, ``atol``, ``dtmin`` and
    ``dt0`` of a sweep. ``None`` stays ``None``."""
    return None if value is None else np.float64(value)


def _positive(where: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise bad_value(where, name, value, "use a number > 0")


def check_run_arguments(where, *, t0, t1, max_steps, on_max_steps, observables) -> None:
    """The checks shared by every dynamics: the span, ``max_steps``, the failure switch and
    the observable groups (:func:`gradflow.observable_groups`)."""
    _positive(where, "t1", t1)
    _positive(where, "max_steps", max_steps)
    if not t1 > t0:
        raise bad_value(where, "t1", t1, f"use t1 > t0 = {t0}")
    check_choice(where, "on_max_steps", on_max_steps, ("raise", "truncate"))
    for g in observables:
        check_choice(where, "observables", g, tuple(GROUPS))


def solve(term, solver, t0, t1, dt0, y0, problem, grid, controller, max_steps, groups, meter):
    """One ``diffeqsolve`` with :func:`gradflow._observables.observe` at ``grid`` (traceable).

    Returns a dict: ``t`` (save times, ``inf`` past the end), ``obs``, ``final`` (the state at
    the last step), ``stats`` (Diffrax's), ``success``, ``max_steps_reached`` (booleans),
    ``t_end``, ``num_floor_steps`` / ``num_floor_rejections`` (zero without a floor), and
    ``spectral``: the solver's :class:`gradflow.diffrax_ext.SpectralRecord` (RKC2, or a
    :class:`gradflow.diffrax_ext.SpectralMonitor`), else ``None``.
    """
    saveat = observation_saveat(grid, groups)
    saveat = diffrax.SaveAt(subs=saveat.subs, controller_state=True, solver_state=True)
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0,
        t1,
        dt0,
        y0,
        args=problem,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        progress_meter=meter,
    )
    (saved_t, t_end), (obs, final) = sol.ts, sol.ys
    floors = [
        s
        for s in jax.tree.leaves(sol.controller_state, is_leaf=lambda s: isinstance(s, FloorState))
        if isinstance(s, FloorState)
    ]
    is_record = lambda s: isinstance(s, SpectralRecord)  # noqa: E731
    records = [s for s in jax.tree.leaves(sol.solver_state, is_leaf=is_record) if is_record(s)]
    zero = jnp.zeros((), jnp.int32)
    return {
        "t": saved_t,
        "obs": obs,
        "final": jax.tree.map(lambda a: a[-1], final),
        "stats": sol.stats,
        "success": diffrax.is_successful(sol.result),
        "max_steps_reached": sol.result == diffrax.RESULTS.max_steps_reached,
        "t_end": t_end[-1],
        "num_floor_steps": floors[0].num_forced if floors else zero,
        "num_floor_rejections": floors[0].num_refused if floors else zero,
        "spectral": records[0] if records else None,
    }


def run_stats(raw: dict, *, seeded: bool = False) -> dict:
    """``stats`` of a run from :func:`solve`'s (host) output; per-seed lists when ``seeded``.

    ``status`` is ``"success"``, ``"max_steps_reached"``, ``"diverged"`` (a non-finite
    observable) or ``"diffrax result <text>"``.
    """
    s = raw["stats"]
    per = (lambda a: [int(x) for x in np.ravel(a)]) if seeded else (lambda a: int(a))
    ok = np.all(raw["success"])
    saved = np.isfinite(np.asarray(raw["t"]))  # Diffrax fills unreached save times with inf
    finite = np.isfinite(np.asarray(raw["obs"]["loss"])[saved]).all()
    if not finite:
        status = "diverged"
    elif ok:
        status = "success"
    elif np.any(raw["max_steps_reached"]):
        status = "max_steps_reached"
    else:
        status = "diffrax result: not successful"
    return {
        "num_steps": per(s["num_steps"]),
        "num_accepted_steps": per(s["num_accepted_steps"]),
        "num_rejected_steps": per(s["num_rejected_steps"]),
        "num_floor_steps": per(raw["num_floor_steps"]),
        "num_floor_rejections": per(raw["num_floor_rejections"]),
        "status": status,
        "t_reached": (
            [float(x) for x in np.ravel(raw["t_end"])] if seeded else float(raw["t_end"])
        ),
    }
