"""Every built-in component passes the conformance suite, through the same pytest front end a
plugin's tests use (each case its own test, so the suite spreads over the workers).

One check is left to a test of its own: ``check_save_load_fresh_process`` starts a Python
process per component, and tests/test_layer.py::test_save_and_load_in_a_fresh_process loads
every built-in spec in one fresh process instead.
"""

from __future__ import annotations

import pytest

from attnkit import masks, poolings, scorers
from attnkit.conformance import parametrize_with_checks

BUILTINS = [
    getattr(module, name) for module in (scorers, masks, poolings) for name in module.__all__
]
#: Checks another test holds every built-in to (see the module docstring).
ELSEWHERE = ("check_save_load_fresh_process",)

_ALL = parametrize_with_checks(BUILTINS).mark
_CASES = pytest.mark.parametrize(
    _ALL.args[0], [p for p in _ALL.args[1] if not any(f"-{n}-" in p.id for n in ELSEWHERE)]
)


def test_every_builtin_is_checked():
    registered = {
        cls for module in (scorers, masks, poolings) for cls in module.attnkit_add_components()
    }
    assert set(BUILTINS) == registered


@_CASES
def test_builtin_conforms(component, check):
    check(component)
