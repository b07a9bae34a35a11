"""The output folder of ``gradflow run`` / ``gradflow sweep``: checked before anything is
computed, one writer at a time, no silent overwrite.

* :func:`check_out_dir`: ``--out`` must be a folder that exists and is writable, or a path
  whose nearest existing ancestor is a writable folder (it is created when the run starts);
  every file name the scenario writes must fit the file system (255 bytes). Results of the
  same scenario already in the folder (``<name>.nc``, ``<name>__*.nc``, ``<name>.png``,
  ``<name>.sweep.nc``, ``<name>.sweep/``) are refused unless ``overwrite`` (``--overwrite``:
  the old files of the scenario are removed first, so that old and new runs never mix) or
  ``resume`` (``--resume`` continues them). Nothing is created or written by the check.
* :class:`OutputLock`: ``<out>/.<name>.lock`` (created with ``O_EXCL``, holding the pid) for
  the duration of a run: a second run of the same scenario into the same folder is refused
  while the first one's process is alive; a lock left by a dead process is taken over.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from .._validate import ConfigError

NAME_MAX = 255


def _existing(out: Path, name: str) -> list[Path]:
    if not out.is_dir():
        return []
    found = [p for p in (out / f"{name}.nc", out / f"{name}.png") if p.exists()]
    found += sorted(out.glob(f"{name}__*.nc"))
    found += [p for p in (out / f"{name}.sweep.nc", out / f"{name}.sweep") if p.exists()]
    found += [p for p in (out / f"{name}.sweep.png",) if p.exists()]  # the sweep's summary
    return found


def check_out_dir(
    out, name: str, labels=(), *, overwrite: bool = False, resume: bool = False
) -> Path:
    """The checked output folder (see the module docstring); raises :class:`ConfigError`."""
    text = str(out)
    out = Path(out).expanduser()
    if not text.strip():
        raise ConfigError("--out '' is not allowed; use a folder path")
    for part in out.parts:
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(
                f"--out {text!r} is not allowed; a path component is longer than {NAME_MAX} bytes"
            )
    longest = max([f"{name}__{label}.nc" for label in labels] + [f"{name}.sweep.nc"], key=len)
    if len(f".{longest}.tmp".encode()) > NAME_MAX:  # the atomic write's temporary name
        raise ConfigError(
            f"scenario.name={name!r} is not allowed; the file {longest[:40]}... would be longer "
            f"than the file system's {NAME_MAX} bytes (with its temporary prefix); use a "
            "shorter name"
        )
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {text!r} is not allowed; it is a file, use a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(f"--out {text!r} is not allowed; the folder is not writable")
    else:
        parent = out.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise ConfigError(f"--out {text!r} is not allowed; {str(parent)!r} is a file")
        if not os.access(parent, os.W_OK | os.X_OK) or not _creatable(parent):
            raise ConfigError(
                f"--out {text!r} is not allowed; {str(parent)!r} does not accept new folders"
            )
    old = _existing(out, name)
    if old and not (overwrite or resume):
        raise ConfigError(
            f"--out {text!r} is not allowed; it holds results of scenario {name!r} "
            f"({old[0].name}{' and more' if len(old) > 1 else ''}); pass --overwrite to replace "
            "them, --resume to continue them, or another --out"
        )
    return out


def _creatable(folder: Path) -> bool:
    """``os.access`` says yes for root and on some file systems (``/proc``): the truth is a
    ``statvfs`` that works and a file system that is not read-only or pseudo."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    if st.f_flag & os.ST_RDONLY:
        return False
    return st.f_blocks > 0  # /proc, /sys: no blocks


def remove_old(out: Path, name: str) -> None:
    """``--overwrite``: the scenario's old results, removed before the new run writes."""
    for path in _existing(out, name):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


_HELD: set = set()  # the lock files this process holds (release_all: an abandoned sweep)


def release_all() -> None:
    """Remove every lock file this process holds (before ``os._exit`` after a signal)."""
    for path in list(_HELD):
        Path(path).unlink(missing_ok=True)
        _HELD.discard(path)


class OutputLock:
    """``with OutputLock(out, name):`` one writer of scenario ``name`` in folder ``out``."""

    def __init__(self, out, name: str):
        self.path = Path(out) / f".{name}.lock"
        self.held = False

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(*owner):
                    pid, host = owner
                    where = "" if host == socket.gethostname() else f" on host {host}"
                    raise ConfigError(
                        f"--out {str(self.path.parent)!r} is not allowed; another gradflow "
                        f"process (pid {pid}){where} is writing scenario "
                        f"{self.path.name[1:-5]!r} there (lock file {self.path}); wait for "
                        "it, use another --out, or remove the lock file if that process is gone"
                    ) from None
                self.path.unlink(missing_ok=True)  # a dead writer's lock
                continue
            self.held = True
            _HELD.add(str(self.path))
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}\n")
            return self
        raise ConfigError(f"--out {str(self.path.parent)!r}: cannot take the lock {self.path}")

    def _owner(self) -> tuple[int, str] | None:
        """``(pid, host)`` of the lock's writer, or None for an unreadable lock."""
        try:
            pid, host = self.path.read_text().split()[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
            _HELD.discard(str(self.path))
            self.held = False
        return False


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():  # a writer on another host (shared file system): alive
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
