"""Validation, in one vocabulary: every refusal is ONE line naming the argument (or the
scenario key), the value received and what is allowed::

    <where>: <name>=<value> is not allowed; <what is allowed>

* :func:`bad_value` / :func:`check_choice`: the Python API's ``ValueError``.
* :class:`Check` and the combinators that build them (:func:`number`, :func:`integer`,
  :func:`choice`, :func:`one_or_many`, :func:`names`) and the common checks (``BOOLEAN``,
  ``POSITIVE``, ``WIDTHS``, ...) of which the scenario schema (``gradflow.scenario._schema``)
  is made. A scenario value that fails one is reported as a :class:`ConfigError` (a
  ``ValueError``) in the same words.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable
from typing import Any


def bad_value(where: str, name: str, value, allowed: str) -> ValueError:
    """``ValueError("<where>: <name>=<value> is not allowed; <allowed>")``."""
    return ValueError(f"{where}: {name}={value!r} is not allowed; {allowed}")


class Shown(str):
    """A description of a value (``<array of shape (3,)>``) shown as is, without quotes, in
    place of the value in a refusal."""

    def __repr__(self) -> str:
        return str(self)


def did_you_mean(value, options) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``options`` to a misspelt ``value``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(where: str, name: str, value, choices) -> None:
    """Refuse ``value`` unless it is one of ``choices`` (with the list in the message)."""
    try:
        ok = value in choices
    except TypeError:  # an unhashable value is in no tuple of names
        ok = False
    if not ok:
        allowed = "use one of " + ", ".join(map(repr, choices)) + did_you_mean(value, choices)
        raise bad_value(where, name, value, allowed)


class ConfigError(ValueError):
    """A scenario that cannot run; the message is one line naming key, value and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Check:
    """A test of one value, the text of what it allows, and the conversion of a valid value."""

    test: Callable[[Any], bool]
    allowed: str
    convert: Callable[[Any], Any] = lambda v: v
    #: the names a ``choice`` allows (for a "did you mean" in the message)
    options: tuple = ()


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def number(gt=None, ge=None, lt=None) -> Check:
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt)) if b is not None]
    return Check(
        lambda v: (
            _is_number(v)
            and (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (lt is None or v < lt)
        ),
        "use a number " + " and ".join(bounds),
        float,
    )


def integer(ge: int, le: int | None = None, note: str = "") -> Check:
    return Check(
        lambda v: _is_int(v) and v >= ge and (le is None or v <= le),
        f"use an integer in [{ge}, {le}]{note}" if le is not None else f"use an integer >= {ge}",
        int,
    )


def choice(options) -> Check:
    options = tuple(options)
    return Check(
        lambda v: isinstance(v, str) and v in options,
        "use one of " + ", ".join(map(repr, options)),
        options=options,
    )


def one_or_many(item: Check) -> Check:
    """One value or a non-empty list of distinct values; converts to a tuple."""

    def test(v):
        items = v if isinstance(v, list) else [v]
        return bool(items) and all(item.test(i) for i in items) and len(set(items)) == len(items)

    return Check(
        test,
        item.allowed + " or a non-empty list of distinct ones",
        lambda v: tuple(item.convert(i) for i in (v if isinstance(v, list) else [v])),
    )


def names(allowed=None, empty_ok: bool = True) -> Check:
    return Check(
        lambda v: (
            isinstance(v, list)
            and (empty_ok or bool(v))
            and all(isinstance(i, str) and (allowed is None or i in allowed) for i in v)
        ),
        "use a list of names" + (" among " + ", ".join(allowed) if allowed else ""),
        tuple,
    )


def _kernel(v) -> bool:
    ok = lambda i: _is_int(i) and i >= 1  # noqa: E731
    return ok(v) or (
        isinstance(v, list)
        and bool(v)
        and all(ok(e) or (isinstance(e, list) and bool(e) and all(ok(i) for i in e)) for e in v)
    )


BOOLEAN = Check(lambda v: isinstance(v, bool), "use true or false")
TEXT = Check(lambda v: isinstance(v, str), "use a string")
FILE_NAME = Check(
    lambda v: isinstance(v, str) and bool(re.fullmatch(r"[\w][\w.-]*", v)),
    "use letters, digits, '_', '-' and '.' (it names the output files)",
)
POSITIVE = number(gt=0)
WIDTHS = Check(
    lambda v: isinstance(v, list) and all(_is_int(i) and i >= 1 for i in v),
    "use a list of positive integers, e.g. [32, 32]",
    tuple,
)
KERNEL = Check(
    _kernel,
    "use a positive integer, or a list with one positive integer (or "
    "per-axis list of them) per convolutional layer",
)
DTMIN = Check(
    lambda v: v is False or (_is_number(v) and v > 0),
    "use a number > 0, or false for no step floor",
    lambda v: None if v is False else float(v),
)
REQUIRED = object()  # a default that means "the key must be given"
