"""A user's ``.npz`` file: ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``.

Targets ``y`` (option ``targets``):

* ``"classes"``: integer labels ``(N,)`` (or ``(N, 1)``, e.g. ``±1``) or one-hot rows
  ``(N, C)`` (the label is the column of the 1); the class labels that ``classes`` selects
  are these integers, encoded as THEORY 1's ±1 or one-hot targets.
* ``"regression"``: real-valued targets, ``(N,)`` (becomes ``(N, 1)``) or ``(N, C)``, used
  as they are (the theory holds for any ``Y``). There are no classes: ``classes``,
  ``label_noise`` and ``centre_targets`` do not apply, and the splits are random draws.
* ``"auto"`` (the default): ``"classes"`` when every value of ``y_train`` is an integer,
  ``"regression"`` otherwise; the choice is recorded in ``options["targets"]`` and, when it
  is ``"regression"``, stated in :attr:`Dataset.notes` and as a warning.

``balance`` (classes only; default ``True``, like every loader): each split holds as many
samples of every selected class (the first classes one more when a count is not a multiple);
the samples that balancing leaves out of an unbalanced file are reported, per class, in
:attr:`Dataset.notes` and as a warning. ``balance=False`` keeps every sample of the selected
classes: the splits are random draws.

Inputs become float64 and channel-first:

* ``(N, D)``: vectors, unchanged;
* ``(N, H, W)``: with ``layout="auto"``, grayscale images -> ``(N, 1, H, W)``; with an explicit
  layout, 1-D signals: ``"channels_first"`` keeps ``(N, C, L)``, ``"channels_last"`` turns
  ``(N, L, C)`` into ``(N, C, L)``;
* ``(N, A, B, K)``: ``"channels_first"`` keeps it; ``"channels_last"`` gives ``(N, K, A, B)``;
  ``"auto"`` takes it as channels-last when ``K`` is 1 or 3, ``A`` is not 1 or 3, and a spatial
  axis is larger than ``K`` (e.g. ``(N, 28, 28, 1)``, ``(N, 32, 32, 3)``), else channels-first.

Without a test split in the file, train and test are split from ``x_train`` by ``seed``
(``n_test`` defaults to 20 % then, see :func:`._options.split_pool`); with one, each split is
a (class-balanced with ``balance``) draw from its own arrays. All common options apply
(:mod:`._options`).

``channel_standardize=True`` standardizes each channel of channel-first inputs
``(N, C, ...)`` with the train mean and std of that channel (over samples and positions),
before ``unit_norm``. CIFAR-shaped files (``(N, 3, 32, 32)``, or ``(N, 32, 32, 3)``, which
``layout="auto"`` reads as channels-last) with ``channel_standardize=True, unit_norm=True`` get
the paper's preprocessing: per-channel standardization, then unit norm per sample.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from . import _options as common
from ._dataset import Dataset

LAYOUTS = ("auto", "channels_first", "channels_last")
TARGETS = ("auto", "classes", "regression")


def npz(
    *,
    path=None,
    layout: str = "auto",
    classes=None,
    n_train: int | None = None,
    n_test: int | None = None,
    balance: bool = True,
    targets: str = "auto",
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
    if targets not in TARGETS:
        raise common.bad("npz", "targets", targets, f"use one of {', '.join(TARGETS)}")
    common.check_bool("npz", "balance", balance)
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
    kind = _kind(opts, arrays["y_train"])
    read = _labels if kind == "classes" else _real_targets
    labels = read(opts, "y_train", arrays["y_train"], len(x))
    x_test = labels_test = None
    if "x_test" in arrays:
        x_test = _inputs(opts, "x_test", arrays["x_test"], layout)
        labels_test = read(opts, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x.shape[1:]:
            raise common.bad(
                "npz",
                "path",
                opts["path"],
                f"x_test has sample shape {x_test.shape[1:]} but x_train has {x.shape[1:]}",
            )
        if kind == "regression" and labels_test.shape[1] != labels.shape[1]:
            raise common.bad(
                "npz",
                "path",
                opts["path"],
                f"y_test has {labels_test.shape[1]} target columns but y_train has "
                f"{labels.shape[1]}",
            )
    opts["targets"] = kind
    if kind == "classes":
        data = common.from_pools("npz", opts, x, labels, x_test, labels_test)
    else:
        data = _regression(opts, x, labels, x_test, labels_test)
        if targets == "auto":
            note = (
                "dataset 'npz': y_train holds real values, not class labels: read as regression "
                "targets (targets='auto'; targets='regression' says so explicitly)"
            )
            data = dataclasses.replace(data, notes=(note, *data.notes))
    for note in data.notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return data


def _kind(opts: dict, y: np.ndarray) -> str:
    """``opts["targets"]``, ``"auto"`` resolved from ``y_train``."""
    if opts["targets"] != "auto":
        return opts["targets"]
    if y.dtype.kind not in "biuf" or y.ndim not in (1, 2) or not np.all(np.isfinite(y)):
        return "classes"  # _labels reports what is wrong
    return "classes" if np.all(y == np.round(y)) else "regression"


def _real_targets(opts: dict, key: str, y: np.ndarray, n: int) -> np.ndarray:
    """Real targets ``(N, C)`` from ``(N,)`` or ``(N, C)``."""
    if y.dtype.kind not in "biuf" or y.ndim not in (1, 2):
        raise common.bad(
            "npz",
            "path",
            opts["path"],
            f"{key} has dtype {y.dtype} and shape {y.shape}; regression targets are real "
            "numbers of shape (N,) or (N, C)",
        )
    if len(y) != n:
        x_key = key.replace("y_", "x_")
        raise common.bad(
            "npz", "path", opts["path"], f"{key} has {len(y)} samples but {x_key} has {n}"
        )
    y = y.astype(np.float64)
    return y[:, None] if y.ndim == 1 else y


def _regression(opts: dict, x, y, x_test, y_test):
    """A regression dataset: random splits, the inputs normalized as for classes."""
    for key, default in (("classes", None), ("label_noise", 0.0), ("centre_targets", False)):
        if opts[key] != default:
            raise common.bad(
                "npz",
                key,
                opts[key],
                f"it applies to class labels and targets='regression' has none; leave it at "
                f"{default!r}",
            )
    common.check_common("npz", opts, pool=True)
    rng = np.random.default_rng(opts["seed"])
    if x_test is None:
        tr, te = common.split_random("npz", len(x), opts["n_train"], opts["n_test"], rng)
        x_test, y_test = x[te], y[te]
    else:
        tr = rng.permutation(len(x))[: opts["n_train"]]
        if opts["n_train"] is not None and opts["n_train"] > len(x):
            raise common.bad(
                "npz", "n_train", opts["n_train"], f"it exceeds the {len(x)} samples available"
            )
        if opts["n_test"] is not None and opts["n_test"] > len(x_test):
            raise common.bad(
                "npz", "n_test", opts["n_test"], f"it exceeds the {len(x_test)} samples available"
            )
        te = rng.permutation(len(x_test))[: opts["n_test"]]
        x_test, y_test = x_test[te], y_test[te]
    if len(x_test) == 0:
        x_test = y_test = None
    x_train, x_test = common._normalize(
        x[tr], x_test, opts["unit_norm"], opts["standardize"], bool(opts["channel_standardize"])
    )
    options = dict(opts, n_train=len(tr), n_test=0 if x_test is None else len(x_test))
    return Dataset("npz", x_train, y[tr], x_test, y_test, options)


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
            raise fail(
                "has shape (N, C) but its rows are not one-hot; for real-valued targets use "
                "targets='regression'"
            )
        return np.argmax(y, axis=1).astype(np.int64)
    y = y.reshape(-1)
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
        raise fail(
            "must hold integer class labels; for real-valued targets use targets='regression'"
        )
    return y.astype(np.int64)
