"""Datasets: ``gf.data.load(name, **options)`` returns a :class:`Dataset`.

Names: ``"digits"``, ``"mnist1d"``, ``"npz"``, ``"gaussian-mixture"``, ``"teacher"``,
``"compositional"``. Every loader takes keyword options only, never opens a network
connection, and accepts the common options ``classes``, ``n_train``, ``n_test``,
``label_noise``, ``unit_norm``, ``standardize``, ``centre_targets`` and ``seed`` (see
:mod:`._options`). Targets follow THEORY 1: two selected classes give ``(N, 1)``
targets in ``±1`` (first listed class ``-1``, second ``+1``); more give one-hot ``(N, C)``
(``centre_targets=True``: one-hot minus ``1/C``). Inputs are float64,
``(N, D)`` vectors or channel-first ``(N, C, ...)`` arrays. Bad options raise ``ValueError``
with one line naming the dataset, the option, its value and what is allowed.
"""

from __future__ import annotations

import inspect

from ._dataset import Dataset, encode_labels
from ._npz import npz
from ._options import COMMON
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


__all__ = [
    "COMMON",
    "Dataset",
    "compositional",
    "digits",
    "encode_labels",
    "gaussian_mixture",
    "load",
    "mnist1d",
    "names",
    "npz",
    "options",
    "teacher",
]
