"""MkDocs hook: two fixes to the HTML of the API reference, which mkdocstrings renders from
gradflow's docstrings.

* The docstrings are Google style with a few reST roles (``:class:`Problem```,
  ``:func:`load```); Markdown renders them as ``:class:`` followed by the code. The role prefix
  is dropped, leaving the code.
* Citations of the theory ("THEORY 4.1", "THEORY.md 3.4", "THEORY section 5") become links
  to the numbered headings of ``theory.md``.

Only text outside tags, code and links is changed. A citation of a section that
``theory.md`` does not have is a warning (so ``mkdocs build --strict`` fails on it).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mkdocs.utils import get_relative_url

log = logging.getLogger("mkdocs.hooks.docstrings")

PAGES = ("api.md",)
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):(?=<code)")
_CITE = re.compile(r"\bTHEORY(?:\.md)?(?: sections?)? (\d)(?:\.(\d))?(?![\d.]\d)")
_TOKEN = re.compile(r"(<[^>]+>)")
_SKIP = {"a", "code", "pre", "h1", "h2", "h3", "h4", "h5", "h6"}


def on_page_content(html, page, config, files, **kwargs):
    if page.file.src_uri not in PAGES:
        return html
    theory = get_relative_url("theory/" if config.use_directory_urls else "theory.html", page.url)
    anchors = set(re.findall(r"\{#([\w.-]+)\}", (Path(config.docs_dir) / "theory.md").read_text()))
    html = _ROLE.sub("", html)
    out, depth = [], 0
    for token in _TOKEN.split(html):
        if token.startswith("<"):
            name = re.match(r"</?\s*([a-zA-Z0-9]+)", token)
            if name and name[1].lower() in _SKIP and not token.endswith("/>"):
                depth += -1 if token.startswith("</") else 1
            out.append(token)
        elif depth == 0:
            out.append(_CITE.sub(lambda m: _link(m, theory, anchors, page), token))
        else:
            out.append(token)
    return "".join(out)


def _link(match, theory: str, anchors: set, page) -> str:
    anchor = match[1] if match[2] is None else f"{match[1]}.{match[2]}"
    if anchor not in anchors:
        log.warning(
            "%s: %r cites a section that theory.md does not have", page.file.src_uri, match[0]
        )
        return match[0]
    return f'<a href="{theory}#{anchor}">{match[0]}</a>'
