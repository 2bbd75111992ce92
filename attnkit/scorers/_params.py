"""Validators and converters of the built-in scorers' spec parameters (attrs' signature:
``(instance, attribute, value)``, raising ValueError with the parameter's name)."""

from __future__ import annotations

import math

__all__ = [
    "SCALE_RANGE",
    "SIGMA_RANGE",
    "check_scale",
    "is_bool",
    "optional_positive_int",
    "positive_int",
    "sigma_in_range",
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


#: The fixed dot-product scales accepted: the scores stay finite in float32 for any inputs
#: whose plain products do (|q . k| < 3e26).
SCALE_RANGE = (1e-12, 1e12)
#: The fixed gaussian widths accepted: 1 / (2 sigma^2) stays between 5e-13 and 5e11, so a
#: distance of 0 scores 0 and distances up to 6e26 stay finite in float32.
SIGMA_RANGE = (1e-6, 1e6)


def _in_range(value, bounds) -> bool:
    low, high = bounds
    return isinstance(value, float) and math.isfinite(value) and low <= value <= high


def sigma_in_range(instance, attribute, value) -> None:
    if not _in_range(value, SIGMA_RANGE):
        raise ValueError(
            f"'{attribute.name}' must be a number from {SIGMA_RANGE[0]:g} to {SIGMA_RANGE[1]:g} "
            f"(got {value!r})"
        )


def check_scale(instance, attribute, value) -> None:
    if value is None or value in ("sqrt", "learned") or _in_range(value, SCALE_RANGE):
        return
    raise ValueError(
        "'scale' must be one of none, sqrt, learned or a number from "
        f"{SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g} (got {value!r})"
    )
