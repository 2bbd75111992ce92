"""The demo: build layers from specs, train each a few steps, show what they attend to.

Run with ``python -m attnkit.demo``. A toy task: a padded token sequence holds one marker
token; the target is the token right after it. Attention has to find the marker.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SPECS = ("additive+local15", "dot(scale=sqrt)+causal", "bahdanau+last(units=16)", "gaussian")
VOCAB, MARKER, STEPS = 20, 1, 12
SHADES = " .:-=+*#%@"


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sequences of 6..12 tokens (zero-padded); the target is the token after the marker."""
    rng = np.random.RandomState(seed)
    x = np.zeros((n, STEPS), "int32")
    y = np.zeros((n,), "int32")
    for i in range(n):
        length = rng.randint(6, STEPS + 1)
        x[i, :length] = rng.randint(2, VOCAB, length)
        at = rng.randint(0, length - 1)
        x[i, at] = MARKER
        y[i] = x[i, at + 1]
    return x, y


def build(spec: str):
    import keras

    import attnkit

    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(VOCAB, 32, mask_zero=True)(tokens)
    hidden = keras.layers.Bidirectional(keras.layers.GRU(16, return_sequences=True))(hidden)
    attended, weights = attnkit.AttentionLayer(spec, return_attention=True, name="attention")(
        hidden
    )
    if len(attended.shape) == 3:
        attended = keras.layers.GlobalAveragePooling1D()(attended)
    out = keras.layers.Dense(VOCAB, activation="softmax")(attended)
    model = keras.Model(tokens, out)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, keras.Model(tokens, weights)


def shade(row: np.ndarray) -> str:
    top = row.max() or 1.0
    return "".join(
        SHADES[min(len(SHADES) - 1, int(v / top * (len(SHADES) - 1) + 0.5))] for v in row
    )


def main(epochs: int = 8, samples: int = 2000) -> None:
    import attnkit

    x, y = make_data(samples)
    x_test, y_test = make_data(200, seed=1)
    print(f"attnkit {attnkit.__version__}: {len(attnkit.registry().components())} components")
    for spec in SPECS:
        model, probe = build(spec)
        history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        layer = model.get_layer("attention")
        print(f"\n{spec!r} -> canonical {layer.spec!r}, {len(layer.weights)} weights")
        print(
            f"  loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}, "
            f"test accuracy {accuracy:.2f}"
        )
        sample = x_test[:1]
        weights = np.asarray(probe.predict(sample, verbose=0))[0]
        print("  tokens  " + " ".join(f"{t:>2}" for t in sample[0]))
        rows = weights if weights.ndim == 2 else weights[None]
        for i, row in enumerate(rows[: int((sample[0] != 0).sum())]):
            label = "query" if weights.ndim == 1 else f"q{i:<3} "
            print(f"  {label:<6}  " + "  ".join(shade(row)) + f"   max {row.max():.2f}")


if __name__ == "__main__":
    main()
