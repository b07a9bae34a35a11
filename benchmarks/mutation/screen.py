"""A fast screen: every mutant of a module against tests that need no compilation, in one process.

    nice -n 19 python benchmarks/mutation/screen.py MODULE TEST_MODULE [TEST_MODULE ...]

mutmut (``run.py``) runs each mutant's tests in a fresh fork, so every mutant pays JAX's
compilation again: 10-25 s a mutant on a loaded machine. Tests that call a module's functions
eagerly (plain NumPy-sized checks, no ``jax.jit``) need no fork: this script imports them once
inside ``benchmarks/mutation/work/MODULE/mutants/`` (made by a first ``run.py MODULE``, which
generates the mutants before it runs any test), selects each mutant in turn through mutmut's
``MUTANT_UNDER_TEST`` and calls every test function (parametrized cases expanded), stopping at
the first failure. It prints ``KILLED name test``, ``SURVIVED name`` or ``EQUIVALENT name`` (listed in
``modules.toml``) per mutant and the counts.

A screen, not the score: a test that jit-compiles a mutated function keeps its first trace,
so only eager tests belong here, and a mutant killed only by slower tests shows as a survivor.
``run.py`` remains the measurement; the screen finds the survivors of the eager tests in
minutes, and shows that a new test kills them (``--mutants GLOB`` to rerun a few).
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import os
import re
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEF = re.compile(r"^\s*def (x\S*?__mutmut_\d+)\(", re.MULTILINE)


def _mutants(work: Path, source: str) -> list[str]:
    """Every mutant's full name, ``package.module.x<function>__mutmut_<n>``, in file order."""
    module = source.removesuffix(".py").replace("/", ".")
    text = (work / source).read_text()
    return [f"{module}.{name}" for name in DEF.findall(text)]


def _cases(modules):
    """(id, function, kwargs) for every test function, parametrized cases expanded."""
    for mod in modules:
        for name, f in vars(mod).items():
            if not (name.startswith("test") and callable(f)):
                continue
            params = [m for m in getattr(f, "pytestmark", []) if m.name == "parametrize"]
            if not params:
                yield name, f, {}
                continue
            argnames = [a.strip() for a in params[0].args[0].split(",")]
            for values in params[0].args[1]:
                values = values if len(argnames) > 1 else (values,)
                yield f"{name}{list(values)}", f, dict(zip(argnames, values, strict=True))


def _first_failure(cases):
    for case, f, kwargs in cases:
        try:
            f(**kwargs)
        except Exception as e:  # a failed assertion or an error: the mutant is detected
            return f"{case} ({type(e).__name__})"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", metavar="MODULE", help="a name of modules.toml")
    parser.add_argument("tests", nargs="+", metavar="TEST_MODULE", help="e.g. tests/test_x.py")
    parser.add_argument("--mutants", action="append", default=[], metavar="GLOB")
    args = parser.parse_args(argv)
    config = tomllib.loads((HERE / "modules.toml").read_text())["module"]
    if args.module not in config:
        parser.error(f"MODULE {args.module!r} is not one of {', '.join(config)}")
    work = HERE / "work" / args.module / "mutants"
    if not work.is_dir():
        parser.error(f"MODULE {args.module!r} has no mutants yet: run run.py {args.module} first")
    os.chdir(work)
    sys.path.insert(0, str(work))
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ["MUTANT_UNDER_TEST"] = ""
    names = [
        m
        for pattern in config[args.module]["mutate"]
        for source in sorted(str(p) for p in Path().glob(pattern))
        for m in _mutants(work, source)
        if not args.mutants or any(fnmatch.fnmatch(m, g) for g in args.mutants)
    ]
    modules = [
        importlib.import_module(t.removesuffix(".py").replace("/", ".")) for t in args.tests
    ]
    cases = list(_cases(modules))
    failure = _first_failure(cases)
    if failure:
        print(f"the tests fail without a mutant: {failure}")
        return 1
    equivalent = set(config[args.module].get("equivalent", []))
    counts = {"killed": 0, "survived": 0, "equivalent": 0}
    for name in names:
        os.environ["MUTANT_UNDER_TEST"] = name
        failure = _first_failure(cases)
        status = "killed" if failure else "equivalent" if name in equivalent else "survived"
        counts[status] += 1
        print(f"{status.upper()} {name} {failure or ''}".rstrip(), flush=True)
    print(f"== {args.module}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
