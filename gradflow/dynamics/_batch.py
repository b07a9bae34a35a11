"""Batching runs that differ only in traced values into one compiled, vmapped call.

``gf.simulate(..., _plan=True)`` (and so ``plan(gf.flow | gf.sgd, problem, **kw)``) builds a
:class:`Plan`: its core is :func:`gradflow.dynamics._driver.whole` — the dynamics' own
``init`` and then every save interval's ``advance`` in one block, the direct call's loop
without its pauses — its arguments, and ``finish``, which turns the core's (host) output into
a :class:`gradflow.Trajectory` (or raises, as the direct call would). (A run that cannot go in
segments, :func:`gradflow.simulate`, plans its one Diffrax solve instead.) :func:`run_plans` groups
plans whose arguments have the same *static* part (everything that is not an array: solver,
controller structure, batch size, number of save points, observables, ...) and the same array
shapes, stacks their arrays (λ, η, the data, initial states, keys, tolerances, save grids) and
runs each group as ONE ``jax.vmap`` of the core, compiled once per group.

What vmapping costs: a vmapped adaptive ODE solve steps until its slowest member has finished
(the members whose integration is done are masked but still computed), and its step sizes are
per member; a vmapped SGD run has the same number of steps per save interval only when η is
equal (otherwise the inner loop would run to the largest count, masking the others, which
measured slower than running them one by one: SGD plans batch only with equal save steps, i.e.
equal η). Pass
``batch=False`` (``[sweep] batch = false``) to run every plan on its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._cost import stamp


@dataclasses.dataclass
class Plan:
    """One run, ready to execute: ``finish(jax.device_get(core(*args)))``."""

    core: Callable
    args: tuple
    finish: Callable[[Any], Any]
    #: Plans batch together only when these agree too: values that bound the core's loops
    #: (SGD's save steps: a batch over different η would loop to the largest step count).
    batch_key: Any = None

    def run(self):
        return self.finish(jax.device_get(_jitted(self.core)(*self.args)))


_JITTED: dict = {}


def _jitted(core):
    if core not in _JITTED:
        _JITTED[core] = eqx.filter_jit(core)
    return _JITTED[core]


def _batched(core):
    key = ("vmap", core)
    if key not in _JITTED:

        def run(shared, stacked, static):
            # leaves equal across the batch (the data, a common η or save grid) stay unbatched,
            # so that the loops they bound stay unbatched loops
            def one(d):
                merged = jax.tree.map(
                    lambda a, b: a if b is None else b, shared, d, is_leaf=lambda x: x is None
                )
                return core(*eqx.combine(merged, static))

            return jax.vmap(one)(stacked)

        _JITTED[key] = eqx.filter_jit(run)
    return _JITTED[key]


def _same(xs) -> bool:
    first = xs[0]
    if all(x is first for x in xs):
        return True
    a = np.asarray(first)
    return all(np.shape(x) == a.shape and np.array_equal(np.asarray(x), a) for x in xs[1:])


def signature(plan: Plan):
    """What must agree for two plans to share a batch: the core, the tree of the arguments,
    their static leaves (everything that is not an array) and the shapes and dtypes of their
    arrays (one flattening: a sweep signs every plan)."""
    leaves, treedef = jax.tree.flatten(plan.args)
    return (plan.core, plan.batch_key, treedef, tuple(_leaf_signature(x) for x in leaves))


def _leaf_signature(leaf):
    if eqx.is_array(leaf):
        return ("array", leaf.shape, leaf.dtype.name)
    try:
        hash(leaf)
        return leaf
    except TypeError:
        return repr(leaf)


def groups_of(plans: Sequence[Plan]) -> list[list[int]]:
    """Indices of ``plans`` grouped by :func:`signature`, in order of first appearance."""
    found: list[tuple[Any, list[int]]] = []
    for i, plan in enumerate(plans):
        sig = signature(plan)
        for key, members in found:
            if key == sig:
                members.append(i)
                break
        else:
            found.append((sig, [i]))
    return [members for _, members in found]


def run_batch(plans: Sequence[Plan]) -> list:
    """Run plans of ONE signature as one vmapped call; returns each plan's finished result,
    or the exception its ``finish`` raised (with the call's wall time in its stats:
    :mod:`._cost`)."""
    start = time.perf_counter()
    parts = [eqx.partition(p.args, eqx.is_array) for p in plans]
    dynamics = [d for d, _ in parts]
    same = jax.tree.map(lambda *xs: _same(xs), *dynamics)
    if all(jax.tree.leaves(same)):  # one plan, or equal plans: one run, each finished apart
        out = jax.device_get(_jitted(plans[0].core)(*plans[0].args))
        copies = [out] if len(plans) == 1 else [jax.tree.map(np.array, out) for _ in plans]
        done = [_finished(p.finish, raw) for p, raw in zip(plans, copies)]
    else:
        static = parts[0][1]
        shared = jax.tree.map(lambda f, x: x if f else None, same, dynamics[0])
        stacked = jax.tree.map(
            lambda f, *xs: None if f else jnp.stack([jnp.asarray(x) for x in xs]), same, *dynamics
        )
        out = jax.device_get(_batched(plans[0].core)(shared, stacked, static))
        done = [
            _finished(p.finish, jax.tree.map(lambda a, i=i: a[i], out)) for i, p in enumerate(plans)
        ]
    seconds = time.perf_counter() - start
    for result in done:
        stamp(getattr(result, "trajectory", result), seconds, len(plans))
    return done


def _finished(finish, raw):
    try:
        return finish(raw)
    except Exception as err:  # noqa: BLE001 - a failed run is a value here (see run_plans)
        return err


def run_plans(plans: Sequence[Plan], batch: bool = True, report=None) -> list:
    """Every plan's result (a Trajectory, or the exception it raised), batching where the
    signatures agree (``batch=True``); ``report(k, m)``, if given, before each group (``k``
    plans finished, ``m`` in the group about to run) and after the last (``m = 0``)."""
    results: list = [None] * len(plans)
    groups = groups_of(plans) if batch else [[i] for i in range(len(plans))]
    finished = 0
    for idx in groups:
        if report is not None:
            report(finished, len(idx))
        for i, r in zip(idx, run_batch([plans[i] for i in idx])):
            results[i] = r
        finished += len(idx)
    if report is not None:
        report(finished, 0)
    return results


def plan(dynamics: Callable, problem, **kwargs) -> Plan:
    """The :class:`Plan` of ``dynamics(problem, **kwargs)`` (``gf.flow``, with ``noise=`` the
    SDE, or ``gf.sgd``), not
    yet run: ``run_plans([plan(gf.sgd, p, lr=lr, ...) for ...])`` batches them."""
    out = dynamics(problem, _plan=True, **kwargs)
    if not isinstance(out, Plan):
        raise ValueError(
            f"plan: {getattr(dynamics, '__name__', dynamics)!r} with these arguments has no "
            "plan; call it directly"
        )
    return out
