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

from ._dataset import Dataset as Dataset
from ._loaders import load as load
from ._loaders import names as names
from ._loaders import options as options
from ._npz import npz as npz
from ._options import COMMON as COMMON
from ._real import digits as digits
from ._real import mnist1d as mnist1d
from ._synthetic import compositional as compositional
from ._synthetic import gaussian_mixture as gaussian_mixture
from ._synthetic import teacher as teacher

__all__ = [
    "COMMON",
    "Dataset",
    "compositional",
    "digits",
    "gaussian_mixture",
    "load",
    "mnist1d",
    "names",
    "npz",
    "options",
    "teacher",
]
