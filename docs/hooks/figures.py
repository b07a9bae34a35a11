"""MkDocs hook: the committed paper figures as site assets.

``gradflow figs --update-committed`` draws the full profile's PNGs into ``paper_figs/figures/``
(committed). This hook adds each of them to the site as ``assets/figures/<name>.png``, so that
the tutorial on figures shows the images the last full run drew, without a second copy of them
under ``docs/``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path("paper_figs") / "figures"
FIGURES_URI = "assets/figures"


def on_files(files, config, **kwargs):
    root = Path(config.config_file_path).resolve().parent
    for png in sorted((root / FIGURES).glob("*.png")):
        files.append(File.generated(config, f"{FIGURES_URI}/{png.name}", abs_src_path=str(png)))
    return files
