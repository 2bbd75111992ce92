"""Where the banded forward pass of additive+local15 spends its time (batch 32, T=1024, 64
features, units 32, window 15), one tf.function per line: ``python -m benchmarks.profile_banded``.
The last line is the computation attnkit's banded plan runs for inference
(attnkit/plans/_banded.py). TensorFlow only."""

import os
import statistics
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

B, T, D, U, W = 32, 1024, 64, 32, 15
rng = np.random.RandomState(0)
x = tf.constant(rng.randn(B, T, D).astype("float32"))
wq = tf.constant(rng.randn(D, U).astype("float32"))
wk = tf.constant(rng.randn(D, U).astype("float32"))
wa = tf.constant(rng.randn(U, 1).astype("float32"))


def gather(t):
    p = tf.pad(t, [[0, 0], [7, 7], [0, 0]])
    return tf.stack([p[:, o : o + T] for o in range(W)], 2)


def timeit(name, f, jit_compile=False):
    g = tf.function(f, jit_compile=jit_compile)
    g()
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        r = g()
        tf.nest.map_structure(lambda a: a.numpy(), r)
        ts.append(time.perf_counter() - t0)
    print(f"{name:40s} {statistics.median(ts) * 1e3:7.1f} ms")


timeit("gather keys+values", lambda: (tf.reduce_sum(gather(x)), tf.reduce_sum(gather(x))))
timeit("gather x (B,T,W,D)", lambda: tf.reduce_sum(gather(x)))
timeit("project gathered keys", lambda: tf.reduce_sum(tf.matmul(gather(x), wk)))
timeit("gather projected keys", lambda: tf.reduce_sum(gather(tf.matmul(x, wk))))


def full(proj_first):
    q = tf.matmul(x, wq)
    k = gather(tf.matmul(x, wk)) if proj_first else tf.matmul(gather(x), wk)
    h = tf.tanh(q[:, :, None, :] + k)
    s = tf.squeeze(tf.matmul(h, wa), -1)
    w = tf.nn.softmax(s)
    v = gather(x)
    return tf.einsum("btw,btwd->btd", w, v)


timeit("whole, project after gather", lambda: full(False))
timeit("whole, project before gather", lambda: full(True))


def full2():
    q = tf.matmul(x, wq)
    kp = tf.pad(tf.matmul(x, wk), [[0, 0], [7, 7], [0, 0]])
    vp = tf.pad(x, [[0, 0], [7, 7], [0, 0]])
    s = tf.stack(
        [tf.squeeze(tf.matmul(tf.tanh(q + kp[:, o : o + T]), wa), -1) for o in range(W)], -1
    )
    w = tf.nn.softmax(s)
    return tf.add_n([w[:, :, o : o + 1] * vp[:, o : o + T] for o in range(W)])


timeit("per-offset loop, no gather", full2)
timeit("per-offset loop, compiled with XLA", full2, jit_compile=True)


def full3():
    """As attnkit runs it: the tanh energy as a sum over units, not a (U, 1) matmul."""
    q = tf.matmul(x, wq)
    kp = tf.pad(tf.matmul(x, wk), [[0, 0], [7, 7], [0, 0]])
    vp = tf.pad(x, [[0, 0], [7, 7], [0, 0]])
    s = tf.stack(
        [tf.reduce_sum(tf.tanh(q + kp[:, o : o + T]) * wa[:, 0], -1) for o in range(W)], -1
    )
    w = tf.nn.softmax(s)
    return tf.add_n([w[:, :, o : o + 1] * vp[:, o : o + T] for o in range(W)])


timeit("per-offset loop, XLA, energy as a sum", full3, jit_compile=True)
