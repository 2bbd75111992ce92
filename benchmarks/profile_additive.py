"""The floor under a bounded-memory additive training step, against keras-self-attention's
(batch 32, T=1024, 64 features, units 32): ``python -m benchmarks.profile_additive``.

keras-self-attention keeps the (B, T, T, units) tanh for its backward pass (12.5 GiB at T=1024).
A step whose memory stays bounded cannot: it evaluates the tanh energy ``sum_u w_u tanh(a_iu +
b_ju)`` once in the forward pass and again, with its gradient, in the backward pass. This
script times exactly that pairwise work over every (query, key) pair, in query blocks of 16 as
the chunked plan runs them, with nothing else (no projections, no softmax, no values), op by op
and compiled with XLA, then the whole layers' forward and backward passes. TensorFlow only; the
figures are quoted in benchmarks/README.md ("Targets")."""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

from attnkit.bench import median_time

B, T, D, UNITS, BLOCK = 32, 1024, 64, 32, 16
rng = np.random.RandomState(0)
a, b = (tf.constant(rng.randn(B, T, UNITS).astype("float32")) for _ in range(2))
w = tf.constant(rng.randn(UNITS).astype("float32"))
cotangent = tf.constant(rng.randn(B, BLOCK, T).astype("float32"))


def energy(a_block, b_all, jit: bool):
    """(B, BLOCK, T): sum_u w_u tanh(a_iu + b_ju). Op by op the sum over units is a (units, 1)
    matmul, as attnkit's dense and chunked passes do it; compiled, a sum, which XLA fuses into
    the tanh's loop (attnkit's offset pass)."""
    hidden = tf.tanh(a_block[:, :, None, :] + b_all[:, None, :, :])
    if jit:
        return tf.reduce_sum(hidden * w, -1)
    return tf.matmul(hidden, w[:, None])[..., 0]


def forward(jit: bool):
    return lambda: [energy(a[:, s : s + BLOCK], b, jit) for s in range(0, T, BLOCK)]


def forward_backward(jit: bool, with_w: bool = False):
    """The energy's gradient for (a, b), and for w when ``with_w``: a reduction of all
    B·T²·units values to units, the shape of an output weight's gradient (w_a)."""

    def run():
        grads = []
        for s in range(0, T, BLOCK):
            a_block = a[:, s : s + BLOCK]
            sources = [a_block, b, w] if with_w else [a_block, b]
            with tf.GradientTape() as tape:
                tape.watch(sources)
                loss = tf.reduce_sum(energy(a_block, b, jit) * cotangent)
            grads.extend(tape.gradient(loss, sources))
        return grads

    return run


def layer_pass(layer):
    x = tf.constant(rng.randn(B, T, D).astype("float32"))
    layer(x[:1, :8])  # build

    def run():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, [x, *layer.trainable_weights])

    return run


def timed(fn, jit: bool, repeats: int = 5) -> float:
    """Median milliseconds of ``fn`` as one tf.function, compiled with XLA when ``jit``."""
    return median_time(tf.function(fn, jit_compile=jit, autograph=False), 1, repeats) * 1000


def main() -> None:
    from benchmarks import peers

    rows = []
    for jit in (False, True):
        mode = "XLA" if jit else "op by op"
        once, both = timed(forward(jit), jit), timed(forward_backward(jit), jit)
        rows += [
            (f"tanh energy over B·T²·units, forward ({mode})", once),
            (f"tanh energy, forward and backward ({mode})", both),
            (f"floor of a rematerialised step: both lines above ({mode})", once + both),
            (
                f"forward and backward, w's gradient too ({mode})",
                timed(forward_backward(jit, True), jit),
            ),
        ]
    layers = [("attnkit additive (chunked)", "attnkit:additive@chunked")]
    try:
        import keras_self_attention  # noqa: F401
    except ImportError:
        print("keras-self-attention is not installed: its row is left out")
    else:
        layers.append(("keras-self-attention additive", "ksa:additive"))
    for label, name in layers:
        rows.append(
            (
                f"{label}: forward and backward, op by op",
                timed(layer_pass(peers.build(name)), False, 3),
            )
        )
    width = max(len(label) for label, _ in rows)
    print(f"batch {B}, T={T}, {D} features, units {UNITS}, query blocks of {BLOCK}")
    for label, ms in rows:
        print(f"{label:<{width}}  {ms:8.0f} ms")


if __name__ == "__main__":
    main()
