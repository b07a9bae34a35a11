"""One-line error messages that name the argument, the value and what is allowed."""

from __future__ import annotations


def bad_value(where: str, name: str, value, allowed: str) -> ValueError:
    """``ValueError("<where>: <name>=<value> is not allowed; <allowed>")``."""
    return ValueError(f"{where}: {name}={value!r} is not allowed; {allowed}")


def check_choice(where: str, name: str, value, choices) -> None:
    if value not in choices:
        raise bad_value(where, name, value, "use one of " + ", ".join(map(repr, choices)))


def check_positive(where: str, name: str, value, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise bad_value(where, name, value, "use a number >= 0" if allow_zero else "use a number > 0")
