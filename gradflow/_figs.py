"""``gradflow figs``: the paper figures of the repository checkout the command runs in.

``paper_figs/`` is not installed with gradflow; it belongs to a repository checkout.
``gradflow figs`` walks up from the current directory to the first folder that holds
``paper_figs/`` and a ``pyproject.toml`` naming the project ``gradflow`` (:func:`find_checkout`),
imports that folder's ``paper_figs`` (:func:`import_build`, without touching ``sys.path``) and
so writes its cache and PNGs under that checkout (or ``--out``), never under the checkout that
an editable install of gradflow points to.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from pathlib import Path

#: The figures, in the order ``gradflow figs`` draws them, and what each checks (for ``figs
#: --help``; tests/test_figs.py checks that this is paper_figs/_build.py's FIGURES).
FIGURES = {
    "rho_dynamics": "ρ(t) closes in on ρ_eq(V(t)) along the flow and SGD (THEORY 4.1)",
    "conservation": "balancedness and WN norms kept by the flow, GD drift ∝ η (3.1, 3.3)",
    "margins": "margin spread and 1 - min margin·ρ against λ at equilibrium (4.4, 4.9)",
    "sgd_noise": "SGD's per-epoch weight change stays > 0 for λ > 0, B < N (4.7)",
    "rank": "rank of a hidden layer against B at fixed epochs and fixed ηλ·steps (4.6)",
    "neural_collapse": "NC1-NC4, the SQI defect and M̃ for C = 4 and 10 classes (4.8)",
    "init_scale": "final ρ, margin and test error independent of the init scale with λ > 0",
    "random_labels": "ρ and test error against the fraction of random labels (4.3-4.4, 6)",
    "bounds": "dense and kernel margin bounds against N, the Toeplitz norm ratio (6)",
    "sde_vs_sgd": "SGD against its SDE: weak error O(η), distributions over seeds (3.4)",
    "work_precision": "the ODE solvers' orders: error against gradient evaluations",
}


class NoCheckout(Exception):
    """No gradflow repository checkout at or above the current directory."""


def _names_gradflow(pyproject: Path) -> bool:
    try:
        table = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return table.get("project", {}).get("name") == "gradflow"


def find_checkout(start=None) -> Path:
    """The first folder at or above ``start`` (default: the current directory) that holds
    ``paper_figs/`` and a ``pyproject.toml`` naming the project ``gradflow``."""
    start = Path.cwd() if start is None else Path(start)
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "paper_figs" / "_build.py").is_file() and _names_gradflow(
            folder / "pyproject.toml"
        ):
            return folder
    raise NoCheckout(
        f"figs needs a gradflow repository checkout: no folder at or above {start} holds "
        "paper_figs/ and a pyproject.toml naming gradflow; run it inside a clone of the "
        "repository"
    )


def import_build(root: Path):
    """``paper_figs._build`` of the checkout ``root``, imported from its file (``sys.path`` is
    left alone); a ``paper_figs`` already imported from another folder is replaced."""
    init = (root / "paper_figs" / "__init__.py").resolve()
    loaded = sys.modules.get("paper_figs")
    if loaded is not None and Path(loaded.__file__ or "").resolve() != init:
        for name in [n for n in sys.modules if n == "paper_figs" or n.startswith("paper_figs.")]:
            del sys.modules[name]
        loaded = None
    if loaded is None:
        spec = importlib.util.spec_from_file_location(
            "paper_figs", init, submodule_search_locations=[str(init.parent)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["paper_figs"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["paper_figs"]
            raise
    return importlib.import_module("paper_figs._build")


def epilog() -> str:
    """The figures, one per line, for ``gradflow figs --help``."""
    width = max(map(len, FIGURES))
    lines = [f"  {name:{width}s}  {what}" for name, what in FIGURES.items()]
    head = "figures (--only NAME ...; numbers are sections of docs/theory.md):"
    return head + "\n" + "\n".join(lines)
