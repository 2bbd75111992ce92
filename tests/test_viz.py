"""attnkit.attention_weights (weights read out of a trained model) and attnkit.viz (pictures)."""

from __future__ import annotations

import importlib
import sys

import keras
import numpy as np
import pytest

import attnkit
from attnkit import viz
from attnkit.capture import capture
from attnkit.errors import (
    AttnkitError,
    CaptureError,
    LayerNotFoundError,
    MissingDependencyError,
    PlotError,
)

PNG, SVG, GIF = b"\x89PNG\r\n\x1a\n", b"<?xml", b"GIF89a"
VOCAB = 12
# Five samples of lengths 6, 4, 2, 5, 3 (0 = padding): batch_size=3 splits them 3 + 2.
TOKENS = np.array(
    [
        [3, 4, 5, 6, 7, 8],
        [2, 9, 4, 5, 0, 0],
        [7, 7, 0, 0, 0, 0],
        [5, 4, 3, 2, 1, 0],
        [11, 10, 9, 0, 0, 0],
    ],
    "int32",
)
LENGTHS = (TOKENS != 0).sum(axis=1)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def token_model(spec: str) -> keras.Model:
    """Embedding(mask_zero) -> AttentionLayer(spec, name="attention") -> Dense."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(VOCAB, 8, mask_zero=True, name="embed")(tokens)
    attended = attnkit.AttentionLayer(spec, name="attention")(hidden)
    if len(attended.shape) == 3:
        attended = keras.layers.GlobalAveragePooling1D()(attended)
    return keras.Model(tokens, keras.layers.Dense(1, name="head")(attended))


def returned_weights(model: keras.Model, spec: str, x) -> np.ndarray:
    """What a copy of the model's layer gives with return_attention=True, on the same input."""
    tokens = keras.Input((None,), dtype="int32")
    copy = attnkit.AttentionLayer(spec, return_attention=True)
    _, weights = copy(model.get_layer("embed")(tokens))
    copy.set_weights(model.get_layer("attention").get_weights())
    return numpy(keras.Model(tokens, weights)(x))


# -- attention_weights ---------------------------------------------------------------------------
def test_lazy_exports():
    from attnkit import inspection

    assert attnkit.attention_weights is inspection.attention_weights
    assert attnkit.viz is viz
    assert {"attention_weights", "MissingDependencyError"} <= set(attnkit.__all__)


def test_seq_weights_equal_return_attention_with_padding_and_band():
    spec = "additive+local3"
    model = token_model(spec)
    weights = attnkit.attention_weights(model, "attention", TOKENS, batch_size=3)
    assert isinstance(weights, np.ndarray) and weights.shape == (5, 6, 6)
    np.testing.assert_allclose(weights, returned_weights(model, spec, TOKENS), atol=1e-6)
    q, k = np.indices((6, 6))
    for sample, length in enumerate(LENGTHS):
        w = weights[sample]
        np.testing.assert_allclose(w[:length].sum(axis=-1), 1.0, atol=1e-5)
        assert np.all(w[:, length:] == 0.0), "padded keys must get exactly 0"
        assert np.all(w[length:] == 0.0), "padded query rows must be all zeros"
        assert np.all(w[np.abs(q - k) > 1] == 0.0), "local3 reaches one step each way"
        assert np.all(w[:length, :length][np.abs(q - k)[:length, :length] <= 1] > 0.0)


