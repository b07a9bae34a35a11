"""A fast screen: every mutant of a module against tests that need no compilation, in one process.

    nice -n 19 python benchmarks/mutation/screen.py MODULE TEST_MODULE [TEST_MODULE ...]

mutmut (``run.py``) runs each mutant's tests in a fresh fork, so every mutant pays JAX's
compilation again: 10-25 s a mutant on a loaded machine. Tests that call a module's functions
eagerly (plain NumPy-sized checks, no ``jax.jit``) need no fork: this script imports them once
inside ``benchmarks/mutation/work/MODULE/mutants/`` (made by a first ``run.py MODULE``, which
generates the mutants before it runs any test), selects each mutant in turn through mutmut's
``MUTANT_UNDER_TEST`` and calls every test function (parametrized cases expanded), stopping at
the first failure. It prints ``KILLED name test``, ``SURVIVED name`` or ``EQUIVALENT name``
(listed in ``modules.toml``) per mutant and the counts. Tests that need pytest fixtures
(``tmp_path``, ``capsys``, ...) are left out, and said so; ``--tests GLOB`` keeps only the test
functions whose names match. The mutants of a function that the tests never call (seen in a
first, clean pass) survive without running them.

Before every mutant (and the clean pass) the ``functools`` caches of the mutated modules are
emptied, so a cached result does not stand in for the mutant's; stacked ``parametrize`` marks are
expanded to every combination; a test case that runs past ``--timeout`` seconds (default 120)
detects its mutant, as mutmut counts a timeout, and is counted apart (``TIMEOUT``): on a loaded
machine a slow but correct case can time out, so read those by hand. Tests inside classes are
not collected.

A screen, not the score: a test that jit-compiles a mutated function keeps its first trace,
so only eager tests belong here, and a mutant killed only by slower tests shows as a survivor.
``run.py`` remains the measurement; the screen finds the survivors of the eager tests in
minutes, and shows that a new test kills them (``--mutants GLOB`` to rerun a few).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
import itertools
import os
import re
import signal
import sys
import tomllib
import types
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEF = re.compile(r"^\s*def (x\S*?__mutmut_\d+)\(", re.MULTILINE)


def _mutants(work: Path, source: str) -> list[str]:
    """Every mutant's full name, ``package.module.x<function>__mutmut_<n>``, in file order."""
    module = source.removesuffix(".py").replace("/", ".")
    text = (work / source).read_text()
    return [f"{module}.{name}" for name in DEF.findall(text)]


def _needs_fixtures(f, given) -> bool:
    """Whether a test has an argument that its parametrization does not supply (a pytest
    fixture; Hypothesis's wrapper shows only the arguments it does not draw)."""
    params = inspect.signature(f).parameters
    return any(n not in given and p.default is inspect.Parameter.empty for n, p in params.items())


def _cases(modules, selected=(), skipped=None):
    """(id, function, kwargs) for every test function, parametrized cases expanded; with
    ``selected`` (globs), only the functions whose names match one; a test that needs a pytest
    fixture (``tmp_path``, ``capsys``, ...) is left out and its name added to ``skipped``."""
    for mod in modules:
        for name, f in vars(mod).items():
            if not (name.startswith("test") and callable(f)):
                continue
            if selected and not any(fnmatch.fnmatch(name, g) for g in selected):
                continue
            marks = [m for m in getattr(f, "pytestmark", []) if m.name == "parametrize"]
            grids = []  # per parametrize mark: a list of {argname: value} cases
            for mark in marks:
                argnames = mark.args[0]
                if isinstance(argnames, str):
                    argnames = [a.strip() for a in argnames.split(",")]
                grids.append(
                    [
                        dict(zip(argnames, v if len(argnames) > 1 else (v,), strict=True))
                        for v in mark.args[1]
                    ]
                )
            given = [a for grid in grids for a in (grid[0] if grid else {})]
            if _needs_fixtures(f, given):
                if skipped is not None:
                    skipped.append(name)
                continue
            # stacked marks: every combination, as pytest does
            for combo in itertools.product(*grids):
                kwargs = {k: v for case in combo for k, v in case.items()}
                label = f"{name}{list(kwargs.values())}" if kwargs else name
                yield label, f, kwargs


class _Timeout(BaseException):
    """A test ran past ``--timeout``: the mutant is detected (as mutmut counts a timeout). A
    ``BaseException``, so that no ``except Exception`` in the code under test swallows it."""


def _alarm(signum, frame):
    raise _Timeout


