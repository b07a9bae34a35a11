"""Synthetic tasks generated from a seed (no files, no network)."""

from __future__ import annotations

import numpy as np

from ._dataset import Dataset, encode_labels


def gaussian_mixture(
    *,
    n_train: int = 256,
    n_test: int = 256,
    dim: int = 16,
    classes: int = 2,
    separation: float = 3.0,
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Balanced Gaussian mixture: class ``c`` is ``N(separation * m_c / ||m_c||, noise² I)``.

    The class means ``m_c`` are random directions drawn from the seed. ``n_train`` and
    ``n_test`` are totals, split evenly across classes. Binary tasks (``classes = 2``) get
    ``±1`` labels of shape ``(N, 1)``; otherwise one-hot.
    """
    _positive_int("gaussian-mixture", "n_train", n_train)
    _positive_int("gaussian-mixture", "n_test", n_test, allow_zero=True)
    _positive_int("gaussian-mixture", "dim", dim)
    if not isinstance(classes, (int, np.integer)) or classes < 2:
        raise ValueError(
            f"dataset 'gaussian-mixture': option classes={classes!r} is not allowed; "
            "use an integer >= 2"
        )
    if noise < 0:
        raise ValueError(
            f"dataset 'gaussian-mixture': option noise={noise!r} is not allowed; use noise >= 0"
        )
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % classes
        rng.shuffle(labels)
        x = means[labels] + noise * rng.standard_normal((n, dim))
        return x, encode_labels(labels, classes)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test) if n_test > 0 else (None, None)
    options = dict(
        n_train=n_train, n_test=n_test, dim=dim, classes=classes,
        separation=separation, noise=noise, seed=seed,
    )
    return Dataset("gaussian-mixture", x_train, y_train, x_test, y_test, options)


def _positive_int(dataset: str, key: str, value, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(
            f"dataset {dataset!r}: option {key}={value!r} is not allowed; "
            f"use an integer >= {low}"
        )
