"""Shared test set-up: quiet TensorFlow, hypothesis profiles, the float32 policy, small chunks.

Helpers the tests import live in the support package beside this file."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX compiles each new layer's computations again, even where an earlier test compiled the same
# one; a compilation cache shared by the workers (and the processes tests start) reuses them.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "attnkit-tests-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA compiles each operation JAX runs op by op (once per shape) and each compiled step; at the
# tests' sizes LLVM's optimisation of that CPU code takes far longer than the code then runs.
# The level changes how fast the code runs, not what it computes (XLA's CPU code is built without
# fast-math at every level). The GPU check (attnkit check) and the benchmarks keep the default.
_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _XLA_FLAGS:
    os.environ["XLA_FLAGS"] = f"{_XLA_FLAGS} --xla_backend_optimization_level=0".strip()
# pytest-xdist's workers share the cores. An OpenMP pool (PyTorch's CPU kernels) as wide as the
# machine in every worker oversubscribes it, and OpenMP threads spin while they wait for each
# other, so each worker gets its share of the cores instead (processes tests start inherit it).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

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
