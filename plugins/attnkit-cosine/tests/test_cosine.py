"""The cosine scorer: its formula against a float64 NumPy reference, its parameter, zero vectors,
and discovery through the ``attnkit`` entry point of the installed distribution."""

from __future__ import annotations

import importlib.metadata
import math
import os

import attrs
import keras
import numpy as np
import pytest
from attnkit_cosine import EPS, Cosine
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops

import attnkit

SPEC = "cosine(temperature=0.5)+causal"


# -- float64 NumPy reference ----------------------------------------------------------------------
def reference_scores(q: np.ndarray, k: np.ndarray, temperature: float) -> np.ndarray:
    """s_ij = q_i . k_j / (max(||q_i||, eps) * max(||k_j||, eps)) / temperature, in float64."""
    q, k = q.astype("float64"), k.astype("float64")
    q_norm = np.maximum(np.linalg.norm(q, axis=-1), EPS)[..., :, None]
    k_norm = np.maximum(np.linalg.norm(k, axis=-1), EPS)[..., None, :]
    return (q @ np.swapaxes(k, -1, -2)) / (q_norm * k_norm) / temperature


def reference_softmax(scores: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Softmax over the allowed keys; a row with none gets zeros."""
    allowed = np.broadcast_to(allowed, scores.shape)
    peak = np.where(allowed, scores, -np.inf).max(-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    exp = np.where(allowed, np.exp(np.where(allowed, scores, 0.0) - peak), 0.0)
    total = exp.sum(-1, keepdims=True)
    return exp / np.where(total > 0, total, 1.0)


def causal_allowed(tq: int, tk: int) -> np.ndarray:
    allowed = np.zeros((tq, tk), bool)
    for i in range(tq):
        for j in range(tk):
            allowed[i, j] = j <= i
    return allowed


def data(seed: int = 0, batch: int = 3, steps: int = 6, features: int = 5):
    """x in [-2, 2] and a padding mask: sample 1 padded from step 4 on."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(-2, 2, (batch, steps, features)).astype("float32")
    mask = np.ones((batch, steps), bool)
    mask[1, 4:] = False
    return x, mask


def to_numpy(tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(tensor))


# -- the formula ----------------------------------------------------------------------------------
def test_known_values():
    """q = e1 against e1, e2, -e1, 3*e1 + 4*e2: cosines 1, 0, -1, 0.6; temperature 0.5 doubles."""
    q = np.array([[[1.0, 0.0]]], "float32")
    k = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [3.0, 4.0]]], "float32")
    scores = to_numpy(Cosine(temperature=0.5).score({}, q, k))
    np.testing.assert_allclose(scores, [[[2.0, 0.0, -2.0, 1.2]]], rtol=1e-6, atol=1e-6)


def test_weights_match_the_float64_reference():
    """AttentionLayer(SPEC) weights and outputs, padding included, equal the NumPy reference."""
    x, mask = data()
    layer = attnkit.AttentionLayer(SPEC, return_attention=True)
    output, weights = (to_numpy(t) for t in layer(x, mask=mask))

    x64 = np.where(mask[..., None], x, 0.0).astype("float64")  # padded steps are zeroed first
    allowed = causal_allowed(6, 6)[None] & mask[:, None, :] & mask[:, :, None]
    expected = reference_softmax(reference_scores(x64, x64, 0.5), allowed)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(output, expected @ x64, rtol=1e-5, atol=1e-5)
    assert (weights[~allowed] == 0).all()  # masked keys: exactly zero
    assert (output[1, 4:] == 0).all()  # padded query steps: exactly zero
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, rtol=1e-6)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="float64 is computed in float32 on jax/torch (Keras result_type; keras#23704)",
)
def test_float64_policy_matches_the_reference_to_1e_12():
    keras.config.set_dtype_policy("float64")
    x, mask = data(seed=1)
    layer = attnkit.AttentionLayer(SPEC, return_attention=True)
    _, weights = layer(x.astype("float64"), mask=mask)
    assert keras.backend.standardize_dtype(weights.dtype) == "float64"
    x64 = np.where(mask[..., None], x, 0.0).astype("float64")
    allowed = causal_allowed(6, 6)[None] & mask[:, None, :] & mask[:, :, None]
    expected = reference_softmax(reference_scores(x64, x64, 0.5), allowed)
    np.testing.assert_allclose(to_numpy(weights), expected, rtol=1e-12, atol=1e-12)


