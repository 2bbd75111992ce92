"""Sequence to sequence: reverse a sequence of digits, with attention from decoder to encoder.

An encoder-decoder for a toy translation: the input is 4 to 10 random digits, zero-padded to 10,
the output the same digits in reverse order (padded the same way). The encoder
(``Embedding(mask_zero=True)`` + learned positions -> ``LSTM``) reads the input; the decoder is
an ``LSTM`` that starts from the encoder's final state and steps through learned output
positions. At each output step t, ``AttentionLayer("general+seq")`` called on
``[decoder_states, encoder_states]`` (Luong's ``s = q^T W k``) chooses which input steps to read;
``Dense`` predicts the digit from the context and the decoder state (Luong et al. 2015). The
padding masks of both sides reach the attention: padded input steps get no weight, padded
output steps output zeros.

For a sequence of length L, output step t needs input step L - 1 - t: the attention should be
the anti-diagonal of the L x L block, which moves with L, so the decoder has to learn L from the
encoder's state. The figures of merit are the digit accuracy on the non-padded output steps and
the share of attention on the anti-diagonal.

Run ``python examples/seq2seq.py`` (``--quick`` for the shortened run the tests use).
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
STEPS, MIN_LENGTH, UNITS = 10, 4, 64
TOKENS = 11  # 0 is padding, digit d is token d + 1


class Positions(keras.layers.Layer):
    """A learned vector per step, added to the input (B, T, D) or, with ``only``, returned alone.

    Attention compares contents, not places: without positions the encoder states of two equal
    digits would look alike, and the decoder would not know which step it is at.
    """

    def __init__(self, only: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.only = only
        self.supports_masking = True  # the padding mask passes through unchanged

    def build(self, input_shape):
        self.table = self.add_weight(
            name="table", shape=(input_shape[1], input_shape[2]), initializer="random_normal"
        )

    def call(self, inputs):
        table = keras.ops.expand_dims(self.table, 0)
        if self.only:
            return keras.ops.broadcast_to(table, keras.ops.shape(inputs))
        return inputs + table


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` zero-padded token sequences (n, 10) and the same reversed (n, 10), padded alike."""
    x = np.zeros((n, STEPS), "int32")
    y = np.zeros((n, STEPS), "int32")
    for i, length in enumerate(rng.integers(MIN_LENGTH, STEPS + 1, n)):
        x[i, :length] = rng.integers(1, TOKENS, length)
        y[i, :length] = x[i, :length][::-1]
    return x, y


def build_model() -> keras.Model:
    digits = keras.Input((STEPS,), dtype="int32")
    embedded = Positions()(keras.layers.Embedding(TOKENS, 32, mask_zero=True)(digits))
    encoder_states, state_h, state_c = keras.layers.LSTM(
        UNITS, return_sequences=True, return_state=True
    )(embedded)
    # The decoder's inputs are its output positions; what to write comes through the attention.
    queries = Positions(only=True)(embedded)
    decoder_states = keras.layers.LSTM(UNITS, return_sequences=True)(
        queries, initial_state=[state_h, state_c]
    )
    context = attnkit.AttentionLayer("general+seq", name="attention")(
        [decoder_states, encoder_states]
    )
    hidden = keras.layers.Concatenate()([context, decoder_states])
    hidden = keras.layers.Dense(UNITS, activation="tanh")(hidden)
    outputs = keras.layers.Dense(TOKENS, activation="softmax")(hidden)
    model = keras.Model(digits, outputs)
    # The mask reaches the loss, so padded output steps do not count.
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


def main(quick: bool = False, output_dir="examples/output", seed: int = 0) -> dict:
    """Train, plot the decoder-encoder attention, return the figures of merit.

    Returns:
        ``accuracy`` (share of non-padded test digits right), ``sequence_accuracy`` (share of
        test sequences entirely right), ``anti_diagonal`` (mean weight that output step t of a
        length-L sequence puts on input step L - 1 - t; uniform would be about 1/7) and
        ``plot``.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    # Whole batches only: a smaller last batch would make TensorFlow trace the training
    # step a second time, which costs more than the batch is worth.
    x_train, y_train = make_data(BATCH * (32 if quick else 160), rng)
    x_test, y_test = make_data(500, rng)

    model = build_model()
    model.fit(
        x_train, y_train, epochs=3 if quick else 10, batch_size=BATCH, verbose=0 if quick else 2
    )
    # One eager call; evaluate() would first trace a test function, which costs more here.
    predicted = keras.ops.convert_to_numpy(model(x_test, training=False)).argmax(axis=-1)
    real = x_test != 0
    right = (predicted == y_test) | ~real
    accuracy = float(right[real].mean())
    sequence_accuracy = float(right.all(axis=1).mean())

    # (B, 10 decoder steps, 10 encoder steps); padded rows and columns are 0.
    weights = attnkit.attention_weights(model, "attention", x_test, batch_size=len(x_test))
    lengths = real.sum(axis=1)
    on_anti_diagonal = [
        weights[i, np.arange(n), n - 1 - np.arange(n)] for i, n in enumerate(lengths)
    ]
    anti_diagonal = float(np.concatenate(on_anti_diagonal).mean())

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot = output_dir / "seq2seq.png"
    # Two test sequences of different lengths, to show the alignment moving with L.
    shown = [int(np.argmax(lengths == n)) for n in (STEPS, STEPS - 3) if (lengths == n).any()]
    figure = attnkit.viz.compare(
        {f"input {_text(x_test[i])} -> {_text(predicted[i] * real[i])}": weights[i] for i in shown},
        title="seq2seq reversal: decoder step (rows) attends to encoder step (columns)",
    )
    for i, ax in zip(shown, figure.axes, strict=False):
        ax.set_xticks(range(STEPS), labels=_digits(x_test[i]))
        ax.set_yticks(range(STEPS), labels=_digits(predicted[i] * real[i]))
        ax.set_xlabel("encoder step (input digit)")
        ax.set_ylabel("decoder step (output digit)")
    attnkit.viz.save(figure, plot)

    print(
        f"seq2seq: digit accuracy {accuracy:.3f} (chance 0.10), whole sequences "
        f"{sequence_accuracy:.3f}; {anti_diagonal:.1%} of the attention on the anti-diagonal "
        f"(uniform over the L valid steps: {np.mean(1 / lengths):.1%}); plot {plot}"
    )
    return {
        "accuracy": accuracy,
        "sequence_accuracy": sequence_accuracy,
        "anti_diagonal": anti_diagonal,
        "plot": str(plot),
    }


def _digits(tokens: np.ndarray) -> list[str]:
    return [str(token - 1) if token else "" for token in tokens]


def _text(tokens: np.ndarray) -> str:
    return "".join(_digits(tokens))


def _cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the shortened run the tests use")
    parser.add_argument("--output-dir", default=Path(__file__).parent / "output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(quick=args.quick, output_dir=args.output_dir, seed=args.seed)


if __name__ == "__main__":
    _cli()
