"""The README's commands are the ones CI runs, and the docs build strictly."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [line.strip() for b in blocks for line in b.splitlines() if "pytest" in line]
    assert len(commands) == 1, commands
    return commands[0]


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _readme_test_command() in [line.strip() for line in ci]


def test_the_test_command_installs_the_docs_extra():
    """The docs build is part of the test suite, so the test command installs its extra."""
    assert re.search(r'pip install -e "\.\[[^\]]*docs[^\]]*\]"', _readme_test_command())


def test_docs_build_strictly(tmp_path):
    """``mkdocs build --strict``: every page, the generated scenario reference and the API
    reference from the docstrings, with no warning."""
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    reference = (tmp_path / "site" / "scenarios" / "index.html").read_text(encoding="utf-8")
    from gradflow.scenario import SCHEMA

    for section, keys in SCHEMA.items():  # generated from the schema: every key is there
        for key in keys:
            assert f"{key}" in reference, f"{section}.{key} missing from the scenario reference"
