"""Training across two CPU devices on an existing engine: tf.distribute.MirroredStrategy under
TensorFlow, keras.distribution.DataParallel under JAX. One step on two replicas gives the
single-device loss and weights; each scenario runs in its own process
(tests/support/distributed_scenarios.py), since devices are configured before the runtime starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "support", "distributed_scenarios.py")
RTOL = 1e-5


def _run(*args, backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(  # noqa: S603 - our interpreter and script
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_step(entry, loss_key):
    assert abs(entry[loss_key] - entry["loss_single"]) <= RTOL * max(1.0, entry["loss_single"])
    assert entry["weights_diff"] < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute runs in the KERAS_BACKEND=tensorflow pass of the suite",
)
def test_d4_mirrored_strategy_over_two_cpus(tmp_path):
    report = _run("mirrored", str(tmp_path), backend="tensorflow")
    assert report["replicas"] == 2
    for spec, entry in report["specs"].items():
        assert entry["mirrored"], spec
        _same_step(entry, "loss_mirrored")
    # Batches that split unevenly (3 = 2 + 1) or leave a replica empty (1 = 1 + 0): Keras
    # 3.15 on TF 2.21 fails both for a plain Dense model too (an AddN of [2, T, D] and
    # [1, T, D] tensors); attnkit must behave exactly as plain Keras does.
    assert report["uneven"] == report["uneven_plain_keras"]
    assert report["empty_replica"] == report["empty_replica_plain_keras"]
    mixed = report["mixed_float16"]
    assert mixed["loss_scaled"] == "LossScaleOptimizer"
    assert all(v == v and abs(v) < 1e6 for v in mixed["losses"]) and mixed["finite_weights"]
    loaded = _run(
        "load",
        str(tmp_path / "mirrored.keras"),
        str(tmp_path / "inputs.npz"),
        str(tmp_path / "expected.npz"),
        backend="tensorflow",
    )
    assert loaded["max_diff"] < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="keras.distribution.DataParallel runs in the KERAS_BACKEND=jax pass of the suite",
)
def test_d4_jax_data_parallel_over_two_cpus(tmp_path):
    report = _run("jax", str(tmp_path), backend="jax")
    assert report["devices"] == 2
    for entry in report["specs"].values():
        _same_step(entry, "loss_parallel")
