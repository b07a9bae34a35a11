"""A user's ``.npz`` file: ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``.

Labels ``y`` may be integer labels ``(N,)`` (or ``(N, 1)``, e.g. ``±1``) or one-hot rows
``(N, C)`` (the label is the column of the 1); the class labels that ``classes`` selects
are these integers. Inputs become float64 and channel-first:

* ``(N, D)``: vectors, unchanged;
* ``(N, H, W)``: with ``layout="auto"``, grayscale images -> ``(N, 1, H, W)``; with an explicit
  layout, 1-D signals: ``"channels_first"`` keeps ``(N, C, L)``, ``"channels_last"`` turns
  ``(N, L, C)`` into ``(N, C, L)``;
* ``(N, A, B, K)``: ``"channels_first"`` keeps it; ``"channels_last"`` gives ``(N, K, A, B)``;
  ``"auto"`` takes it as channels-last when ``K`` is 1 or 3, ``A`` is not 1 or 3, and a spatial
  axis is larger than ``K`` (e.g. ``(N, 28, 28, 1)``, ``(N, 32, 32, 3)``), else channels-first.

Without a test split in the file, train and test are split from ``x_train`` by ``seed``
(``n_test`` defaults to 20 % then, see :func:`._options.split_pool`); with one, each split is
a class-balanced draw from its own arrays. All common options apply (:mod:`._options`).

``channel_standardize=True`` standardizes each channel of channel-first inputs
``(N, C, ...)`` with the train mean and std of that channel (over samples and positions),
before ``unit_norm``. CIFAR-shaped files (``(N, 3, 32, 32)``, or ``(N, 32, 32, 3)``, which
``layout="auto"`` reads as channels-last) with ``channel_standardize=True, unit_norm=True`` get
the paper's preprocessing: per-channel standardization, then unit norm per sample.
"""

from __future__ import annotations

import os

import numpy as np

from . import _options as common
from ._dataset import Dataset

LAYOUTS = ("auto", "channels_first", "channels_last")


def npz(
    *,
    path=None,
    layout: str = "auto",
    classes=None,
    n_train: int | None = None,
    n_test: int | None = None,
    label_noise: float = 0.0,
    unit_norm: bool = False,
    standardize: bool = False,
    channel_standardize: bool = False,
    centre_targets: bool = False,
    seed: int = 0,
) -> Dataset:
    """Load ``path`` (see the module docstring for shapes, layouts and preprocessing)."""
    opts = dict(locals())
    opts["path"] = None if path is None else os.fspath(path)
    common.check_common("npz", opts, pool=True)
    if layout not in LAYOUTS:
        raise common.bad("npz", "layout", layout, f"use one of {', '.join(LAYOUTS)}")
    common.check_bool("npz", "channel_standardize", channel_standardize)
    if channel_standardize and standardize:
        raise common.bad(
            "npz",
            "channel_standardize",
            channel_standardize,
            "use it or standardize=True (per feature), not both",
        )
    if path is None or not os.path.isfile(path):
        raise common.bad(
            "npz", "path", opts["path"], "no such file; use the path of an existing .npz file"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in f.files}
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one line
        raise common.bad(
            "npz", "path", opts["path"], f"it is not a readable .npz file ({err})"
        ) from None
    found = ", ".join(sorted(arrays)) or "none"
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise common.bad(
                "npz", "path", opts["path"], f"the file lacks array {key!r} (arrays: {found})"
            )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise common.bad(
            "npz", "path", opts["path"], f"give both x_test and y_test or neither (arrays: {found})"
        )
    x = _inputs(opts, "x_train", arrays["x_train"], layout)
    if channel_standardize and x.ndim < 3:
        raise common.bad(
            "npz",
            "channel_standardize",
            channel_standardize,
            f"it needs channel-first inputs (N, C, ...) and x_train has shape {x.shape}",
        )
    labels = _labels(opts, "y_train", arrays["y_train"], len(x))
    x_test = labels_test = None
    if "x_test" in arrays:
        x_test = _inputs(opts, "x_test", arrays["x_test"], layout)
        labels_test = _labels(opts, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x.shape[1:]:
            raise common.bad(
                "npz",
                "path",
                opts["path"],
                f"x_test has sample shape {x_test.shape[1:]} but x_train has {x.shape[1:]}",
            )
    return common.from_pools("npz", opts, x, labels, x_test, labels_test)


def _inputs(opts: dict, key: str, x: np.ndarray, layout: str) -> np.ndarray:
    if x.dtype.kind not in "biuf" or x.ndim not in (2, 3, 4):
        raise common.bad(
            "npz",
            "path",
            opts["path"],
            f"{key} has dtype {x.dtype} and shape {x.shape}; use real numbers of shape "
            "(N, D), (N, H, W) or (N, A, B, C)",
        )
    x = x.astype(np.float64)
    if x.ndim == 3:
        if layout == "auto":
            return x[:, None]
        return x if layout == "channels_first" else x.transpose(0, 2, 1)
    if x.ndim == 4:
        k = x.shape[-1]
        last = k in (1, 3) and x.shape[1] not in (1, 3) and max(x.shape[1:3]) > k
        if layout == "channels_last" or (layout == "auto" and last):
            return x.transpose(0, 3, 1, 2)
    return x


def _labels(opts: dict, key: str, y: np.ndarray, n: int) -> np.ndarray:
    """Integer labels ``(N,)`` from integer labels ``(N,)``/``(N, 1)`` or one-hot ``(N, C)``."""

    def fail(why: str) -> ValueError:
        return common.bad("npz", "path", opts["path"], f"{key} {why}")

    if y.dtype.kind not in "biuf" or y.ndim not in (1, 2):
        raise fail(f"has dtype {y.dtype} and shape {y.shape}; use labels (N,) or one-hot (N, C)")
    if len(y) != n:
        x_key = key.replace("y_", "x_")
        raise fail(f"has {len(y)} samples but {x_key} has {n}; they must match")
    if y.ndim == 2 and y.shape[1] > 1:
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise fail("has shape (N, C) but its rows are not one-hot")
        return np.argmax(y, axis=1).astype(np.int64)
    y = y.reshape(-1)
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise fail("must hold integer class labels")
    return y.astype(np.int64)
