"""The dataset container shared by every loader.

Labels follow THEORY 1: binary tasks have ``C = 1`` and ``y_n in {-1, +1}``
(shape ``(N, 1)``); multiclass tasks have one-hot rows (shape ``(N, C)``), or one-hot minus
``1/C`` with the loaders' ``centre_targets`` option.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .. import _forms


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train (and optional test) arrays of one task.

    Attributes:
        name: the loader's name (``"gaussian-mixture"``, ``"digits"``, ...).
        x_train: inputs, shape ``(N, ...)`` (vectors, or channel-first images).
        y_train: targets, shape ``(N, C)``: ``±1`` when ``C = 1``, one-hot otherwise (minus
            ``1/C`` with ``centre_targets``).
        x_test, y_test: held-out arrays of the same trailing shapes, or ``None``.
        options: the options the loader was called with, resolved (``classes`` and the
            split sizes filled in), recorded in results.
        classes: the original labels of the selected classes, in encoded order: class
            ``classes[i]`` is column ``i`` of a one-hot target, or, for binary tasks,
            ``classes[0] -> -1`` and ``classes[1] -> +1``. Empty when unknown.
        noisy_indices: sorted indices into the training split whose labels were replaced by
            ``label_noise`` (shape ``(M,)``, int64); empty when there was no label noise.
        y_train_clean: the training targets before label noise (same shape as ``y_train``),
            or ``None`` when there was no label noise.
        notes: what the loader did that the user did not ask for explicitly, one line each
            (``npz``: the samples that class balancing left out, per class; real-valued
            targets read as regression targets). Shown by ``print(data)``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    classes: tuple = ()
    noisy_indices: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    y_train_clean: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_pair(self.name, "train", self.x_train, self.y_train)
        if self.x_train.shape[0] == 0:
            raise ValueError(
                f"dataset {self.name!r}: x_train has 0 samples (shape {self.x_train.shape}); "
                "a training split needs at least one sample"
            )
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError(
                f"dataset {self.name!r}: x_test and y_test must both be given or both be None"
            )
        if self.x_test is not None:
            _check_pair(self.name, "test", self.x_test, self.y_test)
            if self.x_test.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(
                    f"dataset {self.name!r}: x_test has sample shape {self.x_test.shape[1:]}, "
                    f"x_train has {self.x_train.shape[1:]}; they must match"
                )

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return 0 if self.x_test is None else int(self.x_test.shape[0])

    @property
    def num_outputs(self) -> int:
        """``C``: 1 for a binary (±1) task, the number of classes otherwise."""
        return int(self.y_train.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def labels(self, split: str = "train") -> np.ndarray:
        """Integer class labels: ``(y > 0)`` for binary tasks, ``argmax`` otherwise."""
        y = self.y_train if split == "train" else self.y_test
        if y is None:
            raise ValueError(f"dataset {self.name!r} has no {split!r} split")
        if y.shape[1] == 1:
            return (y[:, 0] > 0).astype(np.int64)
        return np.argmax(y, axis=1).astype(np.int64)

    @property
    def is_regression(self) -> bool:
        """Whether the targets are real values rather than encoded classes (npz's
        ``targets="regression"``, stated or detected)."""
        return self.options.get("targets") == "regression"

    def __repr__(self) -> str:
        """A few lines: task, split sizes, shapes, the options that differ from the loader's
        defaults, and the loader's notes (never the arrays)."""
        head = f"Dataset {self.name!r}: "
        if self.is_regression:
            head += f"regression targets {_forms.shape(self.y_train)}"
        elif self.classes:
            k = len(self.classes)
            counts = np.bincount(self.labels(), minlength=max(k, 2))
            enc = (
                f"{self.classes[0]} → −1, {self.classes[1]} → +1"
                if self.num_outputs == 1 and k == 2
                else "one-hot"
            )
            head += f"{k} classes {self.classes} ({enc}), per class " + " ".join(
                str(int(c)) for c in counts
            )
        else:
            head += f"targets {_forms.shape(self.y_train)}"
        lines = [
            head,
            f"  {self.n_train} train, {self.n_test} test; inputs {_forms.shape(self.input_shape)}"
            f", targets (N, {self.num_outputs})"
            + (f"; {len(self.noisy_indices)} noisy labels" if len(self.noisy_indices) else ""),
        ]
        shown = _shown_options(self.name, self.options)
        if shown:
            lines.append("  options: " + ", ".join(f"{k}={_forms.value(v)}" for k, v in shown))
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    @property
    def input_bound(self) -> float:
        """``B_x = max_n ||x_n||`` over the training inputs."""
        flat = self.x_train.reshape(self.n_train, -1)
        return float(np.max(np.linalg.norm(flat, axis=1)))


def _shown_options(name: str, options: dict) -> list[tuple[str, Any]]:
    """The options worth printing: those that differ from the loader's defaults (all of them
    for an unknown loader), without the counts and classes the first lines show."""
    from . import names  # the package: its loaders import this module
    from . import options as loader_options

    defaults = loader_options(name) if name in names() else {}
    skip = {"classes", "n_train", "n_test"}
    return [
        (k, v)
        for k, v in sorted(options.items())
        if k not in skip and (k not in defaults or defaults[k] != v or k == "seed")
    ]


def _check_pair(name: str, split: str, x: np.ndarray, y: np.ndarray | None) -> None:
    if y is None:
        raise ValueError(f"dataset {name!r}: y_{split} is missing")
    if x.ndim < 2:
        raise ValueError(
            f"dataset {name!r}: x_{split} must have shape (N, ...), got shape {x.shape}"
        )
    if y.ndim != 2:
        raise ValueError(f"dataset {name!r}: y_{split} must have shape (N, C), got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"dataset {name!r}: x_{split} has {x.shape[0]} samples but y_{split} has "
            f"{y.shape[0]}; they must match"
        )
    for label, a in ((f"x_{split}", x), (f"y_{split}", y)):
        if np.issubdtype(np.asarray(a).dtype, np.number) and not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise ValueError(
                f"dataset {name!r}: {label}=<array with {bad} NaN or inf entries> is not "
                "allowed; every input and target must be finite"
            )


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels in ``[0, num_classes)`` to THEORY's targets.

    ``num_classes == 2`` gives ``(N, 1)`` with ``-1`` for class 0 and ``+1`` for class 1;
    otherwise one-hot rows of shape ``(N, num_classes)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes == 2:
        return np.where(labels == 1, 1.0, -1.0)[:, None]
    return np.eye(num_classes)[labels]
