"""Interruption, checkpoints and resume of the direct (unbatched) calls of every dynamics.

A direct call of ``gf.flow``, ``gf.flow(noise=...)`` or ``gf.sgd`` runs its compiled loop in
*segments* of one save interval each, in compiled calls of about half a second bounded in
steps (blocks, :mod:`._blocks`; one compilation, the bounds are arrays; a block may end inside
a segment), so control comes back to Python about every half second whatever the save
interval:

* SIGINT / SIGTERM received during a run (in the main thread) end it after the current
  block: the partial trajectory (``stats["status"] == "interrupted"``, ``stats["t_reached"]``)
  is raised in :class:`Interrupted` (a ``KeyboardInterrupt``), after the checkpoint, if one is
  kept, has been written.
* ``checkpoint=PATH`` keeps the full state of the run (parameters, optimizer state, solver and
  controller state, the save index, the observables so far) in one ``.npz`` file, written
  atomically (a temporary file in the same folder, ``fsync``, ``os.replace``) every
  ``checkpoint_every`` save intervals or ``checkpoint_minutes`` minutes and at an interruption, and
  removed when the run ends.
* ``resume_from=PATH`` (or a :class:`Checkpoint`) continues such a run; the result is that of
  the uninterrupted run (bit for bit: both run the same segments on the same values).

A checkpoint file holds no pickles: the flattened leaves of the run's state, named
``leaf00000, ...``, the observables, and a JSON header (the run's fingerprint, the save index,
host-side counters) as a byte array; ``np.load(allow_pickle=False)`` reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import jax
import numpy as np

from .._validate import bad_value

FORMAT = "gradflow-checkpoint-1"


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM between two segments.

    ``.trajectory`` is the partial :class:`gradflow.Trajectory` (``stats["status"] ==
    "interrupted"``, ``stats["t_reached"]``), ``.signum`` the signal, ``.checkpoint`` the path
    of the checkpoint written (None without ``checkpoint=``)."""

    def __init__(self, message: str, trajectory=None, signum: int = signal.SIGINT, checkpoint=None):
        super().__init__(message)
        self.trajectory = trajectory
        self.signum = int(signum)
        self.checkpoint = checkpoint

    @property
    def exit_code(self) -> int:
        """The shell's exit status for the signal: 130 (SIGINT), 143 (SIGTERM)."""
        return 128 + self.signum


