"""The loaders by name: :func:`load`, :func:`names`, :func:`options` (``gf.data.*``)."""

from __future__ import annotations

import inspect

from ._dataset import Dataset
from ._npz import npz
from ._real import digits, mnist1d
from ._synthetic import compositional, gaussian_mixture, teacher

_LOADERS = {
    "compositional": compositional,
    "digits": digits,
    "gaussian-mixture": gaussian_mixture,
    "mnist1d": mnist1d,
    "npz": npz,
    "teacher": teacher,
}


def names() -> tuple[str, ...]:
    """The dataset names that :func:`load` accepts."""
    return tuple(sorted(_LOADERS))


def options(name: str) -> dict[str, object]:
    """The options of dataset ``name`` with their defaults."""
    _check_name(name)
    params = inspect.signature(_LOADERS[name]).parameters
    return {key: p.default for key, p in params.items()}


def load(name: str, **opts) -> Dataset:
    """Load dataset ``name`` with its options (see each loader's docstring)."""
    allowed = options(name)
    for key in opts:
        if key not in allowed:
            raise ValueError(
                f"dataset {name!r}: option {key!r} is unknown; allowed: {', '.join(allowed)}"
            )
    return _LOADERS[name](**opts)


def _check_name(name: str) -> None:
    if name not in _LOADERS:
        raise ValueError(f"dataset name {name!r} is unknown; allowed: {', '.join(names())}")
