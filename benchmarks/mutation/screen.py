"""A fast screen: every mutant of a module against its tests, in one process.

    nice -n 19 python benchmarks/mutation/screen.py MODULE TEST_MODULE [TEST_MODULE ...]

mutmut (``run.py``) runs each mutant's tests in a fresh fork, so every mutant pays the import
and JAX's compilation again: 10-25 s a mutant on a loaded machine. This script imports the tests
once inside ``benchmarks/mutation/work/MODULE/mutants/`` (made by a first ``run.py MODULE``, which
generates the mutants before it runs any test), selects each mutant in turn through mutmut's
``MUTANT_UNDER_TEST`` and calls the test cases (parametrized cases expanded, stacked marks
combined) that call the mutated function, cheapest first, stopping at the first failure. It
prints ``RUNNING name`` and then ``KILLED name test``, ``SURVIVED name``, ``TIMEOUT name`` or
``EQUIVALENT name`` (listed in ``modules.toml``) per mutant, and the counts.

A first, clean pass runs every case without a mutant, each from empty JAX caches, and records
which case calls which mutated function, whether JAX was tracing when it did (inside
``jax.jit``) and each case's CPU seconds (``--calls FILE`` keeps that record). Every case of
a mutant then runs as in the clean pass, from empty caches (``jax.clear_caches()``), so that
every jitted function traces the mutant, with JAX's persistent compilation cache reading back
the programs a mutant leaves unchanged (``--warm``: the mutants of functions never traced run
with warm caches, faster, but a test that counts compilations then fails whatever the mutant).
The mutants of a function that no case calls survive without running anything.

Before every mutant the ``functools`` caches of the mutated modules are emptied. A test gets
a fresh ``tmp_path``, ``monkeypatch`` and ``capsys`` (a stand-in: ``readouterr()`` with
``.out`` and ``.err``) and the fixtures its own module defines (called per case); a test that
needs another fixture is left out, and named. A case that runs past ``--timeout`` seconds
(default 120) detects its mutant, as mutmut counts a timeout, and is counted apart
(``TIMEOUT``); a case stuck inside compiled code, where the alarm cannot interrupt it, stops
the process after three times that: the mutant shows as ``RUNNING`` without a result, and a
rerun with ``--done LOG`` (the output so far) counts it as a timeout and goes on with the rest.
``--shard K/N`` takes every N-th mutant from the K-th: N screens side by side.

Blind spots, against mutmut: code run when a test module is imported (once, before any mutant
is selected), tests inside classes (not collected), fixtures of ``conftest.py`` and
subprocesses. ``run.py`` remains the reference; the screen gives the score in hours where
mutmut needs days on this machine, and shows in seconds that a new test kills a survivor
(``--mutants GLOB`` to rerun a few).
"""

from __future__ import annotations

import argparse
import copy
import faulthandler
import fnmatch
import importlib
import inspect
import io
import itertools
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import tomllib
import types
from pathlib import Path

import jax
import pytest
from jax._src.core import trace_state_clean

HERE = Path(__file__).resolve().parent
DEF = re.compile(r"^\s*def (x\S*?__mutmut_\d+)\(", re.MULTILINE)


def _mutants(work: Path, source: str) -> list[str]:
    """Every mutant's full name, ``package.module.x<function>__mutmut_<n>``, in file order."""
    module = source.removesuffix(".py").replace("/", ".")
    text = (work / source).read_text()
    return [f"{module}.{name}" for name in DEF.findall(text)]


#: pytest's fixtures that the screen supplies itself (a fresh one per test case); the fixtures
#: a test module defines are called too (once per case, their own arguments resolved alike)
SUPPLIED = ("tmp_path", "monkeypatch", "capsys")


def _module_fixture(module, name):
    """The function under a ``@pytest.fixture`` that ``module`` defines as ``name``, or None."""
    fixture = getattr(module, name, None)
    unwrap = getattr(fixture, "_get_wrapped_function", None)
    return unwrap() if callable(unwrap) else None


def _needs_fixtures(f, given, module=None) -> bool:
    """Whether a test has an argument that neither its parametrization nor the screen supplies
    (another pytest fixture; Hypothesis's wrapper shows only the arguments it does not draw)."""
    params = inspect.signature(f).parameters
    for n, p in params.items():
        if n in given or n in SUPPLIED or p.default is not inspect.Parameter.empty:
            continue
        fixture = _module_fixture(module, n) if module is not None else None
        if fixture is None or _needs_fixtures(fixture, (), module):
            return True
    return False


