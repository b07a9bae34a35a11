"""The ``gradflow`` command.

    gradflow run FILE [--out DIR] [--set key=value ...] [--fast]
    gradflow sweep FILE [--out DIR] [--set ...] [--fast] [--workers K | --scheduler ADDR] [--resume]
    gradflow show PATH [--plot]
    gradflow info
    gradflow figs [--fast | --scale fast|full|paper] [--only NAME ...] [--out DIR]
    gradflow --version

``run`` validates the scenario (and every ``--set``) before computing anything, then writes
``DIR/<name>.nc``, one ``DIR/<name>__<run>.nc`` per run and ``DIR/<name>.png`` (DIR defaults to
``results/`` under the current directory) and prints a summary. Float64 is enabled first.

Exit status: 0 success; 2 bad input (one line ``gradflow: error: ...`` on stderr, nothing
computed, no file written); 3 a run diverged or blew up (its partial trajectory is written, the
others run on); 1 a run that failed otherwise (the flow ran out of ``max_steps``: its partial
trajectory is written too); 130 / 143
interrupted by SIGINT / SIGTERM (the partial trajectory, ``status = "interrupted"``, and a
checkpoint are written; ``gradflow run FILE --resume`` continues); 141 its output was cut by a
closed pipe (``gradflow info | head -1``: no traceback, the rest is dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

from . import __version__
from ._figs import NoCheckout, find_checkout, import_build
from ._figs import epilog as _figs_epilog
from ._optional import require
from ._trajectory import versions
from .dynamics._checkpoint import Interrupted
from .scenario import ConfigError, load_config
from .scenario import run as run_scenario
from .scenario import show as show_results
from .scenario import sweep as run_sweep
from .scenario._limits import check_limits
from .scenario._output import OutputLock, check_out_dir, release_all, remove_old
from .scenario._plausible import check_plausible

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED = 0, 1, 2, 3


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block: the same shape as every bad input
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gradflow",
        description="Gradient flows, SDEs and SGD of normalized "
        "homogeneous networks: run scenario files, report the environment.",
    )
    _add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run",
        help="run a scenario file (scenarios/*.toml)",
        description="Validate and run a scenario; write NetCDF results and a summary PNG.",
    )
    run.add_argument("file", metavar="FILE", help="the scenario TOML file")
    run.add_argument(
        "--out",
        metavar="DIR",
        default="results",
        help="output folder (default: results/ under the current directory)",
    )
    run.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="sets",
        help="override a key, e.g. --set sgd.lr=0.1 or --set "
        "problem.normalization=lm-all (values are TOML literals or bare strings); "
        "repeatable",
    )
    run.add_argument(
        "--fast",
        action="store_true",
        help="apply the scenario's [fast] table (a run of seconds, for checks)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    again = run.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted runs from their checkpoints, skip the finished ones "
        "(each file's configuration hash must match)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the scenario's results already in --out (they are refused otherwise)",
    )
    run.add_argument(
        "--no-limits",
        action="store_true",
        dest="no_limits",
        help="lift the size limits (weights, seeds, save points, steps, memory, work) and "
        "run a learning rate beyond 10× 2/λ_max (with a warning)",
    )
    # ---- sweep: a scenario with a [sweep] table ----
    sw = sub.add_parser(
        "sweep",
        help="run a scenario at every point of its [sweep] axes",
        description="Validate every point of a sweep, run them (batched where only traced "
        "values differ; on Dask workers with --workers/--scheduler) and write one NetCDF "
        "Dataset with the axes as dimensions.",
    )
    sw.add_argument("file", metavar="FILE", help="the scenario TOML file with a [sweep] table")
    sw.add_argument("--out", metavar="DIR", default="results", help="output folder")
    sw.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="sets",
        help="override a key at every point (repeatable)",
    )
    sw.add_argument("--fast", action="store_true", help="apply the scenario's [fast] table")
    where = sw.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        metavar="K",
        type=_nonnegative,
        default=0,
        help="a Dask LocalCluster of K worker processes (default 0: in this process)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="the address of a running Dask scheduler (e.g. tcp://host:8786)",
    )
    sw_again = sw.add_mutually_exclusive_group()
    sw_again.add_argument("--resume", action="store_true", help="skip the points already finished")
    sw_again.add_argument(
        "--overwrite", action="store_true", help="replace the sweep's results already in --out"
    )
    sw.add_argument(
        "--no-limits", action="store_true", dest="no_limits", help="lift the size limits"
    )
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    # ---- figs: paper_figs/ of the checkout the command runs in (gradflow/_figs.py) ----
    figs_parser = sub.add_parser(
        "figs",
        help="run (cached) the scenarios of the paper figures and draw them",
        description="Run every paper figure's scenarios (cached under paper_figs/cache/ by\n"
        "the hash of their configuration and code), draw each figure and print its verdict\n"
        "line. Runs inside a repository checkout: the first folder at or above the current\n"
        "directory holding paper_figs/ and a pyproject.toml naming gradflow. Its cache and\n"
        "PNGs are written there (or to --out), never over the committed figures unless\n"
        "--update-committed.",
        epilog=_figs_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    figs_parser.add_argument("--fast", action="store_true", help="shrunken scenarios (seconds)")
    figs_parser.add_argument(
        "--scale",
        choices=("fast", "full", "paper"),
        default=None,
        help="the profile: fast (= --fast), full (default), paper (the largest this machine "
        "finishes in about an hour; paper_figs/README.md)",
    )
    figs_parser.add_argument(
        "--only", nargs="+", default=[], metavar="NAME", help="only these figures (below)"
    )
    figs_parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for the PNGs (default: paper_figs/out/PROFILE/ of the checkout, git-ignored)",
    )
    figs_parser.add_argument(
        "--update-committed",
        action="store_true",
        dest="update_committed",
        help="write the PNGs over the profile's committed ones (full: paper_figs/figures/, "
        "paper: paper_figs/figures/paper/, fast: paper_figs/figures/fast/)",
    )
    figs_parser.add_argument(
        "--jobs",
        metavar="N",
        default="1",
        help="compute the figures' scenarios in N worker processes, the longest figure first, "
        "then draw them (default 1)",
    )
    _add_show(sub)
    sub.add_parser(
        "info",
        help="versions, devices and float precision",
        description="Print versions, JAX devices and the float precision in use.",
    )
    return parser


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; use an integer >= 0")
    return value


def _error(message: str) -> None:
    print(f"gradflow: error: {' '.join(str(message).split())}", file=sys.stderr)


class _Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM before a run has its own handler (imports, validation, a sweep)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = int(signum)


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


def _add_version(parser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"gradflow {__version__}", help="print the version"
    )


def _add_show(sub) -> None:
    show_parser = sub.add_parser(
        "show",
        help="summarize results: a run file, a sweep file or a results folder",
        description="Print a table of the results in PATH (a <name>.nc or <name>__<run>.nc "
        "file, a <name>.sweep.nc file or a folder of them): scenario, dynamics, status, t "
        "reached, wall time, the final observables and the predictions' gaps.",
    )
    show_parser.add_argument("path", metavar="PATH", help="a results file or folder")
    show_parser.add_argument(
        "--plot",
        action="store_true",
        help="also draw each scenario's or sweep's summary PNG next to its file",
    )


def _pipe_safe(main):
    """A closed stdout (``gradflow info | head -1``) ends the command quietly: no traceback,
    the output left is dropped, exit status 141 (128 + SIGPIPE) as for a shell command."""

    @functools.wraps(main)
    def wrapper(argv=None) -> int:
        try:
            code = main(argv)
            sys.stdout.flush()  # a pipe closed early shows here, not at interpreter exit
            return code
        except BrokenPipeError:
            with contextlib.suppress(OSError):  # the unflushed rest goes nowhere at exit
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return 128 + int(getattr(signal, "SIGPIPE", 13))

    return wrapper


@_pipe_safe
def main(argv=None) -> int:
    """Entry point of the ``gradflow`` console script; returns the exit status (130 / 143
    after SIGINT / SIGTERM at any moment, with one line on stderr)."""
    old = {s: signal.signal(s, _raise_signalled) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    except KeyboardInterrupt as err:  # start-up (imports, validation) or between two steps
        return _report_interrupt(err, "nothing more was computed")
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _report_interrupt(err: BaseException, kept: str) -> int:
    """One line on stderr for an interruption; the exit status 128 + the signal."""
    signum = int(getattr(err, "signum", signal.SIGINT))
    where = str(err) if str(err) else f"interrupted by {signal.Signals(signum).name}"
    print(f"gradflow: {where}; {kept}", file=sys.stderr, flush=True)
    return 128 + signum


def _main(argv) -> int:
    try:
        args = _parser().parse_args(argv)
    except _UsageError as err:
        _error(err)
        return EXIT_BAD_INPUT
    with _one_line_warnings():
        return _dispatch(args)


def _dispatch(args) -> int:
    jax.config.update("jax_enable_x64", True)
    if args.command == "info":
        return info()
    if args.command == "show":
        return show(args.path, plot=args.plot)
    if args.command == "figs":
        return figs(
            fast=args.fast,
            only=args.only,
            out=args.out,
            scale=args.scale,
            update_committed=args.update_committed,
            jobs=args.jobs,
        )
    if args.command == "sweep":
        return sweep(
            args.file,
            out=args.out,
            sets=args.sets,
            fast=args.fast,
            workers=args.workers,
            scheduler=args.scheduler,
            resume=args.resume,
            overwrite=args.overwrite,
            limits=not args.no_limits,
            progress=not args.quiet,
        )
    return run(
        args.file,
        out=args.out,
        sets=args.sets,
        fast=args.fast,
        progress=not args.quiet,
        resume=args.resume,
        overwrite=args.overwrite,
        limits=not args.no_limits,
    )


def sweep(
    file, *, out, sets, fast, workers, scheduler, resume, progress, overwrite=False, limits=True
) -> int:
    """``gradflow sweep``: validate every point, run, write; returns the exit status
    (0 every point succeeded, 3 some diverged, 1 some failed otherwise, 2 bad input)."""

    def compute():
        return run_sweep(
            file,
            sets=sets,
            fast=fast,
            out=out,
            workers=workers,
            scheduler=scheduler,
            resume=resume,
            overwrite=overwrite,
            limits=limits,
            progress=progress,
        )

    if workers or scheduler:
        try:
            require("distributed", "gradflow sweep --workers/--scheduler (Dask)")
        except ImportError as err:
            _error(err)
            return EXIT_FAILED
    try:
        # in this process the batched runs are single compiled calls, during which Python
        # runs no signal handler: they run in a worker thread, so that the main thread stops
        # the sweep at once (the points finished are files already; the lock is removed)
        ds = compute() if workers or scheduler else _in_worker_thread(compute)
    except KeyboardInterrupt as err:
        code = _report_interrupt(
            err, f"the points finished are kept in {out}, continue with --resume"
        )
        if getattr(err, "abandoned", False):  # a worker thread is still computing
            release_all()
            sys.stderr.flush()
            os._exit(code)
        return code
    except ConfigError as err:
        _error(err)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        raise
    except MemoryError as err:
        _error(_out_of_memory(err))
        return EXIT_FAILED
    except OSError as err:
        _error(err)
        return EXIT_FAILED
    status = [str(s) for s in ds["status"].values.ravel()]
    counts = {s: status.count(s) for s in sorted(set(status))}
    print(
        f"wrote {out}/{ds.attrs['scenario']}.sweep.nc: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    for s, m in zip(status, ds["message"].values.ravel()):
        if s != "success":
            print(f"gradflow: a point {s}: {m}", file=sys.stderr)
    if set(status) <= {"success"}:
        return EXIT_OK
    return EXIT_DIVERGED if set(status) <= {"success", "diverged", "blew_up"} else EXIT_FAILED


def _in_worker_thread(fn):
    """``fn()`` in a daemon thread while the main thread waits, ready for signals; a
    KeyboardInterrupt in the main thread is raised with ``abandoned = True``."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            box["error"] = err

    caught: list[int] = []  # a flag, not an exception: one raised in a handler can land in
    # a garbage-collector callback, which swallows it

    def record(signum, frame):
        caught.append(signum)

    old = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=target, name="gradflow-sweep", daemon=True)
    try:
        thread.start()
        while thread.is_alive() and not caught:
            thread.join(0.05)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if caught:
        err = _Signalled(caught[0])
        err.abandoned = True
        raise err
    if "error" in box:
        raise box["error"]
    return box["value"]


