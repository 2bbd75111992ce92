"""Every built-in component passes the conformance suite, through the same pytest front end a
plugin's tests use (each case its own test, so the suite spreads over the workers)."""

from __future__ import annotations

from attnkit import masks, poolings, scorers
from attnkit.conformance import parametrize_with_checks

BUILTINS = [
    getattr(module, name) for module in (scorers, masks, poolings) for name in module.__all__
]


def test_every_builtin_is_checked():
    registered = {
        cls for module in (scorers, masks, poolings) for cls in module.attnkit_add_components()
    }
    assert set(BUILTINS) == registered


@parametrize_with_checks(BUILTINS)
def test_builtin_conforms(component, check):
    check(component)
