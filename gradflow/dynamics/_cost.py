"""What a run cost, added to its ``stats`` by every dynamics alike.

* ``wall_time``: seconds from the call to its return, compilation included (a batched run of
  a sweep: the whole vmapped call's, shared by its ``batch_runs`` runs);
* ``num_gradient_evaluations``: the flow's count (``_ode.evaluations``) where it has one; the
  SDE's evaluations of its fused drift-and-noise term (one per Euler step, three per
  ``euler-adaptive`` step: a full step and two half steps; per seed); SGD/GD's mini-batch
  gradients (one per step, of ``batch_size`` samples; a single run that diverged: up to the
  step that did; a seed ensemble runs every step);
* ``peak_memory_bytes``: the process's peak resident memory when the run ended (its
  high-water mark since the process started, not the run's own); and
  ``peak_device_memory_bytes`` where the accelerator reports its peak (GPU).

A run stopped by :class:`gradflow.RunFailed` or :class:`gradflow.Interrupted` gets them on
the partial trajectory it carries.
"""

from __future__ import annotations

import functools
import sys
import time


def peak_memory() -> dict:
    """``peak_memory_bytes`` of the process, and ``peak_device_memory_bytes`` if known."""
    out = {}
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_memory_bytes"] = int(rss if sys.platform == "darwin" else rss * 1024)
    except (ImportError, OSError):  # not on Windows
        pass
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_memory_bytes"] = int(stats["peak_bytes_in_use"])
    return out


def _evaluations(traj) -> dict:
    stats, config = traj.stats, traj.config
    if "num_gradient_evaluations" in stats:
        return {}
    if traj.kind == "sde" and "num_steps" in stats:
        per = 3 if stats.get("adaptive") else 1
        steps = stats["num_steps"]
        if isinstance(steps, list):
            return {"num_gradient_evaluations": [per * s for s in steps]}
        return {"num_gradient_evaluations": per * int(steps)}
    if traj.kind in ("sgd", "gd") and "steps" in stats:
        done, status = int(stats["steps"]), stats.get("status")
        if status == "interrupted":
            done = int(round(float(stats["t_reached"]) / float(config["lr"])))
        elif status == "diverged" and config.get("seeds") is None:  # stopped at that step
            done = int(stats["diverged_at_step"]) + 1
        return {"num_gradient_evaluations": done}
    return {}


def stamp(traj, seconds: float, runs: int = 1) -> None:
    """Add the costs (module docstring) to ``traj.stats``; ``runs``: the batch it ran in."""
    if traj is None or not hasattr(traj, "stats"):
        return
    traj.stats["wall_time"] = float(seconds)
    if runs > 1:
        traj.stats["batch_runs"] = int(runs)
    traj.stats.update(_evaluations(traj))
    traj.stats.update(peak_memory())


def timed(dynamics):
    """Decorate a dynamics (``flow``, ``sde``, ``sgd``): its Trajectory, or the partial one
    of the exception it raises, gets :func:`stamp`'s costs. A :class:`Plan` passes through
    (its costs are stamped where it runs: :func:`gradflow.dynamics.run_plans`)."""

    @functools.wraps(dynamics)
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            out = dynamics(*args, **kwargs)
        except BaseException as err:  # RunFailed, Interrupted (a KeyboardInterrupt)
            if getattr(err, "trajectory", None) is not None:
                stamp(err.trajectory, time.perf_counter() - start)
            raise
        if hasattr(out, "stats"):
            stamp(out, time.perf_counter() - start)
        return out

    return run
