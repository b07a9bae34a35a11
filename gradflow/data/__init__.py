"""Datasets: ``gf.data.load(name, **options)`` returns a :class:`Dataset`.

Loaders are registered by name in ``_LOADERS``; each takes keyword options only and never
opens a network connection.
"""

from __future__ import annotations

from ._dataset import Dataset, encode_labels
from ._synthetic import gaussian_mixture

_LOADERS = {
    "gaussian-mixture": gaussian_mixture,
}


def names() -> tuple[str, ...]:
    """The dataset names that :func:`load` accepts."""
    return tuple(sorted(_LOADERS))


def load(name: str, **options) -> Dataset:
    """Load dataset ``name`` with its options (see each loader's docstring)."""
    if name not in _LOADERS:
        raise ValueError(
            f"dataset name {name!r} is unknown; allowed: {', '.join(names())}"
        )
    return _LOADERS[name](**options)


__all__ = ["Dataset", "encode_labels", "load", "names", "gaussian_mixture"]
