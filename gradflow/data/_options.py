"""The options every loader shares, implemented once.

Every loader accepts the common options

* ``classes``: ``None`` (every class of the task), an integer ``K >= 2`` (labels ``0..K-1``)
  or a sequence of at least two distinct labels. The order is the encoding order: for two
  classes the first maps to ``-1`` and the second to ``+1`` (targets ``(N, 1)``); for more,
  class ``classes[i]`` is one-hot column ``i`` (targets ``(N, C)``).
* ``n_train``, ``n_test``: totals, split evenly across the selected classes (when a total is
  not a multiple of the number of classes, the first classes get one sample more).
  ``n_test = 0`` gives no test split.
* ``label_noise``: fraction ``p`` in ``[0, 1]``; exactly ``round(p * n_train)`` training
  samples, chosen at random, get a label drawn uniformly from the selected classes (which may
  equal the old one, so about ``p (C - 1) / C`` of the labels change). Their indices are
  :attr:`Dataset.noisy_indices`; the clean targets are :attr:`Dataset.y_train_clean`.
* ``standardize``: per-feature standardization with the TRAIN mean and std, applied to both
  splits (features with zero train std are only centred).
* ``unit_norm``: each input scaled to unit L2 norm (applied after ``standardize``).
* ``channel_standardize`` (``npz`` only; :func:`gradflow.data.npz`): per-channel
  standardization of channel-first inputs ``(N, C, ...)`` with the TRAIN mean and std of each
  channel (over samples and positions), applied to both splits before ``unit_norm`` (channels
  with zero train std are only centred). With ``unit_norm=True`` this is the paper's CIFAR
  preprocessing: per-channel standardization, then unit norm per sample.
* ``centre_targets``: multiclass targets become ``onehot − 1/C`` (train, test and clean
  targets), so that every target sums to 0. THEORY 1's convention is one-hot (the default);
  centring is the variant under which THEORY 4.8's ``W_L = κ M̃ᵀ`` is attainable by a bias-free
  last layer (one-hot targets make the outputs sum to 1, while ``M̃ᵀ``'s rows sum to 0).
  Class labels, accuracies and margins are unchanged. Binary ``±1`` targets are already
  centred: there it changes nothing.
* ``seed``: an integer; the same seed gives the same arrays.

Real datasets come as a *pool* (inputs and integer labels) split by :func:`split_pool`;
synthetic ones as a sampler drawn by :func:`sample_balanced`. Both end in :func:`finish`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._dataset import Dataset, encode_labels

COMMON = (
    "classes",
    "n_train",
    "n_test",
    "label_noise",
    "unit_norm",
    "standardize",
    "centre_targets",
    "seed",
)
TEST_FRACTION = 0.2  # of the balanced pool, when neither n_train nor n_test is given


def bad(dataset: str, key: str, value: Any, allowed: str) -> ValueError:
    """The one-line error for option ``key=value`` of ``dataset``."""
    return ValueError(f"dataset {dataset!r}: option {key}={value!r} is not allowed; {allowed}")


def check_int(dataset: str, key: str, value: Any, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        extra = " or None" if allow_none else ""
        raise bad(dataset, key, value, f"use an integer >= {low}{extra}")


def check_bool(dataset: str, key: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise bad(dataset, key, value, "use True or False")


def check_common(dataset: str, opts: dict[str, Any], pool: bool) -> None:
    """Validate the common options (``pool``: real data, where the counts may be ``None``)."""
    check_int(dataset, "n_train", opts["n_train"], 1, allow_none=pool)
    check_int(dataset, "n_test", opts["n_test"], 0, allow_none=pool)
    p = opts["label_noise"]
    if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not 0 <= p <= 1:
        raise bad(dataset, "label_noise", p, "use a fraction in [0, 1]")
    check_bool(dataset, "unit_norm", opts["unit_norm"])
    check_bool(dataset, "standardize", opts["standardize"])
    check_bool(dataset, "centre_targets", opts["centre_targets"])
    check_int(dataset, "seed", opts["seed"], 0)


def resolve_classes(dataset: str, classes: Any, available: Sequence[int]) -> tuple[int, ...]:
    """The selected labels, in encoding order, checked against the labels ``available``."""
    if classes is None:
        selected = tuple(int(c) for c in sorted(available))
    elif isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if classes < 2:
            raise bad(dataset, "classes", classes, "use an integer >= 2 or a list of labels")
        selected = tuple(range(int(classes)))
    else:
        try:
            selected = tuple(int(c) for c in classes)
            if any(c != s for c, s in zip(classes, selected, strict=True)):
                raise TypeError
        except (TypeError, ValueError):
            raise bad(
                dataset, "classes", classes, "use None, an integer >= 2 or a list of int labels"
            ) from None
    if len(selected) < 2 or len(set(selected)) != len(selected):
        raise bad(dataset, "classes", classes, "use at least two distinct labels")
    missing = [c for c in selected if c not in set(int(a) for a in available)]
    if missing:
        raise bad(
            dataset,
            "classes",
            classes,
            f"class {missing[0]} is absent; available labels: {sorted(int(a) for a in available)}",
        )
    return selected


def _fewer_than_classes(k: int) -> str:
    return f"each of the {k} classes needs a training sample: use n_train >= {k}"


def per_class(total: int, k: int) -> np.ndarray:
    """``total`` split evenly over ``k`` classes; the first ``total % k`` get one more."""
    return np.full(k, total // k) + (np.arange(k) < total % k)


def _check_enough(dataset, key, value, classes, counts, need, note: str = "") -> None:
    for c, have, want in zip(classes, counts, need, strict=True):
        if want > have:
            msg = f"class {c} has {have} samples available{note} but {want} are needed"
            raise bad(dataset, key, value, msg)


def split_pool(
    dataset: str,
    labels: np.ndarray,
    classes: tuple[int, ...],
    n_train: int | None,
    n_test: int | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint, class-balanced train and test indices into one pool of integer ``labels``.

    ``None`` counts take what remains (balanced); with both ``None`` the balanced pool is
    split ``1 - TEST_FRACTION : TEST_FRACTION``.
    """
    k = len(classes)
    have = np.array([np.sum(labels == c) for c in classes])
    low = int(have.min())
    if n_train is None and n_test is None:
        te = np.full(k, int(TEST_FRACTION * low))
        tr = np.full(k, low - te[0])
    elif n_train is None:
        te = per_class(n_test, k)
        _check_enough(dataset, "n_test", n_test, classes, have, te)
        tr = np.full(k, int(np.min(have - te)))
    elif n_test is None:
        tr = per_class(n_train, k)
        _check_enough(dataset, "n_train", n_train, classes, have, tr)
        te = np.full(k, int(np.min(have - tr)))
    else:
        tr, te = per_class(n_train, k), per_class(n_test, k)
        note = f" besides n_test={n_test}" if n_test else ""
        _check_enough(dataset, "n_train", n_train, classes, have - te, tr, note)
    if tr.sum() < k:
        if n_train is not None:
            raise bad(dataset, "n_train", n_train, _fewer_than_classes(k))
        raise bad(dataset, "n_test", n_test, "it leaves fewer training samples than classes")
    train, test = [], []
    for c, a, b in zip(classes, tr, te, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:a])
        test.append(idx[a : a + b])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def subsample_pool(
    dataset: str,
    key: str,
    labels: np.ndarray,
    classes: tuple[int, ...],
    n: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Class-balanced indices of ``n`` samples (``None``: as many as balance allows)."""
    have = np.array([np.sum(labels == c) for c in classes])
    need = np.full(len(classes), int(have.min())) if n is None else per_class(n, len(classes))
    _check_enough(dataset, key, n, classes, have, need)
    parts = [
        rng.permutation(np.flatnonzero(labels == c))[:m] for c, m in zip(classes, need, strict=True)
    ]
    return rng.permutation(np.concatenate(parts))


def sample_balanced(
    dataset: str,
    draw: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]],
    classes: tuple[int, ...],
    n: int,
    rng: np.random.Generator,
    max_draws: int = 1_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-balanced samples of a generator, by rejection.

    ``draw(rng, m)`` returns ``m`` inputs ``(m, ...)`` and their integer labels ``(m,)``.
    Raises ``ValueError`` when a class stays short after ``max_draws`` draws.
    """
    need = dict(zip(classes, per_class(n, len(classes)).tolist(), strict=True))
    got: dict[int, list[np.ndarray]] = {c: [] for c in classes}
    have = dict.fromkeys(classes, 0)
    drawn = 0
    while any(have[c] < need[c] for c in classes):
        if drawn >= max_draws:
            c = next(c for c in classes if have[c] < need[c])
            raise bad(
                dataset,
                "classes",
                classes,
                f"class {c} appeared {have[c]} times in {drawn} draws but {need[c]} are "
                "needed; try another seed or other task parameters",
            )
        m = int(min(max(4 * n, 1024), max_draws - drawn))
        x, lab = draw(rng, m)
        drawn += m
        for c in classes:
            take = x[lab == c][: need[c] - have[c]]
            got[c].append(take)
            have[c] += len(take)
    x = np.concatenate([a for c in classes for a in got[c]])
    lab = np.concatenate([np.full(need[c], c) for c in classes])
    order = rng.permutation(n)
    return x[order], lab[order]


def _standardize_channels(x_train, x_test):
    """Per-channel standardization of ``(N, C, ...)`` inputs with the train statistics."""
    axes = (0, *range(2, x_train.ndim))
    shape = (1, x_train.shape[1]) + (1,) * (x_train.ndim - 2)
    mean = x_train.mean(axis=axes).reshape(shape)
    std = x_train.std(axis=axes).reshape(shape)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, None if x_test is None else (x_test - mean) / std


def _normalize(x_train, x_test, unit_norm: bool, standardize: bool, channels: bool = False):
    def flat(x):
        return None if x is None else x.reshape(x.shape[0], -1)

    if channels:
        x_train, x_test = _standardize_channels(x_train, x_test)
    a, b = flat(x_train), flat(x_test)
    if standardize:
        mean, std = a.mean(axis=0), a.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        a = (a - mean) / std
        b = None if b is None else (b - mean) / std
    if unit_norm:

        def unit(z):
            norm = np.linalg.norm(z, axis=1, keepdims=True)
            return z / np.where(norm > 0, norm, 1.0)

        a = unit(a)
        b = None if b is None else unit(b)
    x_train = a.reshape(x_train.shape)
    return x_train, None if b is None else b.reshape(x_test.shape)


def finish(
    dataset: str,
    x_train: np.ndarray,
    labels_train: np.ndarray,
    x_test: np.ndarray | None,
    labels_test: np.ndarray | None,
    classes: tuple[int, ...],
    opts: dict[str, Any],
    rng: np.random.Generator,
) -> Dataset:
    """Encode labels (original labels ``classes``), add label noise, normalize, build."""
    k = len(classes)
    if len(labels_train) < k:  # a class without a training sample: fewer than two classes
        raise bad(dataset, "n_train", opts["n_train"], _fewer_than_classes(k))

    def encoded(labels):  # original label classes[i] -> i
        return np.argmax(np.asarray(labels)[:, None] == np.array(classes)[None, :], axis=1)

    lab = encoded(labels_train)
    y_clean = encode_labels(lab, k)
    n_noisy = int(round(float(opts["label_noise"]) * len(lab)))
    noisy = np.sort(rng.choice(len(lab), size=n_noisy, replace=False)).astype(np.int64)
    if n_noisy:
        lab = lab.copy()
        lab[noisy] = rng.integers(k, size=n_noisy)
    if x_test is not None and len(x_test) == 0:
        x_test = labels_test = None
    y_test = None
    if x_test is not None:
        y_test = encode_labels(encoded(labels_test), k)
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = None if x_test is None else np.asarray(x_test, dtype=np.float64)
    x_train, x_test = _normalize(
        x_train,
        x_test,
        opts["unit_norm"],
        opts["standardize"],
        bool(opts.get("channel_standardize", False)),
    )
    options = dict(
        opts, classes=classes, n_train=len(lab), n_test=0 if y_test is None else len(y_test)
    )
    y_train = encode_labels(lab, k)
    if opts["centre_targets"] and k > 2:
        y_train, y_clean = y_train - 1.0 / k, y_clean - 1.0 / k
        y_test = None if y_test is None else y_test - 1.0 / k
    return Dataset(
        dataset,
        x_train,
        y_train,
        x_test,
        y_test,
        options,
        classes=classes,
        noisy_indices=noisy,
        y_train_clean=y_clean if n_noisy else None,
    )


def split_random(
    dataset: str, n: int, n_train: int | None, n_test: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random train and test indices into a pool of ``n`` samples, whatever their
    classes. ``None`` counts take what remains; with both ``None`` the pool is split
    ``1 - TEST_FRACTION : TEST_FRACTION``."""
    if n_train is None and n_test is None:
        n_test = int(TEST_FRACTION * n)
    if n_train is None:
        if n_test >= n:
            raise bad(dataset, "n_test", n_test, f"it leaves no training sample of the {n}")
        n_train = n - n_test
    elif n_test is None:
        n_test = max(n - n_train, 0)
    if n_train + n_test > n:
        what = f"n_train + n_test = {n_train + n_test}" if n_test else f"n_train = {n_train}"
        raise bad(dataset, "n_train", n_train, f"{what} exceeds the {n} samples available")
    order = rng.permutation(n)
    return order[:n_train], order[n_train : n_train + n_test]


def _take(dataset, key, n_pool, n, rng) -> np.ndarray:
    """``n`` random indices of ``n_pool`` (``None``: all of them, shuffled)."""
    if n is not None and n > n_pool:
        raise bad(dataset, key, n, f"it exceeds the {n_pool} samples available")
    return rng.permutation(n_pool)[: n_pool if n is None else n]


def _dropped(labels, kept, classes) -> list[int]:
    """Per class of ``classes``: how many of its samples in ``labels`` are not in ``kept``."""
    return [int(np.sum(labels == c) - np.sum(labels[kept] == c)) for c in classes]


def balance_note(dataset: str, classes, dropped: dict[str, list[int]]) -> str | None:
    """The line that reports the samples class balancing left out (``None`` if none)."""
    parts = []
    for split, counts in dropped.items():
        if sum(counts):
            per = ", ".join(f"class {c}: {k}" for c, k in zip(classes, counts, strict=True))
            parts.append(f"{sum(counts)} {split} samples ({per})")
    if not parts:
        return None
    return (
        f"dataset {dataset!r}: balance=True left out {' and '.join(parts)} to balance the "
        "classes; balance=False keeps every sample"
    )


def from_pools(
    dataset: str,
    opts: dict[str, Any],
    x: np.ndarray,
    labels: np.ndarray,
    x_test: np.ndarray | None = None,
    labels_test: np.ndarray | None = None,
) -> Dataset:
    """A dataset from real data: one pool (split by seed) or given train and test pools.

    ``x``: inputs ``(P, ...)``; ``labels``: integer labels ``(P,)``. With one pool, train and
    test are disjoint balanced draws from it (:func:`split_pool`); with two, each split is a
    balanced draw from its own pool (``n_test = None``: as many as balance allows).

    A loader with the option ``balance`` (``opts["balance"]``; ``npz``) may turn balancing
    off: then the splits are random draws from the samples of the selected classes
    (:func:`split_random`), every sample used unless ``n_train``/``n_test`` ask for fewer.
    With balancing on, the samples it leaves out are reported in :attr:`Dataset.notes`
    (per class and split; :func:`balance_note`).
    """
    check_common(dataset, opts, pool=True)
    found = np.unique(labels).tolist()
    if opts["classes"] is None and len(found) < 2:  # the data's fault, not classes=None's
        key = "path" if opts.get("path") is not None else "classes"
        raise bad(
            dataset,
            key,
            opts[key],
            f"its training labels hold {len(found)} class{'es' if len(found) != 1 else ''} "
            f"({', '.join(map(str, found)) or 'none'}); a classifier needs at least two",
        )
    classes = resolve_classes(dataset, opts["classes"], found)
    rng = np.random.default_rng(opts["seed"])
    balance = bool(opts.get("balance", True))
    if not balance:  # keep the selected classes, then random draws
        x, labels = _select(x, labels, classes)
        if x_test is not None:
            x_test, labels_test = _select(x_test, labels_test, classes)
    dropped: dict[str, list[int]] = {}
    if x_test is None:
        if balance:
            tr, te = split_pool(dataset, labels, classes, opts["n_train"], opts["n_test"], rng)
            if opts["n_train"] is None or opts["n_test"] is None:
                dropped["training and test"] = _dropped(labels, np.concatenate([tr, te]), classes)
        else:
            tr, te = split_random(dataset, len(labels), opts["n_train"], opts["n_test"], rng)
        out = finish(dataset, x[tr], labels[tr], x[te], labels[te], classes, opts, rng)
    else:
        if balance:
            tr = subsample_pool(dataset, "n_train", labels, classes, opts["n_train"], rng)
            if opts["n_train"] is None:
                dropped["training"] = _dropped(labels, tr, classes)
        else:
            tr = _take(dataset, "n_train", len(labels), opts["n_train"], rng)
        te = np.zeros(0, dtype=np.int64)
        if opts["n_test"] != 0:
            absent = [c for c in classes if not np.any(labels_test == c)]
            if absent and balance:
                raise bad(
                    dataset,
                    "classes",
                    opts["classes"],
                    f"class {absent[0]} is absent from the test split",
                )
            if balance:
                te = subsample_pool(dataset, "n_test", labels_test, classes, opts["n_test"], rng)
                if opts["n_test"] is None:
                    dropped["test"] = _dropped(labels_test, te, classes)
            else:
                te = _take(dataset, "n_test", len(labels_test), opts["n_test"], rng)
        out = finish(dataset, x[tr], labels[tr], x_test[te], labels_test[te], classes, opts, rng)
    note = balance_note(dataset, classes, dropped) if "balance" in opts else None
    return out if note is None else dataclasses.replace(out, notes=(*out.notes, note))


def _select(x: np.ndarray, labels: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isin(labels, np.asarray(classes))
    return x[keep], labels[keep]
