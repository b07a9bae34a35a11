"""The repository's structure: self-contained, no import cycles, ``gradflow.models`` only,
every "THEORY n.m" citation resolves to a section of docs/theory.md, every figure scenario runs
with plain ``gradflow run``."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"gradflow": ROOT / "gradflow", "gradflow.models": ROOT / "models"}


def _tracked_files():
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def _text_files():
    for path in _tracked_files():
        if path.suffix in {".png", ".nc", ".npz", ".pdf"}:
            continue
        try:
            yield path, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


# ---- self-contained -------------------------------------------------------------------------

#: References that leave the repository: the team's specification folder, this machine's paths.
OUTSIDE = re.compile(r"\.\./shared|shared/(THEORY|DESIGN|STYLE)\.md|/work/(main|shared)|\.\./\.\./")


def test_no_file_links_outside_the_repository():
    offenders = []
    for path, text in _text_files():
        if path == Path(__file__):
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


def test_outside_pattern_catches_what_it_should():
    """A positive control for the grep above."""
    # built at run time, so that this file holds no such link itself
    sibling = "/".join(("..", "shared", "THEORY.md"))
    assert OUTSIDE.search(f"see [THEORY]({sibling})")
    assert OUTSIDE.search("/".join(("shared", "DESIGN.md")))
    assert not OUTSIDE.search("docs/theory.md")


def _theory_sections() -> set[str]:
    """Section numbers of the headings of docs/theory.md: '1', '3', '3.4', '4.1', ..."""
    text = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    return set(re.findall(r"^#{1,4}\s+(\d+(?:\.\d+)?)\.?\s", text, flags=re.M))


def test_every_theory_citation_resolves_to_a_section_of_the_docs():
    sections = _theory_sections()
    assert {"1", "3.4", "4.1", "4.8", "6"} <= sections, sorted(sections)
    number = r"\d+(?:\.\d+)?"
    cite = re.compile(rf"THEORY(?:\.md)?\s+({number}(?:\s*(?:,|–|-|and|/)\s*{number})*)")
    missing = []
    for path, text in _text_files():
        if path.suffix not in {".py", ".md", ".toml"} or path.parts[-2:-1] == ("docs",):
            continue
        for match in cite.finditer(text):
            for number in re.findall(r"\d+(?:\.\d+)?", match.group(1)):
                major = number.split(".")[0]
                # "THEORY 3.1–3.3" names 3.1 and 3.3; a bare "3" or "4" is the whole section
                if number not in sections and not ("." not in number and major in sections):
                    missing.append(f"{path.relative_to(ROOT)}: THEORY {number}")
    assert not missing, "\n".join(sorted(set(missing)))


# ---- imports ---------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    for package, folder in PACKAGE_DIRS.items():
        try:
            rel = path.relative_to(folder)
        except ValueError:
            continue
        if package == "gradflow" and rel.parts[:1] == ("models",):
            continue
        parts = [*package.split("."), *rel.with_suffix("").parts]
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    found = {}
    for folder in PACKAGE_DIRS.values():
        for path in folder.rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, modules) -> set[str]:
    """Every gradflow module that importing ``name`` may import (function-level imports too),
    with the packages whose ``__init__`` that import runs, except ``name``'s own ancestors
    (they are already initializing)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - node.level + 1]
                module = ".".join(stem + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets |= {f"{module}.{a.name}" for a in node.names}
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    out = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix not in ancestors and prefix != name:
                out.add(prefix)
    return out


def _cycles(graph) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle_inside_gradflow():
    modules = _modules()
    assert "gradflow.models" in modules and "gradflow.dynamics._ode" in modules
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "gradflow.dynamics._core" in graph["gradflow.dynamics._ode"]
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    """A positive control: the walk reports a planted cycle."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_models_is_imported_as_gradflow_models_only(tmp_path):
    code = (
        "import importlib.util, gradflow.models as m; "
        "assert importlib.util.find_spec('models') is None, 'a top-level models is installed'; "
        "print(m.MLP.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "gradflow.models._mlp"


def test_no_file_imports_the_old_models_package():
    pattern = re.compile(r"^\s*(from models\b|import models\b)", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for p, text in _text_files()
        if p.suffix in {".py", ".md"} and pattern.search(text)
    ]
    assert not offenders, offenders


def test_figures_and_benchmarks_use_only_public_names():
    private = re.compile(
        r"from gradflow(?:\.\w+)*\._\w+ import|from gradflow import _\w+|gradflow\._\w+\."
    )
    offenders = []
    for folder in ("paper_figs", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if private.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# ---- every figure scenario is a plain scenario -------------------------------------------------
#
# `gradflow figs --fast` (tests/test_figs.py) runs every figure scenario through
# gradflow.scenario.run, the runner behind `gradflow run`. Here: every one validates with no
# help from the figure scripts, and the command line runs the cheap ones end to end (the
# expensive ones are not run twice in CI).

FIGURE_SCENARIOS = sorted((ROOT / "paper_figs" / "scenarios").glob("*.toml"))
CHEAP = ("random_labels", "rank", "sgd_noise", "work_precision")


@pytest.mark.parametrize("path", FIGURE_SCENARIOS, ids=lambda p: p.stem)
def test_every_figure_scenario_validates_as_a_plain_scenario(path):
    from gradflow.scenario import load_config

    for fast in (False, True):
        config = load_config(path, [], fast=fast)
        assert config.name == path.stem and config.runs


def test_the_figures_run_their_scenarios_through_the_scenario_runner():
    from paper_figs import _common

    source = (ROOT / "paper_figs" / "_common.py").read_text(encoding="utf-8")
    assert "from gradflow.scenario import load_config, run" in source
    assert _common.SCENARIOS == ROOT / "paper_figs" / "scenarios"


@pytest.mark.parametrize("name", CHEAP)
def test_cheap_figure_scenarios_run_with_plain_gradflow_run(name, tmp_path):
    from gradflow._cli import main

    path = ROOT / "paper_figs" / "scenarios" / f"{name}.toml"
    assert main(["run", str(path), "--fast", "--quiet", "--out", str(tmp_path)]) == 0
    assert list(tmp_path.glob("*.nc"))
