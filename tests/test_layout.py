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


#: Folders outside the package: they may use gradflow's public names only.
OUTSIDE_PACKAGE = ("paper_figs", "benchmarks", "models", "scenarios")
#: file -> why it may import a private module (a benchmark that patches an internal on purpose).
PRIVATE_ALLOWED = {
    "benchmarks/sde_stationary.py": "adds an unadvertised adaptive SDE solver to the private list",
    "benchmarks/blocks.py": "times a sweep's batched path (dynamics._batch.plan) against direct calls",
    "benchmarks/sweep.py": "times a sweep's batched path (dynamics._batch) against one-by-one runs",
    "benchmarks/same_runs.py": "compares the sweeps' batched path (dynamics._batch) across checkouts",
    "benchmarks/sgd_throughput.py": "times SGD's batch selection (dynamics._sgd.batch_indices) alone",
    "benchmarks/save_counts.py": "swaps the padded step_ts (dynamics._ode, _sde) for the unpadded one",
    "benchmarks/nc_horizon.py": "decomposes the Filippov solve's Jacobian at its start "
    "(analysis._multiplier_system, _sliding_set)",
}


def _private_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every import of a private gradflow module or name in ``path``
    (``from gradflow.x._y import``, ``from gradflow.x import _y``, ``import gradflow._y``), and
    every attribute ``gradflow._y`` / ``gf._y``; relative imports (inside ``models/``, which is
    ``gradflow.models``) are the package's own."""
    text = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            names = [a.name for a in node.names]
            if parts[0] == "gradflow" and (
                any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names)
            ):
                found.append(node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "gradflow" and any(p.startswith("_") for p in parts):
                    found.append(node.lineno)
        elif isinstance(node, ast.Attribute) and _private_attribute(node):
            found.append(node.lineno)
    lines = text.splitlines()
    return [(i, lines[i - 1].strip()) for i in sorted(set(found))]


def _private_attribute(node: ast.Attribute) -> bool:
    """``gf._x``, ``gradflow.dynamics._y`` ...: a private attribute of gradflow (not a dunder)."""
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not (isinstance(node, ast.Name) and node.id in ("gf", "gradflow")):
        return False
    return any(a.startswith("_") and not a.startswith("__") for a in chain)


#: mutmut's git-ignored work folder (benchmarks/mutation/run.py): copies of the package and the
#: tests, which import private modules as the tests do
MUTATION_WORK = "benchmarks/mutation/work/"


def test_code_outside_the_package_uses_only_public_names():
    offenders = []
    for folder in OUTSIDE_PACKAGE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in PRIVATE_ALLOWED or rel.startswith(MUTATION_WORK):
                continue
            offenders += [f"{rel}:{i}: {line}" for i, line in _private_imports(path)]
    assert not offenders, "\n".join(offenders)


def test_private_import_finder_finds_each_form(tmp_path):
    """A positive control: every form of private import is reported, public ones are not."""
    path = tmp_path / "x.py"
    path.write_text(
        "from gradflow.dynamics._ode import flow\n"
        "from gradflow.dynamics import _sde\n"
        "import gradflow._loss\n"
        "x = gf._observables.GROUPS\n"
        "from gradflow.dynamics import flow\n"
        "from gradflow.models import MLP\n"
        "from ._base import HomogeneousNet\n"
        "y = gf.data.load\n",
        encoding="utf-8",
    )
    assert [i for i, _ in _private_imports(path)] == [1, 2, 3, 4]


# ---- the public namespace: one list -----------------------------------------------------------

PUBLIC_API = ROOT / "tests" / "public_api.txt"


def public_api() -> dict[str, list[str]]:
    """Namespace -> its public names, from tests/public_api.txt (``[namespace]`` headers)."""
    out: dict[str, list[str]] = {}
    for line in PUBLIC_API.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = out.setdefault(line.strip("[]"), [])
        else:
            current.append(line)
    return out


@pytest.mark.parametrize("namespace", sorted(public_api()))
def test_each_namespace_exports_exactly_its_listed_names(namespace):
    import importlib
    import types

    listed = public_api()[namespace]
    module = importlib.import_module(namespace)
    assert isinstance(module.__all__, list)
    assert sorted(module.__all__) == sorted(listed), namespace
    assert len(set(listed)) == len(listed), "a name is listed twice"
    for name in listed:
        assert hasattr(module, name), f"{namespace}.{name} is listed but missing"
    namespaces = set(public_api())

    def public(name):  # a sub-package is an attribute once imported (``gradflow.testing``)
        sub = isinstance(getattr(module, name), types.ModuleType)
        return not name.startswith("_") and not (sub and f"{namespace}.{name}" in namespaces)

    shown = {name for name in dir(module) if public(name)}
    expected = {name for name in listed if public(name)}
    assert shown == expected, (
        f"{namespace}: dir() and the list differ by {sorted(shown ^ expected)}"
    )


def test_every_listed_namespace_is_a_package_of_the_distribution():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    packages = set(re.findall(r'^\s*"(gradflow(?:\.\w+)?)",\s*$', text, flags=re.M))
    assert set(public_api()) == packages


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


@pytest.mark.parametrize(
    "name",
    # CI runs the cheapest (`gradflow figs --fast` in test_figs runs every figure's scenarios
    # through the same runner); the others are in the `long` tier (README.md "Tests")
    [n if n == "sgd_noise" else pytest.param(n, marks=pytest.mark.long) for n in CHEAP],
)
def test_cheap_figure_scenarios_run_with_plain_gradflow_run(name, tmp_path):
    from gradflow._cli import main

    path = ROOT / "paper_figs" / "scenarios" / f"{name}.toml"
    assert main(["run", str(path), "--fast", "--quiet", "--out", str(tmp_path)]) == 0
    assert list(tmp_path.glob("*.nc"))


# ---- optional dependencies: Dask is the `sweep` extra --------------------------------------------

OPTIONAL = ("dask", "distributed")


def test_no_module_of_the_package_imports_dask_at_import_time():
    """``import gradflow`` needs no Dask: only function bodies (the sweeps on workers) import
    it."""
    offenders = []
    for name, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            offenders += [f"{name}:{node.lineno}" for r in roots if r in OPTIONAL]
    assert not offenders, offenders
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    core = text[text.index("dependencies = [") : text.index("[project.optional-dependencies]")]
    assert not any(f'"{m}' in core for m in OPTIONAL)
    assert re.search(r'^sweep = \["dask[^"]*", "distributed[^"]*"\]', text, flags=re.M)


def test_a_sweep_on_workers_without_dask_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    from tiny_scenario import SGD_BASE

    from gradflow._cli import main
    from gradflow._optional import require

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ImportError) as info:
        require("distributed", "a sweep on workers")
    assert str(info.value) == (
        "a sweep on workers needs 'distributed', which is not installed: "
        'pip install -e ".[sweep]"'
    )
    path = tmp_path / "s.toml"
    path.write_text(
        SGD_BASE.format(name="sw", extra="") + '[sweep]\n[sweep.axes]\n"sgd.lr" = [0.05, 0.1]\n',
        encoding="utf-8",
    )
    code = main(["sweep", str(path), "--workers", "2", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "needs 'distributed'" in err and '".[sweep]"' in err


# ---- docs/api.md documents exactly the public names ---------------------------------------------


def _api_page_paths() -> list[tuple[str, list[str] | None, list[str]]]:
    """``(path, members or None, excluded)`` of every ``::: path`` block of docs/api.md
    (``models.X`` is ``gradflow.models.X``; ``excluded``: the ``"!^Name$"`` filters)."""
    lines = (ROOT / "docs" / "api.md").read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if not line.startswith("::: "):
            continue
        path = line[4:].strip()
        path = "gradflow." + path if path.startswith("models.") else path
        members, excluded, j = None, [], i + 1
        while j < len(lines) and (lines[j].startswith("  ") or not lines[j].strip()):
            text = lines[j].strip()
            if text == "members:":
                members = []
            elif text.startswith("- ") and members is not None:
                members.append(text[2:].strip())
            elif text.startswith("filters:"):
                excluded = re.findall(r'"!\^(\w+)\$"', text)
            if not text and j + 1 < len(lines) and not lines[j + 1].startswith("  "):
                break
            j += 1
        blocks.append((path, members, excluded))
    return blocks


def _documented() -> dict[str, set[str]]:
    """Namespace -> the names docs/api.md documents there, each as ``namespace.name``."""
    api = public_api()
    out: dict[str, set[str]] = {ns: set() for ns in api}
    for path, members, excluded in _api_page_paths():
        if path in api:  # a whole namespace, or its listed members
            names = members if members is not None else api[path]
            out[path] |= {n for n in names if n not in excluded}
        else:
            namespace, _, name = path.rpartition(".")
            out.setdefault(namespace, set()).add(name)
    return out


def test_the_api_page_documents_exactly_the_public_names():
    import importlib

    api = public_api()
    documented = _documented()
    unknown = sorted(
        f"{ns}.{n}" for ns, names in documented.items() for n in names if n not in api.get(ns, ())
    )
    assert not unknown, f"docs/api.md documents names that are not public: {unknown}"
    # a name re-exported by two namespaces (gf.compare is gf.analysis.compare) is documented once
    objects = {
        id(getattr(importlib.import_module(ns), n))
        for ns, names in documented.items()
        for n in names
    }
    missing = []
    for ns, names in api.items():
        module = importlib.import_module(ns)
        for name in names:
            value = getattr(module, name)
            if name == "__version__" or f"{ns}.{name}" in api:  # sub-packages have sections
                continue
            if name not in documented[ns] and id(value) not in objects:
                missing.append(f"{ns}.{name}")
    assert not missing, f"docs/api.md does not document {missing}"


def test_the_api_page_check_sees_a_missing_and_an_extra_name(monkeypatch):
    """A positive control: a listed name without documentation, and a documented name that is
    not listed, are both found."""
    real = public_api()
    monkeypatch.setattr(
        sys.modules[__name__],
        "public_api",
        lambda: {**real, "gradflow": [n for n in real["gradflow"] if n != "Observable"]},
    )
    with pytest.raises(AssertionError, match=r"not public: \['gradflow.Observable'\]"):
        test_the_api_page_documents_exactly_the_public_names()
    monkeypatch.setattr(sys.modules[__name__], "public_api", lambda: real)
    monkeypatch.setattr(
        sys.modules[__name__],
        "_api_page_paths",
        lambda: [(p, m, e) for p, m, e in _API_PATHS if p != "gradflow.metrics"],
    )
    with pytest.raises(AssertionError, match=r"does not document \[.*'gradflow.metrics.margins'"):
        test_the_api_page_documents_exactly_the_public_names()


_API_PATHS = _api_page_paths()
