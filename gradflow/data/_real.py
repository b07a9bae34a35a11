"""Real datasets generated or shipped locally: scikit-learn's 8x8 digits and MNIST-1D.

Neither loader opens a network connection. Both build a pool of inputs with integer digit
labels ``0..9`` and hand it to :func:`._options.from_pools`, which selects ``classes``, splits
train/test disjointly and class-balanced by ``seed`` and applies the common options
(``n_train``, ``n_test``, ``label_noise``, ``unit_norm``, ``standardize``, ``centre_targets``; see
:mod:`._options`). ``n_train``/``n_test`` default to ``None``: the balanced pool split 80/20,
or, when one is given, the balanced remainder for the other.
"""

from __future__ import annotations

import functools
import random

import numpy as np

from . import _options as common
from ._dataset import Dataset


def digits(
    *,
    classes=None,
    n_train: int | None = None,
    n_test: int | None = None,
    image: bool = False,
    label_noise: float = 0.0,
    unit_norm: bool = False,
    standardize: bool = False,
    centre_targets: bool = False,
    seed: int = 0,
) -> Dataset:
    """scikit-learn's shipped 8x8 handwritten digits (1797 samples, 174 to 183 per digit).

    Pixel values are scaled from ``0..16`` to ``[0, 1]``. Inputs ``(N, 64)`` (row-major
    pixels), or ``(N, 1, 8, 8)`` channel-first images with ``image=True``.
    """
    opts = dict(locals())
    common.check_common("digits", opts, pool=True)
    common.check_bool("digits", "image", image)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return common.from_pools("digits", opts, x, np.asarray(bunch.target, dtype=np.int64))


def mnist1d(
    *,
    classes=None,
    n_train: int | None = None,
    n_test: int | None = None,
    channel_first: bool = False,
    pool_size: int = 5000,
    pool_seed: int = 42,
    label_noise: float = 0.0,
    unit_norm: bool = False,
    standardize: bool = False,
    centre_targets: bool = False,
    seed: int = 0,
) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package.

    The pool is ``mnist1d.data.make_dataset`` with the package's default arguments
    (``get_dataset_args``: length-40 signals, ...) except ``pool_size // 10`` signals per
    digit and generator seed ``pool_seed`` (the package defaults are 5000 and 42), and the
    digit templates defined in the package's code (``get_templates``); the package's download
    path (``get_dataset``) is never used. The pool is cached in memory per
    ``(pool_size, pool_seed)``; numpy's and Python's global RNG states are restored. The
    package's own 80/20 split is not used: ``seed`` splits the pool. Inputs ``(N, 40)``, or
    ``(N, 1, 40)`` channel-first with ``channel_first=True``.
    """
    opts = dict(locals())
    common.check_common("mnist1d", opts, pool=True)
    common.check_bool("mnist1d", "channel_first", channel_first)
    common.check_int("mnist1d", "pool_size", pool_size, 10)
    common.check_int("mnist1d", "pool_seed", pool_seed, 0)
    x, labels = _mnist1d_pool(int(pool_size), int(pool_seed))
    if channel_first:
        x = x[:, None, :]
    return common.from_pools("mnist1d", opts, x, labels)


@functools.lru_cache(maxsize=4)
def _mnist1d_pool(pool_size: int, pool_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x (P, 40), labels (P,))``; leaves numpy's and Python's global RNG states untouched."""
    from mnist1d.data import get_dataset_args, get_templates, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = pool_size, pool_seed, 1.0
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args, template=get_templates())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.asarray(data["x"], dtype=np.float64)
    x.flags.writeable = False
    labels = np.asarray(data["y"], dtype=np.int64)
    labels.flags.writeable = False
    return x, labels
