"""Find the maximum: many-to-one attention that should look at the largest number.

The ``attention`` package's ``find_max`` example: sequences of 10 numbers drawn from
Beta(1/10, 1), which makes the maximum uniform on [0, 1); the target is the maximum.
``LSTM(64, return_sequences=True)`` -> ``AttentionLayer("general+last")`` (Luong's multiplicative
score, the package's default) -> ``Dense(1)``. Trained, the last step should attend to the step
holding the maximum: the figure of merit is how often the attention's arg-max is the
sequence's arg-max (chance: 1 in 10).

Run ``python examples/find_max.py`` (``--quick`` for the shortened run the tests use).
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
STEPS = 10


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences (n, 10, 1) and their maxima (n, 1)."""
    # Beta(1/T, 1) makes max(x_1..x_T) uniform on [0, 1): the maximum is not bunched near 1,
    # so the network cannot guess it without finding it.
    x = rng.beta(1.0 / STEPS, 1.0, (n, STEPS, 1)).astype("float32")
    return x, x.max(axis=1)


def build_model() -> keras.Model:
    inputs = keras.Input((STEPS, 1))
    hidden = keras.layers.LSTM(64, return_sequences=True)(inputs)
    context = attnkit.AttentionLayer("general+last", name="attention")(hidden)
    outputs = keras.layers.Dense(1)(context)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "mae")
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train, plot the attention beside the true arg-max, return the figures of merit.

    Returns:
        ``hit_rate`` (share of test sequences whose attention arg-max is the true arg-max;
        chance is 1/10), ``max_weight`` (mean weight on the true arg-max), ``mae`` (test mean
        absolute error; answering 0.5 gives about 0.25) and ``plot``.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # Whole batches only: a smaller last batch would make TensorFlow trace the training
    # step a second time, which costs more than the batch is worth.
    x_train, y_train = make_data(BATCH * (48 if quick else 320), rng)
    x_test, y_test = make_data(500, rng)

    model = build_model()
    model.fit(
        x_train, y_train, epochs=4 if quick else 15, batch_size=BATCH, verbose=0 if quick else 2
    )
    # One eager call; evaluate() would first trace a test function, which costs more here.
    mae = float(np.abs(keras.ops.convert_to_numpy(model(x_test, training=False)) - y_test).mean())

    weights = attnkit.attention_weights(model, "attention", x_test, batch_size=len(x_test))
    truth = x_test[..., 0].argmax(axis=1)
    hit_rate = float((weights.argmax(axis=1) == truth).mean())
    max_weight = float(weights[np.arange(len(truth)), truth].mean())

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = output_dir / "find_max.png"
    shown = slice(0, 12)
    attnkit.viz.compare(
        {
            "attention (general+last)": weights[shown],
            "attention arg-max": _one_hot(weights[shown].argmax(axis=1)),
            "true arg-max": _one_hot(truth[shown]),
        },
        query_labels=[f"sample {i}" for i in range(12)],
        key_labels=[str(t) for t in range(STEPS)],
        title="find_max: what the last step attends to",
        path=plot,
    )

    print(
        f"find_max: the attention's arg-max is the true arg-max in {hit_rate:.1%} of test "
        f"sequences (chance: {1 / STEPS:.0%}), mean weight there {max_weight:.2f}; test MAE "
        f"{mae:.4f}; plot {plot}"
    )
    return {"hit_rate": hit_rate, "max_weight": max_weight, "mae": mae, "plot": str(plot)}


def _one_hot(index: np.ndarray) -> np.ndarray:
    return np.eye(STEPS, dtype="float32")[index]


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortened run the tests use")
    parser.add_argument("--output-dir", default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(quick=args.quick, output_dir=args.output_dir, seed=args.seed)


if __name__ == "__main__":
    _cli()
