"""Size limits of a scenario, checked after validation and before anything is computed.

A scenario whose sizes are valid but far beyond what a run can finish or hold (``t1 = 1e12``,
``save_every = 1e-9``, a width of ``1e9``, ``1e9`` seeds) is refused with one line naming the
key, its value, the estimate and the limit; ``gradflow run --no-limits`` (``limits=False`` in
:func:`check_limits`) lifts the limits. The estimates, per run:

* ``weights``: the network's parameter count ``P`` (sized with ``jax.eval_shape``: nothing is
  allocated) against :data:`LIMITS` ``["weights"]``;
* ``save_points``: ``t1 / save_every + 1``;
* ``steps``: GD/SGD ``t1 / lr``, the fixed-step SDE ``t1 / dt0``, the flow its ``max_steps``;
* ``memory``: the saved trajectory, ``save_points × seeds × (observables + P if weights are
  recorded)`` floats, plus ``seeds × P × 16`` floats of solver and optimizer state, in bytes;
* ``work``: the floating-point operations of the gradients, ``6 · P · (batch or N) · steps ·
  seeds`` (the flow: its ``max_steps`` is a bound, not an estimate, and is left out).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax

from .._validate import ConfigError
from ..dynamics._core import MAX_SAVE_POINTS

if TYPE_CHECKING:
    from ._config import Scenario

#: The limits (documented in docs/scenarios.md, "Limits"); ``--no-limits`` lifts them all.
LIMITS = {
    "weights": 5 * 10**7,  # 400 MB per copy in float64
    "seeds": 10_000,
    "save_points": 10**6,
    "steps": 10**9,
    "memory": 16 * 2**30,  # bytes
    "work": 10**16,  # flops: about 12 days at 10 GFLOP/s
}

#: floats recorded per save point besides the weights (a generous bound on the observables)
_OBSERVABLE_FLOATS = 64


def _bad(key: str, value, estimate: str, limit: str) -> ConfigError:
    return ConfigError(
        f"{key}={value!r} is not allowed; {estimate}, above the limit {limit} "
        "(gradflow run --no-limits lifts the limits)"
    )


def _time_key(config: Scenario, section: str, key: str) -> str:
    """The key the user set: ``<section>.<key>`` (e.g. ``flow.save_every``) when the run's own
    table sets it, else ``time.<key>``."""
    table = config.table.get(section)
    return f"{section}.{key}" if isinstance(table, dict) and key in table else f"time.{key}"


def num_weights(config: Scenario) -> int:
    """The parameter count of ``config``'s network, without building its arrays."""
    import equinox as eqx

    from ._run import build_network

    shapes = eqx.filter_eval_shape(lambda: build_network(config))
    leaves = [leaf for leaf in jax.tree.leaves(shapes) if hasattr(leaf, "shape")]
    return int(sum(math.prod(leaf.shape) for leaf in leaves))


def check_limits(config: Scenario, limits: bool = True) -> dict:
    """Raise :class:`ConfigError` if ``config`` exceeds :data:`LIMITS` (unless ``limits`` is
    false); returns the estimates per run label."""
    params = num_weights(config)
    model_key = "model.channels" if config.model["kind"] == "cnn" else "model.widths"
    if limits and params > LIMITS["weights"]:
        value = config.model.get("widths", config.model.get("channels", config.model["kind"]))
        raise _bad(
            model_key if config.model["kind"] != "paper-cnn" else "model.kind",
            list(value) if isinstance(value, tuple) else value,
            f"the network has {params:.3g} weights",
            f"{LIMITS['weights']:.0e}",
        )
    n = config.dataset.n_train
    estimates = {}
    for spec in config.runs:
        o, section = spec.options, spec.dynamics
        seeds = o.get("seeds") or 1
        t1 = o["t1"]
        save_every = o.get("save_every")
        points = (t1 / save_every if save_every else 100) + 1
        if section in ("gd", "sgd"):
            steps = t1 / o["lr"]
        elif section == "sde":
            steps = t1 / (o.get("dt0") or o["lr"] / 4)
        else:
            steps = o.get("max_steps") or 0
        weights = "weights" in tuple(o.get("observables") or ())
        memory = 8 * (points * seeds * (_OBSERVABLE_FLOATS + (params if weights else 0)))
        memory += 8 * 16 * seeds * params
        batch = o.get("batch_size") or n
        work = 0.0 if section == "flow" else 6.0 * params * batch * steps * seeds
        estimates[spec.label] = dict(
            save_points=points, steps=steps, memory=memory, work=work, seeds=seeds
        )
        every_key = _time_key(config, section, "save_every")
        t1_key = _time_key(config, section, "t1")
        if points > MAX_SAVE_POINTS:  # beyond any memory: refused even with --no-limits
            raise ConfigError(
                f"{every_key}={save_every!r} is not allowed; run {spec.label} would save "
                f"{points:.3g} times (t1 = {t1:g}), more than any memory holds (at most "
                f"{MAX_SAVE_POINTS:.0e}, even with --no-limits)"
            )
        if not limits:
            continue
        key = section if section != "flow" else "flow"
        if seeds > LIMITS["seeds"]:
            raise _bad(f"{key}.seeds", seeds, f"run {spec.label} has {seeds} seeds", "10000")
        if points > LIMITS["save_points"]:
            raise _bad(
                every_key,
                save_every,
                f"run {spec.label} would save {points:.3g} times (t1 = {t1:g})",
                f"{LIMITS['save_points']:.0e}",
            )
        if steps > LIMITS["steps"]:
            name = f"{key}.max_steps" if section == "flow" else t1_key
            value = o.get("max_steps") if section == "flow" else t1
            raise _bad(
                name, value, f"run {spec.label} takes {steps:.3g} steps", f"{LIMITS['steps']:.0e}"
            )
        if memory > LIMITS["memory"]:
            raise _bad(
                every_key if weights else f"{key}.seeds",
                save_every if weights else seeds,
                f"run {spec.label} would hold about {memory / 2**30:.3g} GiB",
                "16 GiB",
            )
        if work > LIMITS["work"]:
            raise _bad(
                t1_key,
                t1,
                f"run {spec.label} needs about {work:.2g} floating-point operations",
                f"{LIMITS['work']:.0e}",
            )
    return estimates
