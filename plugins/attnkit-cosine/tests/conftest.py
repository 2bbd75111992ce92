"""Test set-up: quiet TensorFlow before Keras loads, a float32 policy around every test.

The tests run with either this plugin's pytest config or the attnkit repository's (both turn
warnings into errors), from the plugin folder or from the repository root.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the float32 policy, whatever it changed."""
    import keras

    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
