"""A small Transformer encoder classifier built from multi-head attnkit layers.

The task: a padded sequence of 10 to 16 tokens holds one marker token; the class is the token
right after it (8 classes). Two multi-head layers with different specs do it:

- an encoder block, ``AttentionLayer("dot(scale=sqrt)+local3", num_heads=4, key_dim=8)`` with a
  residual connection, layer normalisation and a feed-forward layer: each step sees only its
  two neighbours;
- a multi-head pooling, ``AttentionLayer("general+weighted", num_heads=2, key_dim=8)``: each
  head asks with its own learned query.

Trained, the work splits between the layers: the encoder's heads at the marker read the step
after it (their weight there, from the marker's row: uniform would be 1/3), and the pooling's
heads find the marker (uniform would be about 1/13). Figures of merit: test accuracy (chance:
1 in 8) and those two weights. The plots show one test sequence's attention per head, for both
layers, drawn with ``attnkit.viz.heads``.

Run ``python examples/transformer_classifier.py`` (``--quick`` for the shortened run the tests
use).
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

STEPS, MARKER, CLASSES, FEATURES, BATCH = 16, 1, 8, 32, 64


def make_data(n: int, rng: np.random.Generator):
    """(tokens (n, 16) with 0 as padding, labels (n,), marker positions (n,))."""
    lengths = rng.integers(10, STEPS + 1, n)
    tokens = rng.integers(2, 2 + CLASSES, (n, STEPS))
    tokens[np.arange(STEPS)[None, :] >= lengths[:, None]] = 0
    marker = rng.integers(0, lengths - 1)  # the marker is never the last valid step
    tokens[np.arange(n), marker] = MARKER
    labels = tokens[np.arange(n), marker + 1] - 2
    return tokens.astype("int32"), labels.astype("int32"), marker


@keras.saving.register_keras_serializable(package="examples")
class Positions(keras.layers.Layer):
    """Adds a learned embedding of each step's position; passes the padding mask on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=tuple(input_shape[1:]))

    def call(self, x):
        return x + self.table


def build_model() -> keras.Model:
    tokens = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(2 + CLASSES, FEATURES, mask_zero=True)(tokens)
    x = Positions()(x)
    attended = attnkit.AttentionLayer(
        "dot(scale=sqrt)+local3", num_heads=4, key_dim=8, name="encoder"
    )(x)
    x = keras.layers.LayerNormalization()(x + attended)
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(FEATURES, "relu")(x))
    pooled = attnkit.AttentionLayer("general+weighted", num_heads=2, key_dim=8, name="pooling")(x)
    outputs = keras.layers.Dense(CLASSES)(pooled)
    model = keras.Model(tokens, outputs)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train, plot one test sequence's attention per head, return the figures of merit.

    Returns:
        ``accuracy`` (test; chance 1/8), ``reads_next`` (the encoder heads' mean weight, from
        the marker's row, on the step after it; uniform 1/3), ``on_marker`` (the pooling heads'
        mean weight on the marker; uniform about 1/13) and ``plot``.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train, _ = make_data(BATCH * (40 if quick else 160), rng)
    x_test, y_test, marker = make_data(512, rng)

    model = build_model()
    model.fit(
        x_train, y_train, epochs=6 if quick else 20, batch_size=BATCH, verbose=0 if quick else 2
    )
    logits = keras.ops.convert_to_numpy(model(x_test, training=False))
    accuracy = float((logits.argmax(axis=1) == y_test).mean())

    rows = np.arange(len(marker))
    encoder = attnkit.attention_weights(model, "encoder", x_test, batch_size=len(x_test))
    reads_next = float(encoder[rows, :, marker, marker + 1].mean())  # encoder: (n, 4, T, T)
    pooling = attnkit.attention_weights(model, "pooling", x_test, batch_size=len(x_test))
    on_marker = float(pooling[rows, :, marker].mean())  # pooling: (n, 2, T)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = output_dir / "transformer_classifier.png"
    words = [_word(t) for t in x_test[0]]
    attnkit.viz.heads(
        encoder[0], query_labels=words, key_labels=words, title="encoder (dot+local3), per head"
    ).savefig(output_dir / "transformer_encoder_heads.png")
    attnkit.viz.heads(
        pooling[0], key_labels=words, title="pooling (general+weighted), per head", path=plot
    )

    print(
        f"transformer_classifier: test accuracy {accuracy:.1%} (chance {1 / CLASSES:.1%}); "
        f"the encoder heads at the marker put {reads_next:.2f} of their weight on the next "
        f"step (uniform 0.33), the pooling heads {on_marker:.2f} on the marker (uniform about "
        f"0.08); plots {plot} and {output_dir / 'transformer_encoder_heads.png'}"
    )
    return {
        "accuracy": accuracy,
        "reads_next": reads_next,
        "on_marker": on_marker,
        "plot": str(plot),
    }


def _word(token: int) -> str:
    return {0: "_", MARKER: "M"}.get(int(token), str(int(token) - 2))


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortened run the tests use")
    parser.add_argument("--output-dir", default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(quick=args.quick, output_dir=args.output_dir, seed=args.seed)


if __name__ == "__main__":
    _cli()