class _Capture:
    """A stand-in for pytest's ``capsys``: ``readouterr()`` returns what was written to
    ``sys.stdout`` and ``sys.stderr`` since the last call, as ``.out`` and ``.err``."""

    def __init__(self):
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()

    def readouterr(self):
        out, err = sys.stdout.getvalue(), sys.stderr.getvalue()
        sys.stdout.seek(0), sys.stdout.truncate(), sys.stderr.seek(0), sys.stderr.truncate()
        return types.SimpleNamespace(out=out, err=err)

    def close(self):
        sys.stdout, sys.stderr = self._saved


class _Fixtures:
    """The fixtures of one test case, made on demand and torn down by :meth:`close`."""

    def __init__(self, module):
        self.module, self.values, self.finalizers = module, {}, []

    def get(self, name):
        if name in self.values:
            return self.values[name]
        if name == "tmp_path":
            value = Path(tempfile.mkdtemp(prefix="screen-"))
            self.finalizers.append(lambda: shutil.rmtree(value, ignore_errors=True))
        elif name == "monkeypatch":
            value = pytest.MonkeyPatch()
            self.finalizers.append(value.undo)
        elif name == "capsys":
            value = _Capture()
            self.finalizers.append(value.close)
        else:
            fixture = _module_fixture(self.module, name)
            value = fixture(**{a: self.get(a) for a in inspect.signature(fixture).parameters})
            if inspect.isgenerator(value):  # a yield fixture: its code after the yield
                generator, value = value, next(value)
                self.finalizers.append(lambda: next(generator, None))
        self.values[name] = value
        return value

    def close(self):
        for finalize in reversed(self.finalizers):
            finalize()


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
            if _needs_fixtures(f, given, mod):
                if skipped is not None:
                    skipped.append(name)
                continue
            # stacked marks: every combination, as pytest does
            for combo in itertools.product(*grids):
                kwargs = {k: v for case in combo for k, v in case.items()}
                label = f"{name}{list(kwargs.values())}" if kwargs else name
                yield label, f, kwargs, mod


class _Timeout(BaseException):
    """A test ran past ``--timeout``: the mutant is detected (as mutmut counts a timeout). A
    ``BaseException``, so that no ``except Exception`` in the code under test swallows it."""


def _alarm(signum, frame):
    raise _Timeout


#: The module-level containers (dicts, lists, sets) of the mutated modules as they were after
#: the import, by ``id`` of the container: :func:`_clear_caches` puts them back, so that a memo
#: filled by the clean pass (a dict of compiled functions, say) does not hand a later mutant
#: what the clean code built.
_IMPORTED: dict[int, tuple] = {}


def _containers(prefixes):
    for name, module in list(sys.modules.items()):
        if module is None or not any(name.startswith(p) for p in prefixes):
            continue
        for obj in list(vars(module).values()):
            if type(obj) in (dict, list, set):
                yield obj


def _remember_containers(prefixes) -> None:
    """Record the mutated modules' containers as imported (before the clean pass)."""
    for obj in _containers(prefixes):
        _IMPORTED[id(obj)] = (obj, copy.copy(obj))


def _clear_caches(prefixes) -> None:
    """Empty the ``functools`` caches of the mutated modules and put their module-level
    containers back as imported, so that a result cached by the clean pass (or by another
    mutant) does not stand in for the mutant's."""
    for obj, saved in _IMPORTED.values():
        if isinstance(obj, list):
            obj[:] = saved
        else:
            obj.clear()
            obj.update(saved)
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


def _call(f, kwargs, module) -> None:
    """Run one test case, with the fixtures it asks for beyond its parametrization."""
    fixtures = _Fixtures(module)
    try:
        extra = {
            n: fixtures.get(n)
            for n, p in inspect.signature(f).parameters.items()
            if n not in kwargs and p.default is inspect.Parameter.empty
        }
        f(**kwargs, **extra)
    finally:
        fixtures.close()


def _first_failure(cases, timeout: float = 0.0, prefixes=(), retrace: bool = False):
    """The first case that fails (its label and error), or None; with ``retrace``, JAX's caches
    are emptied before every case, so that a jitted function traces the selected mutant."""
    _clear_caches(prefixes)
    for case, f, kwargs, module in cases:
        if retrace:
            jax.clear_caches()
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            # a case stuck inside compiled code never returns to the signal handler: stop the
            # process (the mutant shows as RUNNING without a result; --done counts it detected)
            faulthandler.dump_traceback_later(3 * timeout + 60, exit=True)
        try:
            _call(f, kwargs, module)
        except _Timeout:
            return f"{case} (timeout after {timeout:g} s)"
        except (Exception, pytest.fail.Exception) as e:  # a failed assertion, pytest.raises
            # that saw no error (pytest's Failed is not an Exception) or an error: detected
            return f"{case} ({type(e).__name__})"
        finally:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
                faulthandler.cancel_dump_traceback_later()
    return None


