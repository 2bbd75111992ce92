"""``parametrize_with_checks``: the conformance suite as pytest cases (scikit-learn's model)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from attnkit.conformance._engine import DEVICES, SLOW, ExpectedFailures, cases
from attnkit.conformance._harness import CheckFailure, SkipCheck, Subject, on_device

__all__ = ["BoundCheck", "parametrize_with_checks"]


class BoundCheck:
    """One check bound to a placed component and a device; call it with the component."""

    def __init__(self, subject: Subject, check, device: str) -> None:
        self.subject, self.check, self.device = subject, check, device
        self.__name__ = check.__name__

    def __call__(self, component: Any = None) -> None:
        import pytest

        __tracebackhide__ = True
        try:
            with on_device(self.device):
                self.check(self.subject, self.device)
        except SkipCheck as skip:
            pytest.skip(str(skip))
        except CheckFailure as failure:
            message = str(failure)
            if not message.startswith(self.subject.label):
                message = f"{self.subject.label}: {message}"
            pytest.fail(message, pytrace=False)

    def __repr__(self) -> str:
        return f"{self.__name__}[{self.device}]"


def _devices() -> tuple[str, ...]:
    chosen = os.environ.get("ATTNKIT_CHECK_DEVICE", "all")
    return DEVICES if chosen == "all" else (chosen,)


def parametrize_with_checks(
    components: Iterable[Any],
    *,
    devices: Iterable[str] | None = None,
    expected_failed_checks: ExpectedFailures = None,
):
    """A ``pytest.mark.parametrize("component, check", ...)`` over every conformance check.

    Usage in a plugin's tests::

        from attnkit.conformance import parametrize_with_checks

        @parametrize_with_checks([Cosine])
        def test_conformance(component, check):
            check(component)

    Args:
        components: classes (checked on their ``examples()``), instances or registered names.
        devices: "cpu" and/or "gpu"; default from ``--attnkit-device`` (all).
        expected_failed_checks: ``{check_name: reason}`` (or a callable of the component
            returning one); each becomes a strict xfail, so an unexpected pass fails.

    Ids read ``cosine(temperature=5.0)-check_masked_keys_zero-cpu``, so ``pytest -k`` selects.
    """
    import pytest

    params = []
    for subject, check, device, reason in cases(
        components, tuple(devices) if devices else _devices(), expected_failed_checks
    ):
        marks = []
        if reason is not None:
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        if check.__name__ in SLOW:
            marks.append(pytest.mark.slow)
        if device == "gpu":
            marks.append(pytest.mark.gpu)
        params.append(
            pytest.param(
                subject.component,
                BoundCheck(subject, check, device),
                id=f"{subject.label}-{check.__name__}-{device}",
                marks=marks,
            )
        )
    return pytest.mark.parametrize("component, check", params)
