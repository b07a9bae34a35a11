"""Blocks of save intervals: how a direct call runs its segments in few compiled calls.

A direct (unbatched) call runs its save intervals in *blocks*: one compiled call runs up to
``m`` intervals in turn (a ``while_loop`` whose bound ``m`` is traced) and at most ``cap``
steps in all, writing each interval's record into a buffer of :data:`CAPACITY` slots. ``m``
and ``cap`` are chosen on the host from the measured times so that one call takes about
:data:`TARGET_SECONDS` (:class:`Pace`): a cheap run makes few calls (the per-call cost of
dispatch and transfer is paid once per block, not once per save), and an expensive one, or one
with a long save interval, still returns to Python about every half second (a block may end
inside an interval, which the next block continues), so that signals and checkpoints are
handled promptly. Every run shares one compilation (the capacity is fixed, the bounds, ``m``
and ``cap`` are arrays), and the intervals compute the same values whatever the blocks are
(a paused solve restarts exactly: :func:`gradflow.dynamics._core.segment`): an interrupted and
resumed run equals the uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

#: Slots of the record buffer of one block (fewer when one save's record is large).
CAPACITY = 64
#: Wall time one block aims at, in seconds.
TARGET_SECONDS = 0.5
#: The record buffer of one block stays under this many bytes.
BUFFER_BYTES = 2**27
#: Steps of the first block; no block makes more than :data:`MAX_STEPS`.
FIRST_STEPS = 64
MAX_STEPS = 2**31 - 1  # an int32 also without x64


def capacity(record_bytes: int) -> int:
    """Slots of a block's buffer for a record of ``record_bytes`` bytes per save (a power of
    two, at most :data:`CAPACITY`, at least 1)."""
    k = CAPACITY
    while k > 1 and k * max(int(record_bytes), 1) > BUFFER_BYTES:
        k //= 2
    return k


def record_bytes(obs0: dict) -> int:
    return int(sum(np.asarray(v).nbytes for v in obs0.values()))


def next_size(elapsed: float, done: int, first: bool, limit: int) -> int:
    """Intervals for the next block: about :data:`TARGET_SECONDS` at the measured rate (one
    after the first block, whose time includes compilation), between 1 and ``limit``, and at
    most twice the last block: a run whose intervals grow dearer (an adaptive flow that meets
    stiffness) still comes back, and reports its progress, about every half second."""
    if first or done < 1:
        return 1
    per = max(elapsed / done, 1e-9)
    return int(max(1, min(limit, 2 * done, TARGET_SECONDS // per)))


def pad(x: np.ndarray, start: int, k: int) -> np.ndarray:
    """``x[start : start + k]`` padded to ``k`` entries with its last one (never computed)."""
    part = np.asarray(x)[start : start + k]
    if len(part) < k:
        part = np.concatenate([part, np.repeat(part[-1:], k - len(part), axis=0)])
    return part


class Pace:
    """The step bound of the next block: :data:`FIRST_STEPS` for the first (its time includes
    compilation), then the steps that take about :data:`TARGET_SECONDS` at the measured rate
    (growing at most eightfold from one block to the next). ``with pace.timed() as cap:``
    runs a block of at most ``cap`` steps; set ``pace.steps`` to the steps it made."""

    def __init__(self):
        self.cap, self.steps, self.first = FIRST_STEPS, 0, True

    @contextlib.contextmanager
    def timed(self):
        clock = time.perf_counter()
        self.steps = 0
        yield jnp.asarray(self.cap)
        elapsed = time.perf_counter() - clock
        if not self.first and self.steps >= 1:
            per = max(elapsed / self.steps, 1e-9)
            self.cap = int(max(1, min(8 * self.cap, TARGET_SECONDS / per, MAX_STEPS)))
        self.first = False


@eqx.filter_jit
def run_block(step, carry, args, xs, m, budget, axis, cap, like):
    """Intervals ``j = 0 .. m-1`` of ``xs`` (a pytree of arrays, intervals along axis 0), at
    most ``cap`` steps in all: ``step(carry, args, x_j, allowed) -> (carry, record,
    num_steps, ok, reached)`` makes at most ``allowed`` steps of interval ``j`` from where
    ``carry`` stands, with ``x_j`` the slices ``[j : j+1]`` and the record's time axis
    ``axis`` of length 1; ``reached``: the interval is complete (a block that runs out of
    steps inside an interval leaves its carry there, and the next block continues it).
    Stops after an interval with ``ok`` false or once the steps reach ``budget`` (the run's)
    or ``cap`` (the block's). Returns ``(carry, buffer, done, steps, ok)``: the records of
    the ``done`` intervals completed (or failed) in a buffer as long as ``xs`` (entries
    ``>= done`` are not records), the steps made and whether the last piece succeeded.
    ``like``: one save's record (the run's first, ``obs0``), whose shapes and dtypes size the
    buffer: the record ``step`` returns has them (checked where the loop is traced), so the
    step is traced once, not a second time by ``jax.eval_shape`` (about 1 s of tracing for a
    flow, a third of the cost of tracing the block)."""
    k = jax.tree.leaves(xs)[0].shape[0]
    buffer = jax.tree.map(
        lambda s: jnp.zeros(s.shape[:axis] + (k,) + s.shape[axis + 1 :], s.dtype), like
    )

    zero = jnp.zeros((), jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    limit = jnp.minimum(jnp.asarray(budget, zero.dtype), jnp.asarray(cap, zero.dtype))

    def cond(state):
        j, _, _, _, go, _ = state
        return (j < m) & go

    def body(state):
        j, c, buf, total, _, _ = state
        x = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, j, 1), xs)
        c, rec, steps, ok, reached = step(c, args, x, limit - total)
        _check_record(rec, buf)
        ok, reached = jnp.asarray(ok), jnp.asarray(reached)
        buf = jax.tree.map(
            lambda b, r: jax.lax.dynamic_update_slice_in_dim(b, r, j, axis),
            buf,
            rec,
        )
        steps = jnp.asarray(steps, total.dtype)
        total = total + steps
        # a piece that neither finished its interval nor made a step cannot make progress
        go = ok & (total < limit) & (reached | (steps > 0))
        return j + (reached | ~ok).astype(j.dtype), c, buf, total, go, ok

    state = (zero, carry, buffer, zero, jnp.asarray(True), jnp.asarray(True))
    done, carry, buffer, total, _, ok = jax.lax.while_loop(cond, body, state)
    return carry, buffer, done, total, ok


def _check_record(rec, buf):
    """At trace time: ``rec`` (one interval's record) has the keys, dtypes and number of axes
    of the buffer built from ``like``; anything else is a bug, never a cast (a shape that
    differs off the time axis fails in ``dynamic_update_slice``)."""
    got = jax.tree.structure(rec), [(r.dtype, r.ndim) for r in jax.tree.leaves(rec)]
    want = jax.tree.structure(buf), [(b.dtype, b.ndim) for b in jax.tree.leaves(buf)]
    if got != want:
        raise AssertionError(f"a block's record {got} does not match its first record {want}")


def take(buffer: dict, done: int, axis: int) -> dict:
    """The first ``done`` records of a (host) buffer."""
    return {k: np.take(np.asarray(v), np.arange(done), axis=axis) for k, v in buffer.items()}
