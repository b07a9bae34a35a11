"""Short printed forms: what ``repr``/``print`` show of gradflow's objects.

A few lines of shapes, settings and status, never the arrays themselves (``print(data)`` of a
data set, ``print(problem)``, ``print(trajectory)``, ``print(fixed_point)``). The objects'
``describe()`` methods, where they exist, give the complete record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: The longest value an option shows before it is cut (paths, long lists).
VALUE_CHARS = 48
#: The most names a list shows before "… (k more)".
MAX_NAMES = 12


def shape(a) -> str:
    """``"(16, 5)"`` for an array (or a shape), ``"none"`` for ``None``."""
    if a is None:
        return "none"
    dims = tuple(a) if isinstance(a, (tuple, list)) else tuple(a.shape)
    return "(" + ", ".join(str(int(d)) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def value(v: Any) -> str:
    """A short ``repr`` of one option's value, cut in the middle beyond :data:`VALUE_CHARS`."""
    text = repr(tuple(v) if isinstance(v, list) else v)
    if len(text) <= VALUE_CHARS:
        return text
    half = (VALUE_CHARS - 1) // 2
    return text[:half] + "…" + text[-half:]


def names(items: Iterable[str]) -> str:
    """Comma-separated names, at most :data:`MAX_NAMES` of them."""
    items = list(items)
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f", … ({len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def layers(layer_shapes: Sequence[Sequence[int]]) -> str:
    """``"6×5 6×6 1×6"``: each layer's weight shape."""
    return " ".join("×".join(str(int(d)) for d in s) for s in layer_shapes)


def problem_line(d: dict) -> str:
    """One line from :meth:`gradflow.Problem.describe`'s dictionary (also in results' config)."""
    frozen = ", frozen directions" if d.get("freeze_directions") else ""
    n_test = int(d.get("n_test", 0))
    return (
        f"{d.get('model', '?')} [{layers(d.get('layer_shapes', ()))}], "
        f"{d.get('normalization', '?')}{frozen}, λ={float(d.get('weight_decay', 0.0)):g}, "
        f"{d.get('precision', '?')}; data {d.get('data', '?')!r}: {d.get('n_train', '?')} train"
        + (f", {n_test} test" if n_test else "")
    )