def run(
    file,
    *,
    out="results",
    sets=(),
    fast=False,
    progress=True,
    resume=False,
    overwrite=False,
    limits=True,
) -> int:
    """``gradflow run``: validate, then run and write; returns the exit status (130 / 143
    after SIGINT / SIGTERM: the partial trajectory and a checkpoint are written, and
    ``--resume`` continues)."""
    started = time.time()
    with _signals_interrupt():
        try:
            return _run(
                file,
                out=out,
                sets=sets,
                fast=fast,
                progress=progress,
                resume=resume,
                overwrite=overwrite,
                limits=limits,
            )
        except KeyboardInterrupt as err:  # gradflow.Interrupted, or a signal between runs
            kept = (
                "partial results kept, continue with --resume"
                if _written_since(out, started)
                else "nothing was written"
            )
            return _report_interrupt(err, kept)
        except MemoryError as err:
            _error(_out_of_memory(err))
            return EXIT_FAILED


def _written_since(out, started: float) -> bool:
    """Whether any file in ``out`` was written since ``started`` (a partial result)."""
    try:
        return any(p.stat().st_mtime >= started for p in Path(out).iterdir() if p.is_file())
    except OSError:
        return False


def _out_of_memory(err: MemoryError) -> str:
    detail = " ".join(str(err).split()) or "an allocation failed"
    return (
        f"out of memory ({detail}); lower the sizes (time.save_every larger, fewer seeds, a "
        "smaller network or data set)"
    )


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings as ONE line ``gradflow: warning: <message>`` on stderr (no source line)."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"gradflow: warning: {text}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _signals_interrupt():
    """SIGINT and SIGTERM as :class:`gradflow.Interrupted` (the runs themselves stop between
    two segments: see gradflow.dynamics._checkpoint)."""

    def handler(signum, frame):
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}", None, signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(file, *, out, sets, fast, progress, resume, overwrite=False, limits=True) -> int:
    try:
        config = load_config(file, sets, fast=fast)
        labels = [spec.label for spec in config.runs]
        out_dir = check_out_dir(out, config.name, labels, overwrite=overwrite, resume=resume)
        check_limits(config, limits=limits)
        problem = check_plausible(config, limits=limits)  # built once, run below
    except ConfigError as err:
        _error(err)
        return EXIT_BAD_INPUT
    try:
        with OutputLock(out_dir, config.name):
            if overwrite and not resume:
                remove_old(out_dir, config.name)
            outcome = run_scenario(
                config, out_dir, progress=progress, resume=resume, problem=problem
            )
    except ConfigError as err:  # the lock: another writer
        _error(err)
        return EXIT_BAD_INPUT
    except ValueError as err:  # a library check that validation did not anticipate
        _error(err)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        raise
    except (RuntimeError, OSError) as err:
        _error(err)
        return EXIT_FAILED
    print("wrote " + ", ".join(str(p) for p in outcome.files))
    statuses = set()
    for label, message in outcome.diverged.items():
        status = outcome.trajectories[label].stats.get("status", "diverged")
        statuses.add(status)
        word = "diverged" if status == "diverged" else status.replace("_", " ")
        print(f"gradflow: {label} {word} (partial trajectory written): {message}", file=sys.stderr)
    if not statuses:
        return EXIT_OK
    return EXIT_DIVERGED if statuses <= {"diverged", "blew_up"} else EXIT_FAILED


