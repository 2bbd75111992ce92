"""Where dot+causal's time goes against dot's on the chunked plan (batch 32, T=4096, 64
features, query blocks of 512), one tf.function per line: ``python -m benchmarks.profile_causal``.
TensorFlow only; the figures are quoted in benchmarks/README.md ("Targets")."""

import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

B, T, D, BLOCK = 32, 4096, 64, 512
LOW = np.float32(-0.7 * np.finfo("float32").max)
rng = np.random.RandomState(0)
q, k, v = (tf.constant(rng.randn(B, T, D).astype("float32")) for _ in range(3))


def blocks(causal: bool, body):
    def run():
        outs = []
        for start in range(0, T, BLOCK):
            stop = start + BLOCK if causal else T
            scores = tf.matmul(q[:, start : start + BLOCK], k[:, :stop], transpose_b=True)
            outs.append(body(scores, start, stop))
        return tf.concat(outs, 1)

    return run


def both_matmuls(scores, start, stop):
    return tf.matmul(scores, v[:, :stop])


def first_and_softmax(scores, start, stop):
    return tf.reduce_sum(tf.nn.softmax(scores), -1, keepdims=True)


def whole(masked: bool, zeroing: bool = True):
    def body(scores, start, stop):
        if not masked:
            return tf.matmul(tf.nn.softmax(scores), v[:, :stop])
        allowed = tf.range(start, start + BLOCK)[:, None] >= tf.range(stop)[None, :]
        weights = tf.nn.softmax(tf.where(allowed, scores, LOW))
        if zeroing:  # what masked_softmax skips when every row sees a key (rows_see_a_key)
            weights = tf.where(allowed, weights, 0.0)
        return tf.matmul(weights, v[:, :stop])

    return body


def timeit(name, f):
    g = tf.function(f)
    g()
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        g().numpy()
        ts.append(time.perf_counter() - t0)
    print(f"{name:45s} {statistics.median(ts) * 1e3:7.1f} ms", flush=True)


for causal in (False, True):
    label = "causal" if causal else "full"
    timeit(f"{label}: both matmuls", blocks(causal, both_matmuls))
    timeit(f"{label}: first matmul + softmax", blocks(causal, first_and_softmax))
    timeit(f"{label}: whole (masked softmax if causal)", blocks(causal, whole(causal)))
    if causal:
        timeit(f"{label}: whole, no zeroing where", blocks(causal, whole(causal, False)))
