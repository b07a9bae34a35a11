"""One-line error messages that name the argument, the value and what is allowed."""

from __future__ import annotations


def bad_value(where: str, name: str, value, allowed: str) -> ValueError:
    """``ValueError("<where>: <name>=<value> is not allowed; <allowed>")``."""
    return ValueError(f"{where}: {name}={value!r} is not allowed; {allowed}")


def check_choice(where: str, name: str, value, choices) -> None:
    if value not in choices:
        raise bad_value(where, name, value, "use one of " + ", ".join(map(repr, choices)))
