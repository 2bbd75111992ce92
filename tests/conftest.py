"""Shared test set-up: quiet TensorFlow, hypothesis profiles, tolerances per dtype."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
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

#: (rtol, atol) against a float64 NumPy reference (shared/reliability.md section 2.3).
TOLERANCES = {
    "float64": (1e-12, 1e-12),
    "float32": (1e-5, 1e-5),
    "float16": (1e-3, 5e-3),
    "mixed_float16": (1e-3, 5e-3),
    "bfloat16": (1.6e-2, 5e-2),
    "mixed_bfloat16": (1.6e-2, 5e-2),
}


def assert_close(actual, expected, dtype: str = "float32", scale: float = 1.0) -> None:
    """Compare with the tolerance of ``dtype`` (times ``scale``)."""
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(
        np.asarray(actual, dtype="float64"),
        np.asarray(expected, dtype="float64"),
        rtol=rtol * scale,
        atol=atol * scale,
    )


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the float32 policy, whatever it changed."""
    import keras

    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
