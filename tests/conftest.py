"""Shared test set-up: quiet TensorFlow, hypothesis profiles, the float32 policy, small chunks.

Helpers the tests import live in the support package beside this file."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# CI is derandomised so a red run can be reproduced; locally, search longer.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=1000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the float32 policy, whatever it changed."""
    import keras

    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def small_chunks(monkeypatch):
    """Query blocks of 16, so the chunked plan runs several blocks at the tests' lengths."""
    from attnkit.plans import _limits

    monkeypatch.setattr(_limits, "CHUNK_TARGET", 16)