@dataclasses.dataclass
class Checkpoint:
    """The state of a run between two segments (see the module docstring)."""

    fingerprint: str
    index: int  # segments done = save points computed after the first
    leaves: list  # the run's state, flattened (numpy arrays)
    obs: dict  # name -> observables so far (time along ``time_axis``)
    info: dict  # host-side counters (JSON)
    describe: object = ""  # the run's settings (a dict) or a summary

    def save(self, path) -> Path:
        """Write atomically: a temporary file next to ``path``, fsync, ``os.replace``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "index": int(self.index),
            "num_leaves": len(self.leaves),
            "obs": sorted(self.obs),
            "info": self.info,
            "describe": self.describe,
        }
        arrays = {f"leaf{i:05d}": np.asarray(a) for i, a in enumerate(self.leaves)}
        arrays.update({f"obs__{k}": np.asarray(v) for k, v in self.obs.items()})
        arrays["header"] = np.frombuffer(json.dumps(header, default=_jsonable).encode(), np.uint8)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            with contextlib.suppress(OSError):  # make the rename itself durable
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path, where: str = "resume_from") -> Checkpoint:
        """Read a checkpoint file; a missing or foreign file is a one-line ``ValueError``."""
        p = Path(path)
        if not p.is_file():
            raise bad_value(where, "resume_from", str(path), _ALLOWED + " (no such file)")
        try:
            with np.load(p, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                if header.get("format") != FORMAT:
                    raise KeyError("format")
                leaves = [z[f"leaf{i:05d}"] for i in range(header["num_leaves"])]
                obs = {k: z[f"obs__{k}"] for k in header["obs"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise bad_value(
                where, "resume_from", str(path), _ALLOWED + " (it is not a gradflow checkpoint)"
            ) from None
        return cls(
            header["fingerprint"],
            int(header["index"]),
            leaves,
            obs,
            header["info"],
            header.get("describe", ""),
        )


_ALLOWED = "use the path of a checkpoint file written by checkpoint=..., a gf.Checkpoint, or None"


def resolve(where: str, resume_from, fingerprint: str, describe: str) -> Checkpoint | None:
    """The checkpoint to resume from (None: start afresh), checked against this run."""
    if resume_from is None:
        return None
    if isinstance(resume_from, Checkpoint):
        ckpt = resume_from
    elif isinstance(resume_from, (str, os.PathLike)):
        ckpt = Checkpoint.load(resume_from, where)
    else:
        raise bad_value(where, "resume_from", type(resume_from).__name__, _ALLOWED)
    if ckpt.fingerprint != fingerprint:
        shown = resume_from if not isinstance(resume_from, Checkpoint) else "a gf.Checkpoint"
        old, new = ckpt.describe, describe
        if isinstance(old, dict) and isinstance(new, dict):
            diff = differences(_canonical(old), _canonical(new))
            what = "; ".join(diff) or "the initial state, the key or the save times differ"
            what = f"({what})"
        else:
            what = f"({_summary(old) or 'unknown'}); this run is {_summary(new)}"
        raise bad_value(
            where,
            "resume_from",
            str(shown),
            f"it is the checkpoint of a different run {what}: pass the checkpoint that this "
            "same call wrote",
        )
    return ckpt


def _summary(describe) -> str:
    return describe.get("run", "") if isinstance(describe, dict) else str(describe)


def _canonical(value):
    return json.loads(json.dumps(value, default=_jsonable, sort_keys=True))


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key = OLD in the checkpoint, NEW now`` for every dotted key whose value differs."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        if key == "run" and not prefix:
            continue
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} = {json.dumps(a)} in the checkpoint, {json.dumps(b)} now")
    return out


def fingerprint(*parts) -> str:
    """A hash of everything that fixes a run (problem, settings, initial state, key)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, (np.ndarray, jax.Array)) or hasattr(part, "dtype"):
            a = np.asarray(key_data(part))
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).tobytes())
        else:
            digest.update(json.dumps(part, default=_jsonable, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def key_data(a):
    """A PRNG key as its raw integers (typed keys included); other arrays unchanged."""
    if hasattr(a, "dtype") and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(a)
    return a


def flatten(carry) -> list:
    return [np.asarray(key_data(a)) for a in jax.tree.leaves(carry)]


def unflatten(where: str, template, leaves: list, path):
    """``leaves`` (from a checkpoint) in the structure of ``template`` (this run's state)."""
    ref = jax.tree.leaves(template)
    treedef = jax.tree.structure(template)
    ok = len(ref) == len(leaves) and all(
        np.shape(key_data(r)) == np.shape(x) for r, x in zip(ref, leaves)
    )
    if not ok:
        raise bad_value(
            where, "resume_from", str(path), "its state does not fit this run: " + _ALLOWED
        )
    out = []
    for r, x in zip(ref, leaves):
        if hasattr(r, "dtype") and jax.dtypes.issubdtype(r.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(x, impl=jax.random.key_impl(r)))
        else:
            out.append(jax.numpy.asarray(x, dtype=np.asarray(r).dtype))
    return jax.tree.unflatten(treedef, out)


class _Signals:
    """SIGINT and SIGTERM recorded as a flag (main thread only), restored on exit."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[s] = signal.signal(s, self._handler)
                except (ValueError, OSError):  # pragma: no cover - not settable here
                    pass
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False


def catching_signals() -> _Signals:
    """A context in which SIGINT/SIGTERM set ``.signum`` instead of stopping Python."""
    return _Signals()


@dataclasses.dataclass
class Policy:
    """When to write checkpoints: every ``every`` segments or ``minutes`` minutes."""

    path: Path | None = None
    every: int | None = None
    minutes: float | None = None
    _last: float = dataclasses.field(default_factory=time.monotonic)

    def due(self, since: int) -> bool:
        """Whether to write now, ``since`` save intervals after the last write (or the start)."""
        if self.path is None:
            return False
        if self.every is not None and since >= self.every:
            return True
        return self.minutes is not None and time.monotonic() - self._last >= 60 * self.minutes

    def written(self):
        self._last = time.monotonic()


def policy(where, checkpoint, checkpoint_every, checkpoint_minutes) -> Policy:
    """Check the checkpoint arguments; default cadence: every 50 segments or 5 minutes."""
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise bad_value(where, "checkpoint", checkpoint, "use a file path or None")
    if checkpoint is not None:
        folder = Path(checkpoint).expanduser().parent
        if Path(checkpoint).expanduser().is_dir():
            raise bad_value(
                where, "checkpoint", os.fspath(checkpoint), "it is a folder; use a file path"
            )
        if not folder.is_dir():
            raise bad_value(
                where,
                "checkpoint",
                os.fspath(checkpoint),
                f"its folder {str(folder)!r} does not exist; create it first",
            )
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, (int, np.integer))
        or checkpoint_every < 1
    ):
        raise bad_value(where, "checkpoint_every", checkpoint_every, "use an integer >= 1 or None")
    if checkpoint_minutes is not None and (
        isinstance(checkpoint_minutes, bool)
        or not isinstance(checkpoint_minutes, (int, float))
        or not checkpoint_minutes > 0
    ):
        raise bad_value(where, "checkpoint_minutes", checkpoint_minutes, "use a number > 0 or None")
    if checkpoint_every is None and checkpoint_minutes is None:
        checkpoint_every, checkpoint_minutes = 50, 5.0
    return Policy(
        None if checkpoint is None else Path(checkpoint), checkpoint_every, checkpoint_minutes
    )


def drive(
    *,
    n: int,
    advance,
    carry,
    obs0: dict,
    time_axis: int,
    info: dict,
    fp: str,
    describe: str,
    ckpt: Checkpoint | None,
    where: str,
    resume_path,
    pol: Policy,
    stop,
    block: int = 1,
):
    """Run segments ``index .. n-1`` in blocks (:mod:`._blocks`): ``advance(carry, i, m, info)
    -> (carry, obs, info, done)`` runs up to ``m`` segments from ``i`` (``done`` of them; the
    host observables of save points ``i + 1 .. i + done``); ``stop(info)`` ends the run early
    (diverged, out of steps). A block holds at most ``block`` segments and, with checkpoints
    every ``k`` segments, at most ``k``. Returns ``(carry, obs, index, info, signum)`` with the
    observables concatenated along ``time_axis``; ``signum`` is the signal that interrupted it,
    or None.
    """
    from ._blocks import next_size

    if ckpt is not None:
        carry = unflatten(where, carry, ckpt.leaves, resume_path)
        chunks = [{k: np.asarray(v) for k, v in ckpt.obs.items()}]
        index, info = ckpt.index, dict(ckpt.info)
    else:
        chunks, index = [{k: np.asarray(v) for k, v in obs0.items()}], 0

    def snapshot(index, carry, info):
        obs = {k: np.concatenate([c[k] for c in chunks], axis=time_axis) for k in chunks[0].keys()}
        return Checkpoint(fp, index, flatten(carry), obs, info, describe)

    signum, size, first, saved_at = None, 1, True, index
    limit = block if pol.path is None or pol.every is None else max(1, min(block, pol.every))
    with catching_signals() as caught:
        while index < n and not stop(info):
            clock = time.perf_counter()
            carry, out, info, done = advance(carry, index, min(size, n - index), info)
            size = next_size(time.perf_counter() - clock, done, first, limit)
            first = False
            chunks.append({k: np.asarray(v) for k, v in out.items()})
            index += done
            if caught.signum is not None:
                signum = caught.signum
                break
            if index < n and pol.due(index - saved_at) and not stop(info):
                snapshot(index, carry, info).save(pol.path)
                pol.written()
                saved_at = index
        if signum is not None and pol.path is not None:
            snapshot(index, carry, info).save(pol.path)
    obs = {k: np.concatenate([c[k] for c in chunks], axis=time_axis) for k in chunks[0].keys()}
    if signum is None and pol.path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(pol.path)
    return carry, obs, index, info, signum


def interrupted(where: str, traj, signum: int, pol: Policy, t_reached: float):
    """Mark ``traj`` interrupted and return the :class:`Interrupted` to raise."""
    traj.stats["status"] = "interrupted"
    traj.stats["t_reached"] = float(t_reached)
    name = signal.Signals(signum).name
    saved = f"; checkpoint {pol.path}" if pol.path is not None else ""
    return Interrupted(
        f"{where}: interrupted by {name} at t={t_reached:.6g}{saved}",
        traj,
        signum,
        None if pol.path is None else pol.path,
    )


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    return str(obj)


__all__ = ["Checkpoint", "Interrupted"]
