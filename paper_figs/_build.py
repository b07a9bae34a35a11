"""``gradflow figs``: compute (cached) what each figure needs, then draw it and print its verdict.

Each figure module ``paper_figs/fig_<name>.py`` defines

* ``compute(profile, log) -> dict`` (``profile``: fast | full | paper): the cached scenario
  results it reads (:func:`_common.scenario`, or :func:`_common.sweep` for a figure that runs
  one scenario at several points);
* ``draw(inputs, out_dir) -> str``: the figure, from those results only (never trains), and ONE
  verdict line: the prediction, what was measured and the gap.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from . import _common

FIGURES = (
    "rho_dynamics",
    "conservation",
    "margins",
    "sgd_noise",
    "rank",
    "neural_collapse",
    "init_scale",
    "random_labels",
    "bounds",
    "sde_vs_sgd",
    "work_precision",
)

#: The order in which ``--jobs N`` hands the figures to its workers: the longest first (user
#: CPU of each figure's paper profile, 2026-12-07: neural_collapse 5,893 s, margins 4,408 s,
#: rank 2,825 s, the other eight 1,552 s together), so that no worker is left with a long one
#: at the end.
LONGEST_FIRST = ("neural_collapse", "margins", "rank")


def build(
    fast: bool = False,
    only=(),
    out=None,
    log=print,
    scale: str | None = None,
    update_committed: bool = False,
    jobs: int = 1,
) -> int:
    """Compute and draw the figures ``only`` (default: all) at the profile ``scale`` (fast |
    full | paper; ``fast=True`` is ``scale="fast"``); returns an exit status. The PNGs go to
    ``out``, else to the profile's own folder (:func:`_common.out_folder`: git-ignored, or the
    committed one with ``update_committed``). With ``jobs`` > 1 the figures' scenarios are
    computed first, in ``jobs`` worker processes (:func:`_compute_in_workers`), and each figure
    is then drawn here from the cache, in the usual order."""
    import matplotlib

    matplotlib.use("Agg")
    # every figure: constrained layout (labels never overlap the ticks), dpi _common.DPI
    matplotlib.rcParams.update(
        {
            "figure.constrained_layout.use": True,
            "savefig.dpi": _common.DPI,
            "axes.titlesize": 9,
            "axes.labelsize": 9,
        }
    )
    profile = "fast" if fast else (scale or "full")
    if profile not in _common.PROFILES:
        print(
            f"gradflow: error: --scale {profile!r} is not allowed; use one of "
            + ", ".join(_common.PROFILES),
            file=sys.stderr,
        )
        return 2
    unknown = [n for n in only if n not in FIGURES]
    if unknown:
        print(
            f"gradflow: error: --only {unknown[0]!r} is not allowed; use one of "
            + ", ".join(FIGURES),
            file=sys.stderr,
        )
        return 2
    if out and update_committed:
        print(
            f"gradflow: error: --out {str(out)!r} is not allowed with --update-committed "
            "(which writes to the profile's committed folder); use one of them",
            file=sys.stderr,
        )
        return 2
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        print(
            f"gradflow: error: --jobs {jobs!r} is not allowed; use a whole number >= 1",
            file=sys.stderr,
        )
        return 2
    out_dir = Path(out) if out else _common.out_folder(profile, update_committed)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [n for n in FIGURES if not only or n in only]
    start, failed = time.perf_counter(), []
    workers = _compute_in_workers(names, profile, jobs, log) if jobs > 1 and names else {}
    for name in names:
        if workers.get(name) is None and name in workers:
            failed.append(name)  # its worker said why
            continue
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"paper_figs.fig_{name}")
            inputs = mod.compute(profile, log)
            cached = all(r.cached for r in inputs.values())
            verdict = mod.draw(inputs, out_dir)
        except Exception as err:  # one broken figure must not hide the others
            failed.append(name)
            print(
                f"gradflow: error: figure {name} failed: {type(err).__name__}: {err}",
                file=sys.stderr,
            )
            continue
        state = "cached" if cached else "computed"
        if workers:  # what the worker left in the cache; anything missing is said, not hidden
            again = "read back from the cache" if cached else "COMPUTED AGAIN here"
            state = f"worker {workers[name]:.1f} s, then {again}"
        log(
            f"figure {name} ({state}, {time.perf_counter() - t0:.1f} s) -> "
            f"{out_dir / (name + '.png')}"
        )
        log(f"verdict {verdict}")
    log(
        f"figs: {len(names) - len(failed)}/{len(names)} figures in "
        f"{time.perf_counter() - start:.1f} s{'' if profile == 'full' else f' ({profile})'} "
        f"-> {out_dir}"
    )
    return 1 if failed else 0


def _compute_in_workers(names, profile: str, jobs: int, log) -> dict:
    """The ``compute`` step of each figure in ``names``, in up to ``jobs`` worker processes at
    a time, the longest first (:data:`LONGEST_FIRST`): ``{name: seconds}``, with ``None`` for a
    figure whose computation failed (its worker says why on stderr). A worker is
    ``python -m paper_figs._build --scale PROFILE --only NAME --compute-only`` run in this
    checkout (so it imports this ``paper_figs``); it writes the figure's results to the cache
    (atomic writes) and prefixes its log lines with the figure's name, and this process then
    reads them back. Each worker runs in its own session, so that a Ctrl-C at the terminal
    reaches this process alone; an interruption here stops the workers (SIGTERM) and waits for
    them, and the cache keeps every scenario they completed."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    order = [n for n in LONGEST_FIRST if n in names] + [n for n in names if n not in LONGEST_FIRST]
    log(f"figs: computing {len(order)} figures in {jobs} worker processes: {', '.join(order)}")
    pending, running, done = list(order), {}, {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                command = [sys.executable, "-m", "paper_figs._build", "--scale", profile]
                command += ["--only", name, "--compute-only"]
                # its own session: a Ctrl-C reaches this process alone, which stops them
                worker = subprocess.Popen(command, cwd=root, start_new_session=True)
                running[name] = (worker, time.perf_counter())
            time.sleep(0.1)
            for name, (proc, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                if proc.returncode == 0:
                    done[name] = time.perf_counter() - t0
                    log(f"figs: {name} computed by a worker in {done[name]:.1f} s")
                else:
                    done[name] = None
                    print(
                        f"gradflow: error: figure {name} failed: its worker exited with "
                        f"status {proc.returncode}",
                        file=sys.stderr,
                    )
    finally:
        for proc, _ in running.values():
            proc.terminate()
            proc.wait()
    return done


def _compute_only(names, profile: str) -> int:
    """``--compute-only`` (a worker of :func:`_compute_in_workers`): each figure's ``compute``
    step, its log lines prefixed with its name; 1 if one failed (said on stderr)."""
    failed = False
    for name in names:

        def log(line, name=name):
            print(f"[{name}] {line}", flush=True)

        try:
            importlib.import_module(f"paper_figs.fig_{name}").compute(profile, log)
        except Exception as err:  # the other figures still run
            failed = True
            print(
                f"gradflow: error: figure {name} failed: {type(err).__name__}: {err}",
                file=sys.stderr,
            )
    return 1 if failed else 0


def main(argv=None) -> int:
    """``python -m paper_figs._build [--fast | --scale PROFILE] [--only NAME ...] [--out DIR |
    --update-committed]``."""
    import argparse

    import jax

    jax.config.update("jax_enable_x64", True)
    parser = argparse.ArgumentParser(prog="paper_figs")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--scale", choices=_common.PROFILES, default=None)
    parser.add_argument("--only", nargs="+", default=[])
    parser.add_argument("--out", default=None)
    parser.add_argument("--update-committed", action="store_true", dest="update_committed")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--compute-only", action="store_true", dest="compute_only")
    args = parser.parse_args(argv)
    if args.compute_only:
        profile = "fast" if args.fast else (args.scale or "full")
        unknown = [n for n in args.only if n not in FIGURES]
        if unknown or not args.only:
            parser.error(f"--compute-only needs --only with figures of {', '.join(FIGURES)}")
        try:
            return _compute_only(args.only, profile)
        except KeyboardInterrupt:  # SIGINT reaches the whole process group: one line each
            print(
                f"gradflow: figure {', '.join(args.only)} interrupted; the cache keeps the "
                "scenarios it completed",
                file=sys.stderr,
                flush=True,
            )
            return 130
    return build(
        args.fast,
        args.only,
        args.out,
        scale=args.scale,
        update_committed=args.update_committed,
        jobs=args.jobs,
    )


if __name__ == "__main__":
    sys.exit(main())
