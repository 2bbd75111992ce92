"""Add the two numbers after the delimiters: many-to-one attention that has to find them.

The ``attention`` package's ``add_two_numbers`` example: a sequence of 20 numbers drawn
uniformly from [0, 1) holds two delimiters (zeros); the target is the mean of the two numbers
right after them. ``LSTM(64, return_sequences=True)`` -> ``AttentionLayer("bahdanau+last")`` ->
``Dense(1)``: the last step asks, with Bahdanau's score, which steps to read. Trained, the
attention should put most of its weight on the two steps after the delimiters.

``attnkit.viz.AttentionHistory`` records the attention on a fixed test batch after every epoch
(and, in the full run, an animated GIF of it).

Run ``python examples/add_numbers.py`` (``--quick`` for the shortened run the tests use).
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
STEPS = 20


def make_data(
    n: int, rng: np.random.Generator, positions: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` sequences (n, 20, 1), targets (n, 1) and the two summand positions (n, 2).

    A delimiter 0 sits right before each summand; ``positions`` fixes the summands' steps
    (the same for every sample), otherwise they are drawn per sample.
    """
    x = rng.uniform(0.0, 1.0, (n, STEPS)).astype("float32")
    summands = np.zeros((n, 2), "int64")
    for i in range(n):
        if positions is None:
            # At least two steps apart, so that no delimiter overwrites the other summand.
            first = rng.integers(1, STEPS - 2)
            second = rng.integers(first + 2, STEPS)
        else:
            first, second = positions
        summands[i] = first, second
    rows = np.arange(n)[:, None]
    y = x[rows, summands].mean(axis=1, keepdims=True)
    x[rows, summands - 1] = 0.0
    return x[..., None], y, summands


def build_model() -> keras.Model:
    inputs = keras.Input((STEPS, 1))
    hidden = keras.layers.LSTM(64, return_sequences=True)(inputs)
    context = attnkit.AttentionLayer("bahdanau+last", name="attention")(hidden)
    outputs = keras.layers.Dense(1)(context)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "mae")
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train, plot the attention against the summand positions, return the figures of merit.

    Returns:
        ``share`` (mean attention weight on the two summand steps, per test sequence; uniform
        would be 2/20), ``mae`` (test mean absolute error) with ``baseline_mae`` (that of
        always answering 0.5), ``frames`` (the AttentionHistory directory) and ``plot``.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # Whole batches only: a smaller last batch would make TensorFlow trace the training
    # step a second time, which costs more than the batch is worth.
    x_train, y_train, _ = make_data(BATCH * (48 if quick else 320), rng)
    x_test, y_test, summands = make_data(500, rng)
    # A fixed batch for the pictures, summands at steps 4 and 12, as in the peer's example.
    x_show, _, _ = make_data(10, rng, positions=(4, 12))

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    frames = output_dir / "add_numbers_history"
    history = attnkit.viz.AttentionHistory("attention", x_show, frames, gif=not quick)

    model = build_model()
    model.fit(
        x_train,
        y_train,
        epochs=7 if quick else 30,
        batch_size=BATCH,
        callbacks=[history],
        verbose=0 if quick else 2,
    )
    # One eager call; evaluate() would first trace a test function, which costs more here.
    mae = float(np.abs(keras.ops.convert_to_numpy(model(x_test, training=False)) - y_test).mean())
    baseline_mae = float(np.abs(y_test - 0.5).mean())

    weights = attnkit.attention_weights(
        model, "attention", x_test, batch_size=len(x_test)
    )  # (B, 20)
    share = float(np.take_along_axis(weights, summands, axis=1).sum(axis=1).mean())

    expected = np.zeros((len(x_show), STEPS), "float32")
    expected[:, [4, 12]] = 0.5
    plot = output_dir / "add_numbers.png"
    attnkit.viz.compare(
        {
            "attention (bahdanau+last)": attnkit.attention_weights(model, "attention", x_show),
            "summand steps": expected,
        },
        query_labels=[f"sample {i}" for i in range(len(x_show))],
        key_labels=[str(t) for t in range(STEPS)],
        title="add_numbers: attention of the last step over the sequence",
        path=plot,
        cols=1,
    )

    print(
        f"add_numbers: {share:.1%} of the attention on the two summand steps (uniform: "
        f"{2 / STEPS:.0%}); test MAE {mae:.4f} (answering 0.5: {baseline_mae:.4f}); plot {plot}"
    )
    return {
        "share": share,
        "mae": mae,
        "baseline_mae": baseline_mae,
        "frames": str(frames),
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
