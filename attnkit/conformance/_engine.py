"""The one engine behind every front end: which checks run on which component and device."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from attnkit.components import Component, Mask, Pooling, Scorer
from attnkit.conformance import checks_api as _api
from attnkit.conformance import checks_heads as _heads
from attnkit.conformance import checks_layer as _layer
from attnkit.conformance import checks_mask as _mask
from attnkit.conformance import checks_model as _model
from attnkit.conformance import checks_numerics as _numerics
from attnkit.conformance import checks_pooling as _pooling
from attnkit.conformance import checks_scorer as _scorer
from attnkit.conformance._harness import CheckFailure, SkipCheck, Subject, on_device, subject_for

__all__ = [
    "CHECKS",
    "CheckResult",
    "applies",
    "cases",
    "check_component",
    "instances",
    "run_case",
]

#: Every check, in the order they run: cheap API checks first, fresh-process saving last.
CHECKS: tuple[Callable[[Subject, str], None], ...] = (
    _api.check_frozen_and_hashable,
    _api.check_name_is_valid,
    _api.check_token_round_trip,
    _api.check_unknown_parameter_rejected,
    _scorer.check_score_shape_self,
    _scorer.check_score_shape_cross,
    _scorer.check_score_finite,
    _scorer.check_scorer_weights_only_in_build,
    _scorer.check_batch_independence,
    _scorer.check_deterministic,
    _scorer.check_pair_matches_score,
    _scorer.check_window_matches_pair,
    _mask.check_mask_boolean_broadcast,
    _mask.check_mask_pure,
    _mask.check_mask_reach,
    _mask.check_mask_kernel_form,
    _pooling.check_pooling_batch_independence,
    _pooling.check_pooling_zeroes_padded_queries,
    _layer.check_symbolic_length,
    _layer.check_weights_only_in_build,
    _layer.check_weights_sum_to_one,
    _layer.check_masked_keys_zero,
    _layer.check_fully_masked_row_zero,
    _layer.check_no_future_leak,
    _layer.check_window_respected,
    _layer.check_padding_invariance,
    _model.check_plans_agree,
    _heads.check_heads,
    _model.check_gradients,
    _numerics.check_gradients_match_finite_differences,
    _model.check_training_lowers_loss,
    _model.check_jit_equals_eager,
    _numerics.check_realistic_magnitudes,
    _numerics.check_mixed_float16,
    _numerics.check_mixed_bfloat16,
    _model.check_config_round_trip,
    _model.check_save_load_fresh_process,
    _model.check_device_agreement,
)
#: Checks about one kind of component: other kinds are not asked them at all.
KIND_ONLY = {
    "check_score_shape_self": Scorer,
    "check_score_shape_cross": Scorer,
    "check_score_finite": Scorer,
    "check_scorer_weights_only_in_build": Scorer,
    "check_batch_independence": Scorer,
    "check_deterministic": Scorer,
    "check_pair_matches_score": Scorer,
    "check_window_matches_pair": Scorer,
    "check_mask_boolean_broadcast": Mask,
    "check_mask_pure": Mask,
    "check_mask_reach": Mask,
    "check_mask_kernel_form": Mask,
    "check_pooling_batch_independence": Pooling,
    "check_pooling_zeroes_padded_queries": Pooling,
}
#: Checks that only have a meaning on one device.
DEVICE_ONLY = {"check_device_agreement": "gpu"}
#: Checks that start a subprocess (marked ``slow`` under pytest).
SLOW = frozenset({"check_save_load_fresh_process"})
DEVICES = ("cpu", "gpu")

ExpectedFailures = Mapping[str, str] | Callable[[Component], Mapping[str, str]] | None


@attrs.frozen
class CheckResult:
    """The outcome of one check on one component and device.

    ``status`` is passed, failed, skipped, xfail (an expected failure that failed) or xpass
    (an expected failure that passed, which counts as a failure: expected failures are strict).
    """

    component: str
    check: str
    device: str
    status: str
    message: str = ""
    seconds: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.component}-{self.check}-{self.device}"

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "xpass")


def applies(check, component: Component, device: str) -> bool:
    """Whether ``check`` is asked of ``component`` on ``device`` (scorer checks of scorers, ...)."""
    kind = KIND_ONLY.get(check.__name__)
    if kind is not None and not isinstance(component, kind):
        return False
    return DEVICE_ONLY.get(check.__name__, device) == device


def instances(components: Iterable[Any]) -> list[Component]:
    """Component instances from instances, classes (their ``examples()``) or registered names."""
    from attnkit.registry import registry

    found: list[Component] = []
    for item in components:
        if isinstance(item, str):
            item = registry().get(item).cls
        if isinstance(item, type):
            found.extend(item.examples())
        else:
            found.append(item)
    return found


def _expected(component: Component, expected: ExpectedFailures) -> Mapping[str, str]:
    table = expected(component) if callable(expected) else (expected or {})
    known = {check.__name__ for check in CHECKS}
    for name, reason in table.items():
        if name not in known:
            raise ValueError(f"expected_failed_checks names unknown check {name!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"expected failure of {name!r} needs a written reason")
    return table


def cases(
    components: Iterable[Any],
    devices: Iterable[str] = DEVICES,
    expected_failed_checks: ExpectedFailures = None,
) -> Iterator[tuple[Subject, Callable[[Subject, str], None], str, str | None]]:
    """Yield (subject, check, device, expected-failure reason or None) for every case."""
    for component in instances(components):
        subject = subject_for(component)
        expected = _expected(component, expected_failed_checks)
        for check in CHECKS:
            for device in devices:
                if applies(check, component, device):
                    yield subject, check, device, expected.get(check.__name__)


def run_case(subject: Subject, check, device: str, expected: str | None = None) -> CheckResult:
    """Run one case; never raises for a component's misbehaviour."""
    start = time.perf_counter()
    try:
        with on_device(device):
            check(subject, device)
    except SkipCheck as skip:
        status, message = "skipped", str(skip)
    except CheckFailure as failure:
        status, message = "failed", str(failure)
    except Exception as error:  # a check that crashes inside the component is a failure too
        status, message = "failed", f"{subject.label}: {type(error).__name__}: {error}"
    else:
        status, message = "passed", ""
    if status == "failed" and not message.startswith(subject.label):
        message = f"{subject.label}: {message}"  # every failure names the component
    if expected is not None and status == "failed":
        status, message = "xfail", f"expected: {expected} ({message})"
    elif expected is not None and status == "passed":
        status, message = "xpass", f"expected to fail ({expected}) but passed"
    return CheckResult(
        subject.label, check.__name__, device, status, message, time.perf_counter() - start
    )


def check_component(
    component: Any,
    *,
    devices: Iterable[str] = DEVICES,
    expected_failed_checks: ExpectedFailures = None,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run every check on a component (an instance, a class or a registered name), no pytest.

    Returns one :class:`CheckResult` per (instance, check, device); ``on_result`` is called as
    each finishes, for progress output.
    """
    results = []
    for subject, check, device, expected in cases([component], devices, expected_failed_checks):
        result = run_case(subject, check, device, expected)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
