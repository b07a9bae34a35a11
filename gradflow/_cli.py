"""The ``gradflow`` command.

    gradflow run FILE [--out DIR] [--set key=value ...] [--fast]
    gradflow sweep FILE [--out DIR] [--set ...] [--fast] [--workers K | --scheduler ADDR] [--resume]
    gradflow info
    gradflow figs [--fast | --scale fast|full|paper] [--only NAME ...] [--out DIR]

``run`` validates the scenario (and every ``--set``) before computing anything, then writes
``DIR/<name>.nc``, one ``DIR/<name>__<run>.nc`` per run and ``DIR/<name>.png`` (DIR defaults to
``results/`` under the current directory) and prints a summary. Float64 is enabled first.

Exit status: 0 success; 2 bad input (one line ``gradflow: error: ...`` on stderr, nothing
computed, no file written); 3 a run diverged or blew up (its partial trajectory is written, the
others run on); 1 a run that failed otherwise (the flow ran out of ``max_steps``: its partial
trajectory is written too); 130 / 143
interrupted by SIGINT / SIGTERM (the partial trajectory, ``status = "interrupted"``, and a
checkpoint are written; ``gradflow run FILE --resume`` continues).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

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
        help="lift the size limits (weights, seeds, save points, steps, memory, work)",
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
    sw_again.add_argument(
        "--resume", action="store_true", help="skip the points already finished"
    )
    sw_again.add_argument(
        "--overwrite", action="store_true", help="replace the sweep's results already in --out"
    )
    sw.add_argument(
        "--no-limits", action="store_true", dest="no_limits", help="lift the size limits"
    )
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    # ---- figs: paper_figs/ (not an installed package; see figs() below) ----
    figs_parser = sub.add_parser(
        "figs",
        help="run (cached) the scenarios of the paper figures and draw them",
        description="Run every paper figure's scenarios (cached under paper_figs/cache/ by "
        "the hash of their configuration), draw each figure and print its verdict line.",
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
        "--only", nargs="+", default=[], metavar="NAME", help="only these figures"
    )
    figs_parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for the PNGs (default: paper_figs/figures/)",
    )
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
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.command == "info":
        return info()
    if args.command == "figs":
        return figs(fast=args.fast, only=args.only, out=args.out, scale=args.scale)
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
    from .scenario import ConfigError
    from .scenario import sweep as run_sweep

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
            from .scenario._output import release_all

            release_all()
            sys.stderr.flush()
            os._exit(code)
        return code
    except ConfigError as err:
        _error(err)
        return EXIT_BAD_INPUT
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
            return _report_interrupt(err, "partial results kept, continue with --resume")


@contextlib.contextmanager
def _signals_interrupt():
    """SIGINT and SIGTERM as :class:`gradflow.Interrupted` (the runs themselves stop between
    two segments: see gradflow.dynamics._checkpoint)."""
    from .dynamics._checkpoint import Interrupted

    def handler(signum, frame):
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}", None, signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run(file, *, out, sets, fast, progress, resume, overwrite=False, limits=True) -> int:
    from .scenario import ConfigError, load_config
    from .scenario._limits import check_limits
    from .scenario._output import OutputLock, check_out_dir, remove_old

    try:
        config = load_config(file, sets, fast=fast)
        labels = [spec.label for spec in config.runs]
        out_dir = check_out_dir(out, config.name, labels, overwrite=overwrite, resume=resume)
        check_limits(config, limits=limits)
    except ConfigError as err:
        _error(err)
        return EXIT_BAD_INPUT
    from .scenario import run as run_scenario

    try:
        with OutputLock(out_dir, config.name):
            if overwrite and not resume:
                remove_old(out_dir, config.name)
            outcome = run_scenario(config, out_dir, progress=progress, resume=resume)
    except ConfigError as err:  # the lock: another writer
        _error(err)
        return EXIT_BAD_INPUT
    except ValueError as err:  # a library check that validation did not anticipate
        _error(err)
        return EXIT_BAD_INPUT
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


def figs(*, fast=False, only=(), out=None, scale=None) -> int:
    """``gradflow figs``: ``paper_figs._build.build`` (paper_figs/ sits at the repository root)."""
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from paper_figs._build import build

    return build(fast=fast, only=tuple(only), out=out, scale=scale)


def info() -> int:
    """``gradflow info``: versions, devices, precision."""
    import platform

    import jax
    import jax.numpy as jnp

    from ._trajectory import versions

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
