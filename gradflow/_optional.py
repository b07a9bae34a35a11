"""Optional dependencies, imported where they are used, with one line naming the extra that
installs them when they are missing (``pip install -e ".[sweep]"``: Dask for sweeps on worker
processes or a cluster)."""

from __future__ import annotations

import importlib
from types import ModuleType

#: module -> the extra of pyproject.toml that installs it.
EXTRAS = {"distributed": "sweep", "dask": "sweep"}


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or an ``ImportError`` of one line: what needs it and how to install
    it (``pip install -e ".[<extra>]"``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(module)
        how = f'pip install -e ".[{extra}]"' if extra else f"pip install {module}"
        raise ImportError(f"{purpose} needs {module!r}, which is not installed: {how}") from None
