"""The banded plan's weighted sum ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]`` and its
gradient with respect to both the weights and the values, three ways (batch 32, T=1024, 64
features, window 15), op by op and compiled with XLA: ``python -m benchmarks.profile_band_matmul``.

- W shifted products (what a compiled inference pass runs);
- the values' windows gathered, (B, T, W, Dv), and one einsum;
- :func:`attnkit.plans._window_sum.band_matmul`, one batched matmul per block of queries
  (what training and op-by-op passes run).

TensorFlow only; benchmarks/README.md quotes the figures."""

import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

from attnkit.plans._window_sum import band_matmul

B, T, D, BACK, AHEAD = 32, 1024, 64, 7, 7
W = BACK + AHEAD + 1
rng = np.random.RandomState(0)
weights = tf.constant(rng.rand(B, T, W).astype("float32"))
value = tf.constant(rng.randn(B, T, D).astype("float32"))
upstream = tf.constant(rng.randn(B, T, D).astype("float32"))


def shifted(w, v):
    padded = tf.pad(v, [[0, 0], [BACK, AHEAD], [0, 0]])
    return tf.add_n([w[:, :, o : o + 1] * padded[:, o : o + T] for o in range(W)])


def gathered(w, v):
    padded = tf.pad(v, [[0, 0], [BACK, AHEAD], [0, 0]])
    windows = tf.stack([padded[:, o : o + T] for o in range(W)], 2)
    return tf.einsum("btw,btwd->btd", w, windows)


def blocked(w, v):
    return band_matmul(w, v, BACK, AHEAD)


def forward_and_backward(f):
    def step():
        with tf.GradientTape() as tape:
            tape.watch([weights, value])
            loss = tf.reduce_sum(f(weights, value) * upstream)
        return tape.gradient(loss, [weights, value])

    return step


def timeit(name, g, repeats=15):
    g()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tf.nest.map_structure(lambda a: a.numpy(), g())
        ts.append(time.perf_counter() - t0)
    print(f"{name:46s} median {statistics.median(ts) * 1e3:7.1f} ms, min {min(ts) * 1e3:7.1f} ms")


reference = shifted(weights, value).numpy()
for f in (gathered, blocked):
    np.testing.assert_allclose(f(weights, value).numpy(), reference, rtol=1e-4, atol=1e-4)
for jit in (False, True):
    for f in (shifted, gathered, blocked):
        how = "XLA" if jit else "op by op"
        timeit(
            f"{f.__name__}, forward and backward, {how}",
            tf.function(forward_and_backward(f), jit_compile=jit),
        )
