"""Validators and converters of the built-in scorers' spec parameters (attrs' signature:
``(instance, attribute, value)``, raising ValueError with the parameter's name)."""

from __future__ import annotations

import math

__all__ = [
    "check_scale",
    "is_bool",
    "optional_positive_int",
    "positive_float",
    "positive_int",
    "to_float",
]


def positive_int(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{attribute.name}' must be a positive integer (got {value!r})")


def optional_positive_int(instance, attribute, value) -> None:
    if value is not None:
        positive_int(instance, attribute, value)


def is_bool(instance, attribute, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be true or false (got {value!r})")


def to_float(value):
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def positive_float(instance, attribute, value) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be a positive number (got {value!r})")


def check_scale(instance, attribute, value) -> None:
    if value is None or value in ("sqrt", "learned"):
        return
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return
    raise ValueError(
        f"'scale' must be one of none, sqrt, learned or a positive number (got {value!r})"
    )
