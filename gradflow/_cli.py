"""The ``gradflow`` command.

    gradflow run FILE [--out DIR] [--set key=value ...] [--fast]
    gradflow info
    gradflow figs [--fast] [--only NAME ...] [--out DIR]

``run`` validates the scenario (and every ``--set``) before computing anything, then writes
``DIR/<name>.nc``, one ``DIR/<name>__<run>.nc`` per run and ``DIR/<name>.png`` (DIR defaults to
``results/`` under the current directory) and prints a summary. Float64 is enabled first.

Exit status: 0 success; 2 bad input (one line ``gradflow: error: ...`` on stderr, nothing
computed, no file written); 3 a run diverged (its partial trajectory is written, the others run
on); 1 a run that failed otherwise (e.g. the flow ran out of ``max_steps``).
"""

from __future__ import annotations

import argparse
import sys

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
    # ---- figs: paper_figs/ (not an installed package; see figs() below) ----
    figs_parser = sub.add_parser(
        "figs",
        help="run (cached) the scenarios of the paper figures and draw them",
        description="Run every paper figure's scenarios (cached under paper_figs/cache/ by "
        "the hash of their configuration), draw each figure and print its verdict line.",
    )
    figs_parser.add_argument("--fast", action="store_true", help="shrunken scenarios")
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


def _error(message: str) -> None:
    print(f"gradflow: error: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv=None) -> int:
    """Entry point of the ``gradflow`` console script; returns the exit status."""
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
        return figs(fast=args.fast, only=args.only, out=args.out)
    return run(args.file, out=args.out, sets=args.sets, fast=args.fast, progress=not args.quiet)


def run(file, *, out="results", sets=(), fast=False, progress=True) -> int:
    """``gradflow run``: validate, then run and write; returns the exit status."""
    from pathlib import Path

    from .scenario import ConfigError, load_config

    try:
        config = load_config(file, sets, fast=fast)
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {str(out)!r} is not allowed; it is a file, use a folder")
    except ConfigError as err:
        _error(err)
        return EXIT_BAD_INPUT
    from .scenario import run as run_scenario

    try:
        outcome = run_scenario(config, out_dir, progress=progress)
    except ValueError as err:  # a library check that validation did not anticipate
        _error(err)
        return EXIT_BAD_INPUT
    except (RuntimeError, OSError) as err:
        _error(err)
        return EXIT_FAILED
    print("wrote " + ", ".join(str(p) for p in outcome.files))
    for label, message in outcome.diverged.items():
        print(
            f"gradflow: {label} diverged (partial trajectory written): {message}", file=sys.stderr
        )
    return EXIT_DIVERGED if outcome.diverged else EXIT_OK


def figs(*, fast=False, only=(), out=None) -> int:
    """``gradflow figs``: ``paper_figs._build.build`` (paper_figs/ sits at the repository root)."""
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from paper_figs._build import build

    return build(fast=fast, only=tuple(only), out=out)


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
    print(f"{'backend':16s}{jax.default_backend()}")
    print(f"{'x64 enabled':16s}{bool(jax.config.jax_enable_x64)}")
    print(f"{'default float':16s}{jnp.dtype(jnp.result_type(float)).name}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
