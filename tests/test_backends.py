"""A model saved under one Keras backend loads under every other installed one with the same
outputs (float32 tolerance). The suite runs once per backend (README, .ci/run), so each
direction is covered: this process saves, a fresh process per other backend loads."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import attnkit

SPECS = [
    "additive+local3",
    "general(use_bias=true)+causal",
    "bahdanau+last",
    "dot(scale=learned)+weighted",
    "gaussian+causal2",
    "dense+gate",
]
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}

LOADER = r"""
import json, sys
import numpy as np, keras
import attnkit  # noqa: F401  (registers AttentionLayer for deserialisation)
job = json.loads(sys.argv[1])
data = np.load(job["inputs"])
out = {}
for name in job["models"]:
    model = keras.models.load_model(job["folder"] + "/" + name + ".keras", safe_mode=True)
    out[name] = keras.ops.convert_to_numpy(model(data["x"], training=False)).tolist()
print(json.dumps({"backend": keras.backend.backend(), "outputs": out}))
"""


def _model(spec: str) -> keras.Model:
    # Unknown lengths where the pooling allows them (gate weights each step: a fixed length).
    inputs = keras.Input((9 if "gate" in spec else None, 6))
    hidden = keras.layers.Dense(6)(inputs)
    return keras.Model(inputs, attnkit.AttentionLayer(spec)(hidden))


@pytest.mark.slow
@pytest.mark.parametrize(
    "target", sorted(set(BACKENDS) - {keras.backend.backend()}), ids=lambda b: f"to-{b}"
)
def test_a_saved_model_loads_under_another_backend(target, tmp_path):
    if importlib.util.find_spec(BACKENDS[target]) is None:
        pytest.skip(f"backend {target} not installed (pip install -e '.[{target}]')")
    x = np.random.RandomState(0).uniform(-1, 1, (3, 9, 6)).astype("float32")
    np.savez(tmp_path / "inputs.npz", x=x)
    expected = {}
    for i, spec in enumerate(SPECS):
        model = _model(spec)
        model.save(tmp_path / f"m{i}.keras")
        expected[f"m{i}"] = keras.ops.convert_to_numpy(model(x, training=False))
    job = {"folder": str(tmp_path), "inputs": str(tmp_path / "inputs.npz"), "models": [*expected]}
    env = dict(os.environ, KERAS_BACKEND=target, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(  # noqa: S603 - our interpreter and loader
        [sys.executable, "-c", LOADER, json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == target
    for (name, want), spec in zip(expected.items(), SPECS, strict=True):
        got = np.asarray(result["outputs"][name], dtype="float32")
        assert got.shape == want.shape, spec
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=spec)
