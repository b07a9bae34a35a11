"""Mutation testing of gradflow's core modules with mutmut (docs/mutation.md).

    nice -n 10 python benchmarks/mutation/run.py [MODULE ...] [--show-survivors] [--mutants GLOB]
        [--workers N]

MODULE is a name of ``benchmarks/mutation/modules.toml`` (``loss``, ``parametrization``,
``metrics``, ``predict``, ``problem``, ``dynamics``, ``equilibrium``); none means all of them.
For each module the script copies the package and the tests into
``benchmarks/mutation/work/MODULE/`` (git-ignored), writes mutmut's configuration there (the
module's files to mutate and its test selection), runs ``mutmut run`` (one worker unless
``--workers``), and prints the counts (killed / survived / timeout / equivalent / other) and the
survivors. The counts are also written to ``benchmarks/mutation/work/MODULE/score.json``. A rerun reuses mutmut's
cache in the work folder: delete the folder to start afresh.

mutmut (``pip install -e ".[mutation]"``) mutates each function into copies selected by a
trampoline at call time, and runs the tests of each mutant in a process forked from a server
that has imported the tests but run none of them, so every ``jax.jit`` traces the mutant afresh.
Decorated functions are not mutated (mutmut's rule).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIG = HERE / "modules.toml"
WORK = HERE / "work"
#: appended to the copy of tests/conftest.py: fewer Hypothesis examples per property, since
#: every mutant reruns its tests (the suite's own profile draws 15)
HYPOTHESIS_PROFILE = """

settings.register_profile("mutation", settings.get_profile("gradflow"), max_examples={})
settings.load_profile("mutation")
"""
IGNORE = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache", "*.pyc")


def _toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(str(v)) for v in values) + "]"


def _prepare(name: str, module: dict, common: dict) -> Path:
    """The work folder of one module: copies of the package, tests and data, and the config."""
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for folder in ("gradflow", "tests", *common.get("also_copy", [])):
        target = work / folder
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / folder, target, ignore=IGNORE)
    with open(work / "tests" / "conftest.py", "a") as f:
        f.write(HYPOTHESIS_PROFILE.format(common.get("max_examples", 5)))
    selection = list(module["tests"])
    if module.get("k"):
        selection += ["-k", module["k"]]
    lines = [
        "[tool.mutmut]",
        'source_paths = ["gradflow"]',
        f"only_mutate = {_toml_list(module['mutate'])}",
        f"also_copy = {_toml_list(common.get('also_copy', []))}",
        f"pytest_add_cli_args_test_selection = {_toml_list(selection)}",
        # no output capture by pytest's plugins beyond the default, no durations table
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-o", "addopts="]',
        'process_isolation = "forkserver"',
        f"timeout_multiplier = {float(common.get('timeout_multiplier', 10.0))}",
        f"timeout_constant = {float(common.get('timeout_constant', 30.0))}",
        "",
        "[tool.pytest.ini_options]",
        'testpaths = ["tests"]',
        'markers = ["slow: longer numerical checks (still run in CI)"]',
        "",
    ]
    (work / "pyproject.toml").write_text("\n".join(lines))
    return work


def _statuses(work: Path) -> dict[str, int | None]:
    """mutant name -> mutmut's exit code, read from the ``.meta`` files of the last run."""
    codes: dict[str, int | None] = {}
    for meta in sorted((work / "mutants").rglob("*.meta")):
        codes.update(json.loads(meta.read_text()).get("exit_code_by_key", {}))
    return codes


def _score(codes: dict[str, int | None], equivalent: set[str]) -> dict:
    from mutmut.stats import status_by_exit_code  # only with the [mutation] extra

    counts = {"killed": 0, "survived": 0, "timeout": 0, "equivalent": 0, "other": 0}
    survivors, others = [], {}
    for mutant, code in sorted(codes.items()):
        status = status_by_exit_code[code]
        if status == "survived" and mutant in equivalent:
            counts["equivalent"] += 1
        elif status in ("killed", "survived", "timeout"):
            counts[status] += 1
            if status == "survived":
                survivors.append(mutant)
        else:
            counts["other"] += 1
            others[mutant] = status
    stale = sorted(equivalent - set(codes))
    return {"counts": counts, "survivors": survivors, "other": others, "stale_equivalent": stale}


def main(argv=None) -> int:
    config = tomllib.loads(CONFIG.read_text())
    modules = config["module"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(modules))
    parser.add_argument("--show-survivors", action="store_true", help="print each survivor's diff")
    parser.add_argument(
        "--mutants",
        action="append",
        default=[],
        metavar="GLOB",
        help="only the mutants whose names match (e.g. '*x_data_loss*'); repeatable",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="mutants tested at once (mutmut's --max-children; default 1)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be a positive integer, got {args.workers}")
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        parser.error(f"MODULE {unknown[0]!r} is not one of {', '.join(modules)}")
    mutmut = [sys.executable, "-m", "mutmut"]
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    for name in args.modules or list(modules):
        module = modules[name]
        work = _prepare(name, module, config.get("mutmut", {}))
        # JAX's persistent compilation cache, shared by the forks: a compiled program is reused
        # when its HLO is unchanged (the unmutated functions) and compiled afresh for a mutant's
        # (the key is the program itself); about a quarter off a test's time here
        env.update(
            JAX_COMPILATION_CACHE_DIR=str(work / "jax-cache"),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
        print(f"== {name}: mutating {', '.join(module['mutate'])}", flush=True)
        run = [*mutmut, "run", "--max-children", str(args.workers), *args.mutants]
        subprocess.run(run, cwd=work, env=env, check=False)
        score = _score(_statuses(work), set(module.get("equivalent", [])))
        (work / "score.json").write_text(json.dumps(score, indent=1) + "\n")
        print(f"== {name}: " + ", ".join(f"{k} {v}" for k, v in score["counts"].items()))
        for mutant in score["survivors"]:
            print(f"   survived: {mutant}")
            if args.show_survivors:
                subprocess.run([*mutmut, "show", mutant], cwd=work, env=env, check=False)
        for mutant, status in score["other"].items():
            print(f"   {status}: {mutant}")
        for mutant in score["stale_equivalent"]:
            print(f"   listed as equivalent but no longer generated: {mutant}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