def figs(*, fast=False, only=(), out=None, scale=None, update_committed=False, jobs=1) -> int:
    """``gradflow figs``: ``paper_figs._build.build`` of the repository checkout at or above the
    current directory (gradflow/_figs.py); exit 2 with one line when there is none, or when
    ``--jobs`` is not a whole number >= 1."""
    given = jobs
    try:
        jobs = int(jobs)
        if jobs < 1:
            raise ValueError
    except (TypeError, ValueError):
        _error(f"--jobs {str(given)!r} is not allowed; use a whole number >= 1")
        return EXIT_BAD_INPUT
    try:
        build = import_build(find_checkout()).build
    except NoCheckout as err:
        _error(err)
        return EXIT_BAD_INPUT
    return build(
        fast=fast,
        only=tuple(only),
        out=out,
        scale=scale,
        update_committed=update_committed,
        jobs=jobs,
    )


def show(path, *, plot=False) -> int:
    """``gradflow show``: the table of :func:`gradflow.scenario.show` (2: no such path or no
    results in it)."""
    try:
        for line in show_results(path, plot=plot):
            print(line)
    except ConfigError as err:
        _error(err)
        return EXIT_BAD_INPUT
    return EXIT_OK


def info() -> int:
    """``gradflow info``: versions, devices, precision."""
    print(f"{'python':16s}{platform.python_version()}")
    for name, version in versions().items():
        print(f"{name:16s}{version}")
    print(f"{'devices':16s}{', '.join(str(d) for d in jax.devices())}")
    for device in jax.devices():
        print(f"{'  ' + str(device):16s}{device.device_kind}; memory {_device_memory(device)}")
    print(f"{'backend':16s}{jax.default_backend()}")
    print(f"{'x64 enabled':16s}{bool(jax.config.jax_enable_x64)}")
    print(f"{'default float':16s}{jnp.dtype(jnp.result_type(float)).name}")
    precisions = "float32, float64" if jax.config.jax_enable_x64 else "float32"
    print(f"{'precisions':16s}{precisions} (Problem(precision=...), problem.precision)")
    return EXIT_OK


def _device_memory(device) -> str:
    """The device's memory as JAX reports it (``memory_stats()``; None on most CPUs)."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without the query says so, nothing more
        stats = None
    if not stats or "bytes_limit" not in stats:
        return "not reported by JAX on this device"
    gib = 2.0**30
    used = stats.get("bytes_in_use", 0) / gib
    return f"{stats['bytes_limit'] / gib:.1f} GiB ({used:.2f} GiB in use)"


if __name__ == "__main__":
    sys.exit(main())
