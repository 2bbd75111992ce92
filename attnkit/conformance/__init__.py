"""The conformance suite: the checks every attnkit component must pass, on CPU and GPU.

One engine (:func:`check_component`, :data:`CHECKS`) behind three front ends: pytest
(:func:`parametrize_with_checks`), plain Python (:func:`check_component`) and the command line
(``attnkit check``). Each check is a named function with a one-line docstring; a failure
message names the component and what the check saw.
"""

from __future__ import annotations

from attnkit.conformance._engine import CHECKS, CheckResult, check_component
from attnkit.conformance._harness import CheckFailure, SkipCheck
from attnkit.conformance._pytest import parametrize_with_checks

__all__ = [
    "CHECKS",
    "CheckFailure",
    "CheckResult",
    "SkipCheck",
    "check_component",
    "parametrize_with_checks",
]
