"""The dense attention block: which of 32 input features carries the target?

The "hello world" of keras-attention-mechanism (2017, ``attention_dense.py``): every sample is
32 features of Gaussian noise except feature 1, which holds the binary target. The block
``x * softmax(x W + b)`` (``AttentionLayer("dense+gate")``) sits in front of a small classifier;
averaged over a test batch, the learned attention vector should peak at feature 1.

Run ``python examples/dense_block.py`` (``--quick`` for the shortened run the tests use).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import attnkit  # noqa: E402
import attnkit.viz  # noqa: E402

BATCH = 64
FEATURES = 32
TARGET_FEATURE = 1


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noise vectors (n, 32) whose feature 1 is the binary target y (n, 1)."""
    x = rng.standard_normal((n, FEATURES)).astype("float32")
    y = rng.integers(0, 2, (n, 1)).astype("float32")
    x[:, TARGET_FEATURE] = y[:, 0]
    return x, y


def build_model() -> keras.Model:
    inputs = keras.Input((FEATURES,))
    gated = attnkit.AttentionLayer("dense+gate", name="attention")(inputs)
    hidden = keras.layers.Dense(64, activation="relu")(gated)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train the block, plot its mean attention vector and return the figures of merit.

    Returns:
        ``peak`` (the feature with the most attention, expected 1), ``peak_weight`` (its mean
        weight; uniform would be 1/32), ``accuracy`` (test) and ``plot`` (the PNG's path).
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # Whole batches only: a smaller last batch would make TensorFlow trace the training
    # step a second time, which costs more than the batch is worth.
    x_train, y_train = make_data(BATCH * (80 if quick else 160), rng)
    x_test, y_test = make_data(500, rng)

    model = build_model()
    model.fit(
        x_train, y_train, epochs=6 if quick else 20, batch_size=BATCH, verbose=0 if quick else 2
    )
    # One eager call; evaluate() would first trace a test function, which costs more here.
    probability = keras.ops.convert_to_numpy(model(x_test, training=False))
    accuracy = float(((probability > 0.5) == y_test).mean())

    weights = attnkit.attention_weights(
        model, "attention", x_test, batch_size=len(x_test)
    )  # (B, 32)
    mean = weights.mean(axis=0)
    peak = int(mean.argmax())

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = output_dir / "dense_block.png"
    attnkit.viz.vector(
        mean,
        labels=[str(i) for i in range(FEATURES)],
        title=f"dense+gate: mean attention over {len(x_test)} test vectors (target in feature 1)",
        path=plot,
    )

    print(
        f"dense_block: attention peaks at feature {peak} (expected {TARGET_FEATURE}) with mean "
        f"weight {mean[peak]:.3f} (uniform: {1 / FEATURES:.3f}); test accuracy {accuracy:.3f}; "
        f"plot {plot}"
    )
    return {
        "peak": peak,
        "peak_weight": float(mean[peak]),
        "accuracy": float(accuracy),
        "plot": str(plot),
    }


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortened run the tests use")
    parser.add_argument("--output-dir", default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(quick=args.quick, output_dir=args.output_dir, seed=args.seed)


if __name__ == "__main__":
    _cli()
