"""Sequence labelling with self-attention over padded sequences: full, local and causal masks.

keras-self-attention's setting: ``Embedding(mask_zero=True)`` -> ``Bidirectional(LSTM)`` ->
``AttentionLayer("additive+local15+seq")`` (``SeqSelfAttention(attention_width=15)``) ->
``Dense`` per step. The synthetic task: sentences of 16 to 40 tokens, zero-padded to 40, over
a vocabulary of 20 words, one of which (``*``) is a marker. Each token is tagged with where
markers lie within 3 steps of it: none, only before, only after, or on both sides. The tag
depends on nearby tokens only, on both sides.

Three masks are compared on the same data: ``additive+seq`` (every step sees every step),
``additive+local15+seq`` (a window of 15 around each step) and ``additive+causal+seq`` (only
the past; the backward LSTM still brings the future into each step's state). The figure of merit
is the tagging accuracy on the non-padded steps; the plot puts the three attention maps of one
padded test sentence side by side (padded steps get exactly zero weight).

Run ``python examples/sequence_labelling.py`` (``--quick`` for the shortened run the tests use).
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
MAX_LENGTH, MIN_LENGTH = 40, 16
VOCABULARY = 21  # 0 is padding, 1 the marker, 2..20 ordinary words
MARKER, REACH = 1, 3
TAGS = ("none", "before", "after", "both")
SPECS = ("additive+seq", "additive+local15+seq", "additive+causal+seq")
WORDS = ".*abcdefghijklmnopqrs"  # how tokens are drawn on the plot's axes


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` zero-padded sentences (n, 40) and their tags (n, 40), 0 on padding.

    Tag = 1 if a marker lies 1..3 steps before the token, + 2 if one lies 1..3 steps after.
    """
    x = np.zeros((n, MAX_LENGTH), "int32")
    for i, length in enumerate(rng.integers(MIN_LENGTH, MAX_LENGTH + 1, n)):
        x[i, :length] = rng.integers(2, VOCABULARY, length)
        # About one token in eight is a marker, so all four tags are common.
        x[i, :length][rng.random(length) < 0.125] = MARKER
    marker = np.pad(x == MARKER, ((0, 0), (REACH, REACH)))
    before = np.zeros(x.shape, bool)
    after = np.zeros(x.shape, bool)
    for shift in range(1, REACH + 1):
        before |= marker[:, REACH - shift : REACH - shift + MAX_LENGTH]
        after |= marker[:, REACH + shift : REACH + shift + MAX_LENGTH]
    y = (before + 2 * after) * (x != 0)
    return x, y.astype("int32")


def build_model(spec: str) -> keras.Model:
    tokens = keras.Input((MAX_LENGTH,), dtype="int32")
    hidden = keras.layers.Embedding(VOCABULARY, 16, mask_zero=True)(tokens)
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(32, return_sequences=True))(hidden)
    hidden = attnkit.AttentionLayer(spec, name="attention")(hidden)
    tags = keras.layers.Dense(len(TAGS), activation="softmax")(hidden)
    model = keras.Model(tokens, tags)
    # The mask reaches the loss, so padded steps do not count.
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train one tagger per mask, plot their attention maps side by side, return the accuracies.

    Returns:
        For each spec, ``accuracy`` on the non-padded test steps; ``majority`` (that of always
        answering the most common tag); ``plot``.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # Whole batches only: a smaller last batch would make TensorFlow trace the training
    # step a second time, which costs more than the batch is worth.
    x_train, y_train = make_data(BATCH * (24 if quick else 80), rng)
    x_test, y_test = make_data(500, rng)
    real = x_test != 0
    majority = float(np.bincount(y_test[real]).max() / real.sum())
    # The sentence the plot shows: the first with 8 to 12 padded steps, so that the padding
    # shows without taking over the picture.
    padded = MAX_LENGTH - real.sum(axis=1)
    shown = int(np.argmax((padded >= 8) & (padded <= 12)))

    results: dict = {}
    maps = {}
    for spec in SPECS:
        model = build_model(spec)
        model.fit(
            x_train, y_train, epochs=3 if quick else 6, batch_size=BATCH, verbose=0 if quick else 2
        )
        # One eager call; evaluate() would first trace a test function, which costs more here.
        predicted = keras.ops.convert_to_numpy(model(x_test, training=False)).argmax(axis=-1)
        accuracy = float((predicted == y_test)[real].mean())
        results[spec] = {"accuracy": accuracy}
        maps[spec] = attnkit.attention_weights(model, "attention", x_test[shown : shown + 1])[0]
        print(
            f"sequence_labelling, {spec!r}: tagging accuracy {accuracy:.3f} on the non-padded "
            f"test steps (majority tag: {majority:.3f})"
        )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = output_dir / "sequence_labelling.png"
    words = [WORDS[token] for token in x_test[shown]]
    figure = attnkit.viz.compare(
        maps,
        query_labels=words,
        key_labels=words,
        title="Embedding(mask_zero) -> BiLSTM -> AttentionLayer: one padded test sentence "
        "(* marks the markers, . the padding)",
    )
    figure.set_size_inches(15, 5.4)  # square panels: every map is 40 x 40
    attnkit.viz.save(figure, plot)
    print(f"sequence_labelling: plot {plot}")
    results["majority"] = majority
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