def _clean_pass(cases, prefixes):
    """Run every case once without a mutant, each from empty JAX caches (so that every case
    traces what it uses), and record, per mutated function (``module.xname``), the indices of
    the cases that call it and whether it was called while JAX traced (inside ``jax.jit``),
    and each case's CPU seconds. Returns (failure, calls, traced, seconds)."""
    calls: dict[str, set[int]] = {}
    seconds: list[float] = []
    traced: set[str] = set()
    current = [0]

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name.endswith("__mutmut_orig"):
            name = frame.f_code.co_name.removesuffix("__mutmut_orig")
            name = f"{frame.f_globals.get('__name__')}.{name}"
            calls.setdefault(name, set()).add(current[0])
            if not trace_state_clean():
                traced.add(name)

    _clear_caches(prefixes)
    for i, (case, f, kwargs, module) in enumerate(cases):
        current[0] = i
        jax.clear_caches()
        start = time.process_time()
        sys.setprofile(profile)
        try:
            _call(f, kwargs, module)
        except (Exception, pytest.fail.Exception) as e:
            return f"{case} ({type(e).__name__}: {e})", calls, traced, seconds
        finally:
            sys.setprofile(None)
            seconds.append(time.process_time() - start)
    return None, calls, traced, seconds


def _done(path: Path | None) -> dict[str, str]:
    """Statuses of the mutants a previous screen (its output in ``path``) reported: a mutant
    it started (``RUNNING``) without a result stopped the process (stuck in compiled code
    past the timeout) and counts as a timeout."""
    statuses: dict[str, str] = {}
    if path is None or not path.is_file():
        return statuses
    for line in path.read_text().splitlines():
        word, _, rest = line.partition(" ")
        name = rest.split(" ", 1)[0]
        if word == "RUNNING":
            statuses.setdefault(name, "timeout")
        elif word in ("KILLED", "SURVIVED", "EQUIVALENT", "TIMEOUT"):
            statuses[name] = word.lower()
    return statuses


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
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="K/N",
        help="only every N-th mutant from the K-th (0-based): N screens side by side",
    )
    parser.add_argument(
        "--done",
        type=Path,
        metavar="FILE",
        help="the output of an earlier screen: its mutants are counted, not rerun",
    )
    parser.add_argument(
        "--order",
        choices=("file", "random"),
        default="file",
        help="file: the eager functions' mutants first, each group in file order; random: a "
        "shuffled order (--seed), so that a screen stopped early has screened a uniform sample",
    )
    parser.add_argument("--seed", type=int, default=0, help="the shuffle's seed (--order random)")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="run the mutants of functions that JAX never traced with its caches warm (faster; "
        "a test that counts compilations then fails whatever the mutant: read its kills)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run a mutant's cases (cheapest first) only while their CPU seconds in the clean "
        "pass add up to at most this (at least one case); a survivor then says how many of its "
        "cases ran (default 0: all)",
    )
    parser.add_argument(
        "--calls",
        type=Path,
        metavar="FILE",
        help="the clean pass's record (which case calls which function, traced or not, CPU "
        "seconds): read from FILE when it holds the same cases, else measured and written there",
    )
    args = parser.parse_args(argv)
    if args.timeout < 0:
        parser.error(f"--timeout must be 0 or positive, got {args.timeout:g}")
    k, _, n = args.shard.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        parser.error(f"--shard must be K/N with 0 <= K < N, got {args.shard!r}")
    k, n = int(k), int(n)
    signal.signal(signal.SIGALRM, _alarm)
    config = tomllib.loads((HERE / "modules.toml").read_text())["module"]
    if args.module not in config:
        parser.error(f"MODULE {args.module!r} is not one of {', '.join(config)}")
    work = HERE / "work" / args.module / "mutants"
    if not work.is_dir():
        parser.error(f"MODULE {args.module!r} has no mutants yet: run run.py {args.module} first")
    done = _done(args.done)
    os.chdir(work)
    sys.path.insert(0, str(work))
    sys.path.insert(1, str(work / "tests"))  # as pytest's rootdir-relative imports find them
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    jax.config.update("jax_platforms", os.environ.get("JAX_PLATFORMS", "cpu"))
    # JAX's persistent compilation cache (as run.py): an unchanged program is read back, a
    # mutant's is compiled afresh (the key is the program itself)
    jax.config.update("jax_compilation_cache_dir", str(work.parent / "jax-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    os.environ["MUTANT_UNDER_TEST"] = ""
    names = [
        m
        for pattern in config[args.module]["mutate"]
        for source in sorted(str(p) for p in Path().glob(pattern))
        for m in _mutants(work, source)
        if not args.mutants or any(fnmatch.fnmatch(m, g) for g in args.mutants)
    ]
    if args.order == "random":
        random.Random(args.seed).shuffle(names)
    names = names[k::n]
    if (work / "tests" / "conftest.py").is_file():  # x64 and the Hypothesis profile, as pytest
        importlib.import_module("conftest")
    modules = [importlib.import_module(t.removesuffix(".py").replace("/", ".")) for t in args.tests]
    skipped: list[str] = []
    cases = list(_cases(modules, args.select, skipped))
    if skipped:
        print(f"left out (they need pytest fixtures): {', '.join(skipped)}")
    print(f"{len(cases)} test cases, {len(names)} mutants", flush=True)
    # the mutated modules (their caches are emptied before every mutant and the clean pass)
    prefixes = [
        pattern.removesuffix(".py").replace("/", ".").rstrip("*").rstrip(".")
        for pattern in config[args.module]["mutate"]
    ]
    _remember_containers(prefixes)
    # a case's label, without the memory addresses that a parametrized object's repr shows
    labels = [re.sub(r" at 0x[0-9a-f]+", "", case[0]) for case in cases]
    record = json.loads(args.calls.read_text()) if args.calls and args.calls.is_file() else {}
    if record.get("cases") == labels:
        calls = {f: set(i) for f, i in record["calls"].items()}
        traced, seconds = set(record["traced"]), record["seconds"]
    else:
        failure, calls, traced, seconds = _clean_pass(cases, prefixes)
        if failure:
            print(f"the tests fail without a mutant: {failure}")
            return 1
        if args.calls:
            record = {"cases": labels, "traced": sorted(traced), "seconds": seconds}
            record["calls"] = {f: sorted(i) for f, i in calls.items()}
            args.calls.write_text(json.dumps(record))
    print(
        f"clean pass done: {len(calls)} mutated functions called, {len(traced)} traced", flush=True
    )
    equivalent = set(config[args.module].get("equivalent", []))
    counts = {"killed": 0, "timeout": 0, "survived": 0, "equivalent": 0}

    def function(name):
        return name.rsplit("__mutmut_", 1)[0]

    # every case runs as in the clean pass, from empty JAX caches (so that a jitted function
    # traces the mutant, and a test that counts compilations counts them as it did there); with
    # --warm, the mutants of functions never traced run first with the caches warm
    if args.order == "file":
        names.sort(key=lambda m: function(m) in traced)
    dirty = False  # JAX's caches may hold a mutant's trace
    for name in names:
        if name in done:
            counts[done[name]] += 1
            continue
        if function(name) not in calls:  # survives without running a test
            status = "equivalent" if name in equivalent else "survived"
            counts[status] += 1
            print(f"{status.upper()} {name} (not called while the tests ran)", flush=True)
            continue
        retrace = not args.warm or function(name) in traced
        if dirty and not retrace:
            jax.clear_caches()
        dirty = retrace
        print(f"RUNNING {name}", flush=True)
        os.environ["MUTANT_UNDER_TEST"] = name
        # the cheapest cases first: most mutants fail the first case that calls them
        order = sorted(calls[function(name)], key=lambda i: seconds[i])
        kept = order
        if args.budget:
            spent = itertools.accumulate(seconds[i] for i in order)
            kept = [i for i, total in zip(order, spent, strict=True) if total <= args.budget]
            kept = kept or order[:1]
        failure = _first_failure([cases[i] for i in kept], args.timeout, prefixes, retrace)
        if not failure and len(kept) < len(order):
            failure_note = f"({len(kept)} of its {len(order)} cases: --budget)"
        else:
            failure_note = ""
        status = (
            ("timeout" if "(timeout after" in failure else "killed")
            if failure
            else "equivalent"
            if name in equivalent
            else "survived"
        )
        counts[status] += 1
        print(f"{status.upper()} {name} {failure or failure_note}".rstrip(), flush=True)
    print(f"== {args.module}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
