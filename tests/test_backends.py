"""A model saved under one Keras backend loads under every other installed one with the same
outputs (float32 tolerance). The suite runs once per backend (README, .ci/run), so each
direction is covered: this process saves, a fresh process per other backend loads."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from support.crossload import load_elsewhere, require_backend

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
    require_backend(target)
    x = np.random.RandomState(0).uniform(-1, 1, (3, 9, 6)).astype("float32")
    expected = {}
    for i, spec in enumerate(SPECS):
        model = _model(spec)
        model.save(tmp_path / f"m{i}.keras")
        expected[f"m{i}"] = keras.ops.convert_to_numpy(model(x, training=False))
    outputs = load_elsewhere(target, tmp_path, x, expected)
    for (name, want), spec in zip(expected.items(), SPECS, strict=True):
        got = outputs[name]
        assert got.shape == want.shape, spec
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=spec)
