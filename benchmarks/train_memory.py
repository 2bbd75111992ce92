"""Peak memory of one training step: ``python -m benchmarks.train_memory PLAN T [BATCH] [SPEC]``.

Builds ``Input((T, 64))`` -> ``AttentionLayer(SPEC, plan=PLAN)`` -> pooling -> ``Dense(1)``, runs
one ``train_on_batch`` and prints the process's peak RSS (GiB). Example:
``python -m benchmarks.train_memory chunked 4096 32 additive``.
"""

from __future__ import annotations

import os
import resource
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str]) -> None:
    import keras
    import numpy as np

    import attnkit

    plan, steps = argv[0], int(argv[1])
    batch = int(argv[2]) if len(argv) > 2 else 8
    spec = argv[3] if len(argv) > 3 else "additive"
    inputs = keras.Input((steps, 64))
    out = attnkit.AttentionLayer(spec, plan=plan)(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(out)
    model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    model.compile("sgd", "mse")
    x = np.random.RandomState(0).randn(batch, steps, 64).astype("float32")
    model.train_on_batch(x, np.zeros((batch, 1), "float32"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{spec} plan={plan} T={steps} batch={batch}: peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main(sys.argv[1:])
