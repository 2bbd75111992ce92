"""attnkit's pytest plugin: markers and the ``--attnkit-device`` option for conformance runs.

pytest imports this module in every run of an environment where attnkit is installed, so it
imports nothing heavy (no attnkit, no Keras); :func:`attnkit.conformance.parametrize_with_checks`
reads the chosen device from the environment when a test module uses it.
"""

from __future__ import annotations

import os


def pytest_addoption(parser) -> None:
    group = parser.getgroup("attnkit", "attnkit conformance")
    group.addoption(
        "--attnkit-device",
        choices=("cpu", "gpu", "all"),
        default=None,
        help="devices for attnkit conformance cases (default: all; GPU cases skip without one)",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "gpu: needs a GPU visible to the Keras backend")
    config.addinivalue_line("markers", "slow: starts a subprocess or trains a model")
    device = config.getoption("--attnkit-device", default=None)
    if device:
        os.environ["ATTNKIT_CHECK_DEVICE"] = device