def test_cross_attention_with_more_keys_than_queries():
    """[query, value]: Tq=3, Tk=5, causal top-left aligned."""
    rng = np.random.RandomState(2)
    query = rng.normal(size=(2, 3, 4)).astype("float32")
    value = rng.normal(size=(2, 5, 4)).astype("float32")
    layer = attnkit.AttentionLayer(SPEC, return_attention=True)
    _, weights = layer([query, value])
    expected = reference_softmax(reference_scores(query, value, 0.5), causal_allowed(3, 5)[None])
    np.testing.assert_allclose(to_numpy(weights), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="float64 is computed in float32 on jax/torch (Keras result_type; keras#23704)",
)
@settings(max_examples=40, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(
    q=hnp.arrays("float64", (1, 3, 4), elements=st.floats(-100, 100)),
    k=hnp.arrays("float64", (1, 5, 4), elements=st.floats(-100, 100)),
    temperature=st.floats(0.05, 20),
    factor=st.floats(0.01, 100),
)
def test_scores_are_bounded_and_scale_invariant(q, k, temperature, factor):
    """|s| <= 1/temperature; scaling a query by a positive factor leaves its scores unchanged
    (for vectors longer than eps, where the norm is not clamped)."""
    scorer = Cosine(temperature=temperature)
    scores = to_numpy(scorer.score({}, q, k))
    assert np.isfinite(scores).all()
    assert (np.abs(scores) <= (1 + 1e-9) / temperature).all()
    np.testing.assert_allclose(scores, reference_scores(q, k, temperature), rtol=1e-9, atol=1e-9)
    if (np.linalg.norm(q, axis=-1) * min(factor, 1) > 10 * EPS).all():
        scaled = to_numpy(scorer.score({}, q * factor, k))
        np.testing.assert_allclose(scaled, scores, rtol=1e-9, atol=1e-9 / temperature)


# -- zero vectors ---------------------------------------------------------------------------------
def test_zero_vectors_score_zero_not_nan():
    q = np.zeros((1, 2, 3), "float32")
    q[0, 1] = [1.0, 2.0, 2.0]
    k = np.zeros((1, 3, 3), "float32")
    k[0, 0] = [2.0, 0.0, 0.0]
    scores = to_numpy(Cosine().score({}, q, k))
    np.testing.assert_allclose(scores, [[[0, 0, 0], [1 / 3, 0, 0]]], rtol=1e-6, atol=1e-7)


def test_zero_vectors_train_without_nan():
    """Steps that are all zero (not padding) give finite gradients: the norm is clamped as
    sqrt(max(|x|^2, eps^2)), so the square root is never differentiated at 0."""
    inputs = keras.Input((None, 4))
    hidden = keras.layers.Dense(4, use_bias=False, name="project")(inputs)
    attended = attnkit.AttentionLayer("cosine(temperature=0.1)+causal")(hidden)
    pooled = keras.layers.GlobalAveragePooling1D()(attended)
    model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, _ = data(features=4)
    x[:, ::2] = 0.0  # every other step is the zero vector
    y = np.ones((x.shape[0], 1), "float32")
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    for weight in model.weights:
        assert np.isfinite(to_numpy(weight)).all(), weight.path


# -- the parameter --------------------------------------------------------------------------------
def test_defaults_and_tokens():
    assert Cosine().temperature == 1.0
    assert str(Cosine()) == "cosine"
    assert str(Cosine(temperature=0.1)) == "cosine(temperature=0.1)"
    assert [str(c) for c in Cosine.examples()] == ["cosine", "cosine(temperature=0.1)"]
    assert attrs.fields(Cosine).temperature.metadata["doc"]
    assert "cos(q, k)" in Cosine.__doc__


def test_integer_temperature_becomes_float():
    scorer = Cosine(temperature=2)
    assert scorer.temperature == 2.0 and type(scorer.temperature) is float
    assert Cosine(temperature=1) == Cosine()
    assert str(attnkit.resolve("cosine(temperature=1)")) == "cosine"
    assert str(attnkit.resolve("cosine(temperature=2)")) == "cosine(temperature=2.0)"


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.inf, -math.inf, math.nan, True, "x", None])
def test_bad_temperature_is_refused(bad):
    with pytest.raises(ValueError, match="temperature"):
        Cosine(temperature=bad)


@pytest.mark.parametrize("text", ["0", "-1", "true", "none", "sharp", "'1'"])
def test_bad_temperature_in_a_spec_is_a_spec_error(text):
    spec = f"cosine(temperature={text})+causal"
    with pytest.raises(attnkit.SpecParameterError) as info:
        attnkit.registry().resolve(spec)
    assert "temperature" in str(info.value)


def test_cosine_takes_no_shorthand_number():
    with pytest.raises(attnkit.SpecParameterError, match="no number"):
        attnkit.registry().resolve("cosine5")


def test_queries_and_keys_of_different_sizes_are_refused():
    layer = attnkit.AttentionLayer("cosine")
    with pytest.raises(ValueError, match="same size"):
        layer([np.ones((1, 3, 4), "float32"), np.ones((1, 5, 6), "float32")])


# -- discovery ------------------------------------------------------------------------------------
def test_the_entry_point_is_discovered():
    """Resolving through the process-wide registry finds the installed distribution."""
    resolved = attnkit.registry().resolve("causal + cosine(temperature=0.1)")
    assert resolved.scorer == Cosine(temperature=0.1)
    assert type(resolved.scorer) is Cosine
    assert resolved.canonical == "cosine(temperature=0.1)+causal"
    version = importlib.metadata.version("attnkit-cosine")
    assert resolved.plugins == {"cosine": f"attnkit-cosine=={version}"}

    info = attnkit.registry().get("cosine")
    assert info.cls is Cosine
    assert info.kind == "scorer"
    assert info.distribution == "attnkit-cosine"
    assert info.plugin == "cosine"
    assert info.version == version
    assert not info.builtin

    (plugin,) = [p for p in attnkit.registry().plugins() if p.distribution == "attnkit-cosine"]
    assert (plugin.entry_point, plugin.value) == ("cosine", "attnkit_cosine")
    assert plugin.status == "loaded" and plugin.components == ("cosine",)


def test_readme_example_builds_and_runs():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(50, 8, mask_zero=True)(tokens)
    x, weights = attnkit.AttentionLayer("cosine(temperature=0.1)+causal", return_attention=True)(x)
    model = keras.Model(tokens, [x, weights])
    batch = np.array([[3, 7, 9, 0, 0], [1, 2, 3, 4, 5]], "int32")
    out, w = model.predict(batch, verbose=0)
    assert out.shape == (2, 5, 8) and w.shape == (2, 5, 5)
    assert (w[0][:, 3:] == 0).all()  # padding gets no weight
    assert (np.triu(w[1], 1) == 0).all()  # causal
    np.testing.assert_allclose(w[1].sum(-1), 1.0, rtol=1e-5)