def test_many_to_one_weights_are_one_row_per_sample():
    spec = "bahdanau+last"
    model = token_model(spec)
    weights = attnkit.attention_weights(model, "attention", TOKENS, batch_size=2)
    assert weights.shape == (5, 6)
    np.testing.assert_allclose(weights, returned_weights(model, spec, TOKENS), atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    for sample, length in enumerate(LENGTHS):
        assert np.all(weights[sample, length:] == 0.0)


def test_outputs_unchanged_while_capturing():
    # local3 runs the banded plan normally and the dense plan while captured.
    model = token_model("additive+local3")
    before = numpy(model(TOKENS, training=False))
    with capture("attention") as found:
        during = numpy(model(TOKENS, training=False))
    assert len(found["attention"]) == 1
    attnkit.attention_weights(model, "attention", TOKENS)
    after = numpy(model(TOKENS, training=False))
    np.testing.assert_allclose(during, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("container", ["list", "tuple", "dict"])
def test_multi_input_query_value(container):
    rng = np.random.default_rng(0)
    qx = rng.normal(size=(5, 4, 3)).astype("float32")
    vx = rng.normal(size=(5, 7, 3)).astype("float32")
    query, value = keras.Input((4, 3), name="query"), keras.Input((7, 3), name="value")
    attended = attnkit.AttentionLayer("dot(scale=sqrt)", name="cross")([query, value])
    out = keras.layers.Dense(1)(keras.layers.Flatten()(attended))
    if container == "dict":
        model = keras.Model({"query": query, "value": value}, out)
        inputs = {"query": qx, "value": vx}
    else:
        model = keras.Model([query, value], out)
        inputs = [qx, vx] if container == "list" else (qx, vx)
    weights = attnkit.attention_weights(model, "cross", inputs, batch_size=2)
    scores = np.einsum("bqd,bkd->bqk", qx, vx) / np.sqrt(3.0)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.attention = attnkit.AttentionLayer("general+causal", name="deep")
        self.head = keras.layers.Dense(1)

    def call(self, x):
        return self.head(self.attention(x))


@pytest.mark.parametrize("kind", ["functional", "subclassed"])
def test_nested_layer_is_found(kind):
    x = np.random.default_rng(1).normal(size=(3, 5, 4)).astype("float32")
    inputs = keras.Input((5, 4))
    if kind == "functional":
        block_in = keras.Input((5, 4))
        block = attnkit.AttentionLayer("general+causal", name="deep")(block_in)
        inner = keras.Model(block_in, block, name="block")
    else:
        inner = _Subclassed()
    outer = keras.Model(inputs, inner(keras.layers.Dense(4)(inputs)), name="outer")
    weights = attnkit.attention_weights(outer, "deep", x)
    assert weights.shape == (3, 5, 5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(weights[0], k=1) == 0.0), "causal: no weight on later keys"


def test_unknown_name_suggests_the_attention_layers():
    model = token_model("dot")
    with pytest.raises(LayerNotFoundError) as info:
        attnkit.attention_weights(model, "atention", TOKENS)
    message = str(info.value)
    assert "'atention'" in message and "did you mean 'attention'" in message
    assert isinstance(info.value, AttnkitError) and isinstance(info.value, ValueError)
    with pytest.raises(LayerNotFoundError, match=r"'embed'.* is a Embedding, not an attnkit"):
        attnkit.attention_weights(model, "embed", TOKENS)


def test_shared_layer_and_bad_inputs_are_refused():
    inputs = keras.Input((5, 4))
    shared = attnkit.AttentionLayer("dot", name="twice")
    model = keras.Model(inputs, shared(shared(inputs)))
    x = np.zeros((2, 5, 4), "float32")
    with pytest.raises(CaptureError, match="ran 2 times"):
        attnkit.attention_weights(model, "twice", x)
    with pytest.raises(attnkit.InputShapeError, match="no samples"):
        attnkit.attention_weights(model, "twice", x[:0])
    with pytest.raises(ValueError, match="batch_size"):
        attnkit.attention_weights(model, "twice", x, batch_size=0)


# -- figures -------------------------------------------------------------------------------------
def texts(labels):
    return [label.get_text() for label in labels]


def test_heatmap_labels_colour_bar_and_files(tmp_path):
    from matplotlib.figure import Figure

    weights = np.random.default_rng(2).dirichlet(np.ones(5), size=(1, 3))  # (1, 3, 5)
    words = ["the", "cat", "sat", "on", "it"]
    figure = viz.heatmap(
        weights, query_labels=words[:3], key_labels=words, title="map", path=tmp_path / "a/b.png"
    )
    assert isinstance(figure, Figure) and len(figure.axes) == 2  # the map and its colour bar
    ax = figure.axes[0]
    assert texts(ax.get_xticklabels()) == words and texts(ax.get_yticklabels()) == words[:3]
    assert ax.get_title() == "map" and ax.images[0].get_array().shape == (3, 5)
    assert (tmp_path / "a/b.png").read_bytes().startswith(PNG)
    path = viz.save(figure, tmp_path / "c/d.SVG")
    assert path.read_bytes().startswith(SVG) and b"<svg" in path.read_bytes()[:2000]


def test_heatmap_and_vector_draw_into_given_axes():
    from matplotlib.figure import Figure

    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert viz.heatmap(np.eye(3), ax=left) is figure
    assert viz.vector([0.2, 0.8], ax=right) is figure
    assert len(figure.axes) == 3 and len(right.patches) == 2


def test_vector_bars_and_labels(tmp_path):
    figure = viz.vector(np.array([[0.1, 0.6, 0.3]]), labels=[7, 8, 9], path=tmp_path / "v.svg")
    (ax,) = figure.axes
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([0.1, 0.6, 0.3])
    assert texts(ax.get_xticklabels()) == ["7", "8", "9"]
    assert (tmp_path / "v.svg").read_bytes().startswith(SVG)


def test_compare_panels_share_one_colour_scale(tmp_path):
    rng = np.random.default_rng(3)
    panels = {
        "dot": rng.dirichlet(np.ones(4), size=4),
        "additive": 0.5 * rng.dirichlet(np.ones(4), size=(1, 4)),
        "last": rng.dirichlet(np.ones(4)),
    }
    keys = list("abcd")
    figure = viz.compare(panels, key_labels=keys, title="specs", cols=2, path=tmp_path / "c.png")
    assert len(figure.axes) == 4  # three panels and one shared colour bar
    heat = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in figure.axes[:3]] == list(panels)
    assert heat[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)
    limits = {ax.images[0].get_clim() for ax in heat}
    assert len(limits) == 1 and limits.pop() == (0.0, pytest.approx(panels["dot"].max()))
    assert texts(figure.axes[2].get_xticklabels()) == keys
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize(
    "draw, match",
    [
        (lambda: viz.heatmap(np.zeros((2, 3, 4))), r"\(2, 3, 4\)"),
        (lambda: viz.heatmap(np.zeros(4)), r"\(4,\)"),
        (lambda: viz.vector(np.zeros((2, 3))), r"\(2, 3\)"),
        (lambda: viz.heatmap(np.eye(3), key_labels=["a", "b"]), "2 labels.*3 key steps"),
        (lambda: viz.vector(np.ones(3), labels=list("abcd")), "4 labels.*3 positions"),
        (lambda: viz.compare({"x": np.zeros((1, 2, 2, 2))}), "panel 'x'"),
        (lambda: viz.compare({}), "non-empty mapping"),
        (lambda: viz.compare({"x": np.eye(2)}, cols=0), "cols"),
        (lambda: viz.save(viz.vector([1.0]), "plot.jpg"), r"\.png, \.svg; received '\.jpg'"),
    ],
    ids=[
        "rank3",
        "rank1",
        "vector-rank2",
        "labels",
        "vector-labels",
        "panel",
        "empty",
        "cols",
        "suffix",
    ],
)
def test_bad_arguments_raise_plot_errors(draw, match):
    with pytest.raises(PlotError, match=match) as info:
        draw()
    assert isinstance(info.value, AttnkitError) and isinstance(info.value, ValueError)


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    # The module itself imports without matplotlib (a fresh copy, restored afterwards).
    monkeypatch.delitem(sys.modules, "attnkit.viz")
    monkeypatch.setattr(attnkit, "viz", viz)
    fresh = importlib.import_module("attnkit.viz")
    assert fresh is not viz
    for call in (
        lambda: fresh.heatmap(np.eye(2)),
        lambda: fresh.AttentionHistory("attention", TOKENS, tmp_path),
    ):
        with pytest.raises(MissingDependencyError, match=r'pip install "attnkit\[viz\]"') as info:
            call()
        assert isinstance(info.value, ImportError) and isinstance(info.value, AttnkitError)


# -- the callback --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, every, gif, frames",
    [
        ("additive", 1, True, ["epoch_001.png", "epoch_002.png"]),
        ("bahdanau+last", 2, False, ["epoch_002.png"]),
    ],
)
def test_attention_history_over_a_short_fit(tmp_path, spec, every, gif, frames):
    model = token_model(spec)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    x = np.tile(TOKENS, (4, 1))
    y = (x[:, :1] > 5).astype("float32")
    callback = viz.AttentionHistory(
        "attention",
        TOKENS[:2],
        tmp_path / "frames",
        every=every,
        gif=gif,
        sample=1,
        key_labels=[f"t{i}" for i in range(6)],
    )
    model.fit(x, y, epochs=2, batch_size=5, verbose=0, callbacks=[callback])
    written = sorted(path.name for path in (tmp_path / "frames").glob("*.png"))
    assert written == frames and callback.frames == [tmp_path / "frames" / f for f in frames]
    for path in callback.frames:
        assert path.read_bytes().startswith(PNG)
    assert [epoch for epoch, _ in callback.history] == [int(f[6:9]) for f in frames]
    per_sample = (2, 6, 6) if spec == "additive" else (2, 6)
    assert all(weights.shape == per_sample for _, weights in callback.history)
    if gif:
        from PIL import Image

        assert callback.gif_path == tmp_path / "frames" / "attention.gif"
        assert callback.gif_path.read_bytes().startswith(GIF)
        with Image.open(callback.gif_path) as image:
            assert image.n_frames == 2
        first, second = (weights for _, weights in callback.history)
        assert not np.allclose(first, second), "training must move the weights between epochs"
    else:
        assert callback.gif_path is None and not (tmp_path / "frames" / "attention.gif").exists()
