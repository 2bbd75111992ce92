"""pytest-benchmark suite: ``pytest benchmarks/test_speed.py --benchmark-only`` (not run in CI).

Forward passes of attnkit specs next to ``keras.layers.Attention`` on the same shapes, so
pytest-benchmark's comparison table shows the ratios; ``--benchmark-compare`` tracks them over
time. The subprocess script ``python -m benchmarks.compare`` measures memory as well.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.peers import build  # noqa: E402

BATCH, FEATURES = 8, 64
LAYERS = [
    "keras:dot",
    "attnkit:dot",
    "keras:dot-causal",
    "attnkit:dot+causal",
    "ksa:additive15",
    "attnkit:additive+local15",
    "attnkit:additive+causal15",
]


@pytest.mark.parametrize("steps", [256, 1024])
@pytest.mark.parametrize("name", LAYERS)
def test_forward(benchmark, name, steps):
    inputs = keras.Input((steps, FEATURES))
    model = keras.Model(inputs, build(name)(inputs))
    x = tf.constant(np.random.RandomState(0).randn(BATCH, steps, FEATURES).astype("float32"))
    forward = tf.function(lambda t: model(t, training=False))
    forward(x)
    benchmark.group = f"forward T={steps}"
    benchmark(lambda: forward(x).numpy())
