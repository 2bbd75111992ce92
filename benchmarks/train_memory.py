"""Peak memory of a training step: ``python -m benchmarks.train_memory PLAN T [BATCH] [SPEC]
[--jit] [--steps N] [--predict] [--dropout RATE]``.

Builds ``Input((T, 64))`` -> ``Dense(64)`` -> ``AttentionLayer(SPEC, plan=PLAN)`` -> pooling ->
``Dense(1)`` (the projection: a step differentiates the layer with respect to its inputs), runs
``train_on_batch`` (once, or ``--steps`` times) and prints the process's peak RSS (GiB), the
first step's time (tracing and compiling included) and the median of the others. ``--jit``
compiles the step as a whole (``jit_compile=True``: XLA on TensorFlow; Keras jits every JAX
step anyway). ``--predict`` times ``predict`` instead: inference, no gradient. ``--dropout``:
the layer's dropout on the weights (training only). Any backend:
set ``KERAS_BACKEND``. Example:
``python -m benchmarks.train_memory chunked 4096 32 additive --jit --steps 3``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_memory")
    parser.add_argument("plan")
    parser.add_argument("steps", type=int, metavar="T")
    parser.add_argument("batch", type=int, nargs="?", default=8)
    parser.add_argument("spec", nargs="?", default="additive")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True")
    parser.add_argument("--steps", dest="repeats", type=int, default=1, help="training steps")
    parser.add_argument("--predict", action="store_true", help="inference instead of training")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout on the weights")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import attnkit

    inputs = keras.Input((args.steps, 64))
    out = attnkit.AttentionLayer(args.spec, plan=args.plan, dropout=args.dropout, seed=1)
    out = out(keras.layers.Dense(64)(inputs))
    pooled = keras.layers.GlobalAveragePooling1D()(out)
    model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    model.compile("sgd", "mse", jit_compile=True if args.jit else "auto")
    x = np.random.RandomState(0).randn(args.batch, args.steps, 64).astype("float32")
    y = np.zeros((args.batch, 1), "float32")
    times = []
    for _ in range(max(args.repeats, 1)):
        start = time.perf_counter()
        if args.predict:
            model.predict(x, batch_size=args.batch, verbose=0)
        else:
            model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    steady = f", then {np.median(times[1:]) * 1000:.0f} ms per step" if len(times) > 1 else ""
    print(
        f"{args.spec} plan={args.plan} T={args.steps} batch={args.batch} "
        f"backend={keras.backend.backend()} jit={args.jit}"
        f"{' predict' if args.predict else ''}"
        f"{f' dropout={args.dropout}' if args.dropout else ''}: peak RSS {peak:.2f} GiB; "
        f"first step {times[0]:.1f} s{steady}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
