"""The attention block over time, before and after an LSTM.

keras-attention-mechanism's ``attention_3d_block`` (2017, ``attention_lstm.py``): 20 time steps
of 2 noise features, except step 10, which holds the binary target in both features. The block
``AttentionLayer("dense+gate")`` computes, for each feature, a distribution over the 20 steps
from that feature's whole series and multiplies the input by it; ``"dense+gate(shared=true)"``
averages the per-feature distributions into one shared by all features (the old
``SINGLE_ATTENTION_VECTOR``). Four variants: each of the two in front of ``LSTM(32)``
(``APPLY_ATTENTION_BEFORE_LSTM``), and each behind ``LSTM(32, return_sequences=True)`` followed
by ``Flatten`` and the classifier.

In front of the LSTM the attention must peak at step 10. Behind it there is no single right
answer: a forward LSTM carries the target from step 10 to every later step, so the weight may
settle on any step from 10 on.

Run ``python examples/recurrent_block.py`` (``--quick`` for the shortened run the tests use).
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

BATCH = 128
STEPS, FEATURES, TARGET_STEP = 20, 2, 10

#: Variant name -> (spec, whether the block comes before the LSTM).
VARIANTS = {
    "before LSTM, per feature": ("dense+gate", True),
    "before LSTM, shared": ("dense+gate(shared=true)", True),
    "after LSTM, per feature": ("dense+gate", False),
    "after LSTM, shared": ("dense+gate(shared=true)", False),
}


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noise series (n, 20, 2) whose step 10 holds the binary target y (n, 1)."""
    x = rng.standard_normal((n, STEPS, FEATURES)).astype("float32")
    y = rng.integers(0, 2, (n, 1)).astype("float32")
    x[:, TARGET_STEP, :] = y
    return x, y


def build_model(spec: str, before_lstm: bool) -> keras.Model:
    inputs = keras.Input((STEPS, FEATURES))
    if before_lstm:
        hidden = attnkit.AttentionLayer(spec, name="attention")(inputs)
        hidden = keras.layers.LSTM(32)(hidden)
    else:
        hidden = keras.layers.LSTM(32, return_sequences=True)(inputs)
        hidden = attnkit.AttentionLayer(spec, name="attention")(hidden)
        hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy", metrics=["accuracy"])
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train the four variants, plot their attention over time, return the figures of merit.

    Returns:
        For each variant name: ``peak`` (the step with the most mean attention; expected 10
        before the LSTM), ``peak_weight`` (its mean weight; uniform is 1/20) and ``accuracy``;
        and ``plot``, the PNG's path.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # Whole batches only: a smaller last batch would make TensorFlow trace the training
    # step a second time, which costs more than the batch is worth.
    x_train, y_train = make_data(BATCH * (24 if quick else 80), rng)
    x_test, y_test = make_data(500, rng)

    results: dict = {}
    rows = []
    for name, (spec, before_lstm) in VARIANTS.items():
        model = build_model(spec, before_lstm)
        model.fit(
            x_train, y_train, epochs=4 if quick else 10, batch_size=BATCH, verbose=0 if quick else 2
        )
        # One eager call; evaluate() would first trace a test function, which costs more here.
        probability = keras.ops.convert_to_numpy(model(x_test, training=False))
        accuracy = float(((probability > 0.5) == y_test).mean())
        # (B, 20, 2): the weight that multiplied each input step and feature.
        weights = attnkit.attention_weights(model, "attention", x_test, batch_size=len(x_test))
        over_time = weights.mean(axis=(0, 2))
        peak = int(over_time.argmax())
        rows.append(over_time)
        results[name] = {
            "peak": peak,
            "peak_weight": float(over_time[peak]),
            "accuracy": float(accuracy),
        }
        print(
            f"recurrent_block, {name} ({spec!r}): attention peaks at step {peak} with mean "
            f"weight {over_time[peak]:.3f} (uniform: {1 / STEPS:.3f}); test accuracy "
            f"{accuracy:.3f}"
        )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = output_dir / "recurrent_block.png"
    figure = attnkit.viz.heatmap(
        np.stack(rows),
        query_labels=list(VARIANTS),
        key_labels=[str(t) for t in range(STEPS)],
        title=f"mean attention over time steps (target at step {TARGET_STEP})",
    )
    # The rows are variants and the columns input steps, not queries and keys.
    figure.axes[0].set_ylabel("variant")
    figure.axes[0].set_xlabel("time step")
    attnkit.viz.save(figure, plot)
    print(f"recurrent_block: plot {plot}")
    results["plot"] = str(plot)
    return results


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortened run the tests use")
    parser.add_argument("--output-dir", default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(quick=args.quick, output_dir=args.output_dir, seed=args.seed)


if __name__ == "__main__":
    _cli()
