"""Synthetic tasks generated from a seed with numpy (no files, no network).

Each task is a sampler ``draw(rng, m) -> (x (m, dim), labels (m,))``. The task's parameters
(class means, teacher weights, tree nodes) are drawn first from ``seed``, then the training
and test samples are drawn from the same stream, class-balanced by rejection
(:func:`._options.sample_balanced`). All loaders accept the common options of
:mod:`._options`; ``classes`` also sets how many classes the task generates: an integer ``K``
generates ``K`` classes, a list of labels generates ``max(labels) + 1`` and keeps the listed ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _options as common
from ._dataset import Dataset

Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


#: The most input floats a synthetic task generates, ``(n_train + n_test) * dim`` (4 GB in
#: float64); a user with larger data brings it as an npz file.
MAX_FLOATS = 5 * 10**8


def _check_size(name: str, opts: dict, dim: int) -> None:
    total = (opts["n_train"] + opts["n_test"]) * dim
    if total > MAX_FLOATS:
        sizes = {"n_train": opts["n_train"], "n_test": opts["n_test"], "dim": dim}
        key = max(sizes, key=sizes.get)  # the largest factor is the one to blame
        if key == "dim" and "dim" not in opts:
            key = "levels"  # compositional: dim = 2**levels
        raise common.bad(
            name,
            key,
            opts[key],
            f"(n_train + n_test) * dim = {total:.3g} input floats exceed the limit "
            f"{MAX_FLOATS:.0e} of a synthetic task (4 GB in float64)",
        )


#: The most classes a synthetic task generates (each class is a cluster of its own).
MAX_CLASSES = 1000


def _classes(name: str, classes, fixed: int | None = None) -> tuple[tuple[int, ...], int]:
    """Selected labels and the number of classes the task generates (at most
    :data:`MAX_CLASSES`)."""
    if classes is None:
        classes = fixed or 2
    if fixed is not None:
        return common.resolve_classes(name, classes, range(fixed)), fixed
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if classes > MAX_CLASSES:
            raise common.bad(name, "classes", classes, f"use an integer in [2, {MAX_CLASSES}]")
        selected = common.resolve_classes(name, classes, range(max(int(classes), 0)))
    else:
        try:
            top = max(int(c) for c in classes)
        except (TypeError, ValueError):
            top = 1  # resolve_classes reports the bad value
        if any(int(c) < 0 for c in classes if isinstance(c, (int, np.integer))):
            raise common.bad(name, "classes", classes, "synthetic labels are integers >= 0")
        if top >= MAX_CLASSES:
            raise common.bad(
                name, "classes", classes, f"synthetic labels are integers in [0, {MAX_CLASSES})"
            )
        selected = common.resolve_classes(name, classes, range(top + 1))
    return selected, max(selected) + 1


def _build(name: str, opts: dict, selected: tuple[int, ...], draw: Draw, rng) -> Dataset:
    x_train, lab_train = common.sample_balanced(name, draw, selected, opts["n_train"], rng)
    x_test = lab_test = None
    if opts["n_test"] > 0:
        x_test, lab_test = common.sample_balanced(name, draw, selected, opts["n_test"], rng)
    return common.finish(name, x_train, lab_train, x_test, lab_test, selected, opts, rng)


def gaussian_mixture(
    *,
    n_train: int = 256,
    n_test: int = 256,
    dim: int = 16,
    classes=2,
    separation: float = 3.0,
    noise: float = 1.0,
    label_noise: float = 0.0,
    unit_norm: bool = False,
    standardize: bool = False,
    centre_targets: bool = False,
    seed: int = 0,
) -> Dataset:
    """Balanced Gaussian mixture: class ``c`` is ``N(separation * m_c / ||m_c||, noise² I)``.

    Inputs ``(N, dim)``. The class means ``m_c`` are random directions drawn from the seed
    (mean ``c`` does not depend on how many classes are generated).
    """
    opts = dict(locals())
    name = "gaussian-mixture"
    common.check_common(name, opts, pool=False)
    common.check_int(name, "dim", dim, 1)
    _check_size(name, opts, dim)
    if (
        isinstance(separation, bool)
        or not isinstance(separation, (int, float))
        or not np.isfinite(separation)
    ):
        raise common.bad(name, "separation", separation, "use a finite real number")
    if (
        isinstance(noise, bool)
        or not isinstance(noise, (int, float))
        or not (np.isfinite(noise) and noise >= 0)
    ):
        raise common.bad(name, "noise", noise, "use a finite noise >= 0")
    selected, k = _classes(name, classes)
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, dim))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)

    def draw(rng, m):
        labels = rng.integers(k, size=m)
        return means[labels] + noise * rng.standard_normal((m, dim)), labels

    return _build(name, opts, selected, draw, rng)


def teacher(
    *,
    n_train: int = 256,
    n_test: int = 256,
    dim: int = 16,
    depth: int = 2,
    width: int = 32,
    classes=2,
    label_noise: float = 0.0,
    unit_norm: bool = False,
    standardize: bool = False,
    centre_targets: bool = False,
    seed: int = 0,
) -> Dataset:
    """Gaussian inputs ``x ~ N(0, I_dim)`` (shape ``(N, dim)``) labelled by a random teacher.

    The teacher is a bias-free ReLU MLP ``g(x) = W_depth σ(… σ(W_1 x))`` with ``depth`` weight
    matrices, hidden ``width`` and He-scaled Gaussian weights (``W_depth`` has variance
    ``1/fan_in``), drawn with numpy from ``seed``. With two generated classes it has one output
    and the label is ``g(x) > 0`` (class 1, target ``+1``) else class 0; with ``K > 2`` it has
    ``K`` outputs and the label is ``argmax g(x)``. Classes are balanced by rejection; a deep
    bias-free teacher can make a class rare or impossible, which raises ``ValueError``.
    """
    opts = dict(locals())
    name = "teacher"
    common.check_common(name, opts, pool=False)
    for key in ("dim", "depth", "width"):
        common.check_int(name, key, opts[key], 1)
    _check_size(name, opts, dim)
    if width > 100_000 or depth > 100:
        raise common.bad(name, "width", width, "use a teacher of width <= 100000, depth <= 100")
    selected, k = _classes(name, classes)
    rng = np.random.default_rng(seed)
    sizes = [dim] + [width] * (depth - 1) + [1 if k == 2 else k]
    weights = [
        rng.standard_normal((b, a)) * np.sqrt((2.0 if i < depth - 1 else 1.0) / a)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    ]

    def draw(rng, m):
        x = rng.standard_normal((m, dim))
        h = x
        for w in weights[:-1]:
            h = np.maximum(h @ w.T, 0.0)
        out = h @ weights[-1].T
        labels = (out[:, 0] > 0).astype(np.int64) if k == 2 else np.argmax(out, axis=1)
        return x, labels

    return _build(name, opts, selected, draw, rng)


def compositional(
    *,
    n_train: int = 256,
    n_test: int = 256,
    levels: int = 3,
    classes=None,
    label_noise: float = 0.0,
    unit_norm: bool = False,
    standardize: bool = False,
    centre_targets: bool = False,
    seed: int = 0,
) -> Dataset:
    """Binary task of a compositionally sparse function on ``d = 2**levels`` Gaussian inputs.

    Inputs ``x ~ N(0, I_d)``, shape ``(N, d)``. A binary tree of ``levels`` levels combines
    neighbours pairwise: level 1 has ``d/2`` nodes on ``(x_0, x_1), (x_2, x_3), …``, each
    further level pairs the previous level's outputs, the root is the single node of level
    ``levels``. Every node computes its own fixed random smooth function of its two inputs
    ``z = (a, b)``: ``h(z) = tanh(uᵀ z + zᵀ M z)`` with ``u ~ N(0, I_2)`` and
    ``M = (A + Aᵀ)/2``, ``A ~ N(0, 1)^{2x2}``, all drawn from ``seed``. The label is
    ``root(x) > t`` (class 1, target ``+1``) else class 0, where ``t`` is the root's median
    over 4096 reference draws from the seed; samples are then balanced exactly by rejection.
    ``classes`` may be ``None``, ``2``, ``(0, 1)`` or ``(1, 0)``.
    """
    opts = dict(locals())
    name = "compositional"
    common.check_common(name, opts, pool=False)
    common.check_int(name, "levels", levels, 1)
    if levels > 12:
        raise common.bad(name, "levels", levels, "use 1 <= levels <= 12")
    _check_size(name, opts, 2**levels)
    selected, _ = _classes(name, classes, fixed=2)
    rng = np.random.default_rng(seed)
    nodes = []
    for level in range(levels):
        count = 2 ** (levels - level - 1)
        u = rng.standard_normal((count, 2))
        a = rng.standard_normal((count, 2, 2))
        nodes.append((u, (a + a.transpose(0, 2, 1)) / 2))

    def root(x):
        h = x
        for u, mat in nodes:
            z = h.reshape(h.shape[0], -1, 2)
            quad = np.einsum("nki,kij,nkj->nk", z, mat, z)
            h = np.tanh(np.einsum("nki,ki->nk", z, u) + quad)
        return h[:, 0]

    threshold = float(np.median(root(rng.standard_normal((4096, 2**levels)))))

    def draw(rng, m):
        x = rng.standard_normal((m, 2**levels))
        return x, (root(x) > threshold).astype(np.int64)

    return _build(name, opts, selected, draw, rng)
