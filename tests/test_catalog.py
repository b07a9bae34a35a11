"""The scenario tables of scenarios/README.md and docs/scenarios.md are generated from the files."""

import shutil
from pathlib import Path

import pytest

from gradflow.scenario import _catalog

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("page", sorted(_catalog.PAGES))
def test_committed_scenario_tables_equal_the_generated_ones(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    assert _catalog.rendered(text, _catalog.PAGES[page]) == text, (
        f"{page}: the scenario table is stale; run python -m gradflow.scenario._catalog"
    )
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    files = sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    assert [row.split("`")[1] for row in rows] == files  # one row per file, no other
    cifar = next(row for row in rows if "paper_cifar_binary" in row)
    assert "8 min" in cifar and "hours" not in cifar


def test_the_table_follows_the_files(tmp_path):
    for name in ("quickstart.toml", "sweep_lambda_lr.toml", "sde_vs_sgd.toml"):
        shutil.copy(ROOT / "scenarios" / name, tmp_path / name)
    page = f"intro\n{_catalog.BEGIN}\nold\n{_catalog.END}\nafter\n"
    text = _catalog.rendered(page, links=True, folder=tmp_path)
    assert text.startswith(f"intro\n{_catalog.BEGIN}\n| file |") and text.endswith("after\n")
    quick = next(line for line in text.splitlines() if "quickstart" in line)
    assert "Runs: flow; GD η = 0.05; SGD η = 0.05, B = 16." in quick
    assert "[THEORY 4.1](theory.md#4.1)" in quick
    sweep = next(line for line in text.splitlines() if "sweep_lambda_lr" in line)
    assert "SGD η swept" in sweep and "`sgd.lr` ∈ {0.01, 0.02, 0.05, 0.1}" in sweep
    sde = next(line for line in text.splitlines() if "sde_vs_sgd" in line)
    assert "SDE η = 0.02, B = 4, 256 seeds" in sde
    # a change in a file changes its row
    path = tmp_path / "quickstart.toml"
    path.write_text(path.read_text().replace("[gd]\nlr = 0.05", "[gd]\nlr = [0.01, 0.1]"))
    again = _catalog.rendered(page, links=True, folder=tmp_path)
    assert again != text and "GD η ∈ {0.01, 0.1}" in again
    with pytest.raises(ValueError, match="scenario-table: begin"):
        _catalog.rendered("no markers", links=False, folder=tmp_path)