def _clear_caches(prefixes) -> None:
    """Empty the ``functools`` caches of the mutated modules, so that a cached result of the
    clean pass (or of another mutant) does not stand in for the mutant's."""
    for name, module in list(sys.modules.items()):
        if module is None or not any(name.startswith(p) for p in prefixes):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, types.ModuleType):  # a module's __getattr__ may be a mutant
                continue
            try:
                clear = getattr(obj, "cache_clear", None)
            except Exception:  # an object whose attribute lookup a mutant broke
                continue
            if callable(clear):
                clear()


def _first_failure(cases, timeout: float = 0.0, prefixes=()):
    _clear_caches(prefixes)
    for case, f, kwargs in cases:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            f(**kwargs)
        except _Timeout:
            return f"{case} (timeout after {timeout:g} s)"
        except (Exception, pytest.fail.Exception) as e:  # a failed assertion, pytest.raises
            # that saw no error (pytest's Failed is not an Exception) or an error: detected
            return f"{case} ({type(e).__name__})"
        finally:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", metavar="MODULE", help="a name of modules.toml")
    parser.add_argument("tests", nargs="+", metavar="TEST_MODULE", help="e.g. tests/test_x.py")
    parser.add_argument("--mutants", action="append", default=[], metavar="GLOB")
    parser.add_argument(
        "--tests",
        dest="select",
        action="append",
        default=[],
        metavar="GLOB",
        help="only the test functions whose names match (e.g. 'test_problem_*'); repeatable",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="a test case running longer detects its mutant (default 120; 0: none)",
    )
    args = parser.parse_args(argv)
    if args.timeout < 0:
        parser.error(f"--timeout must be 0 or positive, got {args.timeout:g}")
    signal.signal(signal.SIGALRM, _alarm)
    config = tomllib.loads((HERE / "modules.toml").read_text())["module"]
    if args.module not in config:
        parser.error(f"MODULE {args.module!r} is not one of {', '.join(config)}")
    work = HERE / "work" / args.module / "mutants"
    if not work.is_dir():
        parser.error(f"MODULE {args.module!r} has no mutants yet: run run.py {args.module} first")
    os.chdir(work)
    sys.path.insert(0, str(work))
    sys.path.insert(1, str(work / "tests"))  # as pytest's rootdir-relative imports find them
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ["MUTANT_UNDER_TEST"] = ""
    names = [
        m
        for pattern in config[args.module]["mutate"]
        for source in sorted(str(p) for p in Path().glob(pattern))
        for m in _mutants(work, source)
        if not args.mutants or any(fnmatch.fnmatch(m, g) for g in args.mutants)
    ]
    if (work / "tests" / "conftest.py").is_file():  # x64 and the Hypothesis profile, as pytest
        importlib.import_module("conftest")
    modules = [importlib.import_module(t.removesuffix(".py").replace("/", ".")) for t in args.tests]
    skipped: list[str] = []
    cases = list(_cases(modules, args.select, skipped))
    if skipped:
        print(f"left out (they need pytest fixtures): {', '.join(skipped)}")
    print(f"{len(cases)} test cases, {len(names)} mutants", flush=True)
    called: set[str] = set()  # "module.function" of every mutated function the tests call

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name.endswith("__mutmut_orig"):
            name = frame.f_code.co_name.removesuffix("__mutmut_orig")
            called.add(f"{frame.f_globals.get('__name__')}.{name}")

    # the mutated modules (their caches are emptied before every mutant and the clean pass)
    prefixes = [
        pattern.removesuffix(".py").replace("/", ".").rstrip("*").rstrip(".")
        for pattern in config[args.module]["mutate"]
    ]
    sys.setprofile(profile)
    try:
        failure = _first_failure(cases, 0.0, prefixes)  # the clean pass: no time limit
    finally:
        sys.setprofile(None)
    if failure:
        print(f"the tests fail without a mutant: {failure}")
        return 1
    equivalent = set(config[args.module].get("equivalent", []))
    counts = {"killed": 0, "timeout": 0, "survived": 0, "equivalent": 0}
    for name in names:
        if name.rsplit("__mutmut_", 1)[0] not in called:  # survives without running a test
            status = "equivalent" if name in equivalent else "survived"
            counts[status] += 1
            print(f"{status.upper()} {name} (not called while the tests ran)", flush=True)
            continue
        os.environ["MUTANT_UNDER_TEST"] = name
        failure = _first_failure(cases, args.timeout, prefixes)
        status = (
            ("timeout" if "(timeout after" in failure else "killed")
            if failure
            else "equivalent"
            if name in equivalent
            else "survived"
        )
        counts[status] += 1
        print(f"{status.upper()} {name} {failure or ''}".rstrip(), flush=True)
    print(f"== {args.module}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
