"""Dropout on the attention weights in the chunked plan (attnkit.plans._dropout): each block
draws its own mask from one seed per call, statelessly (attnkit.backend.stateless_dropout), so a
block run in a loop or recomputed for the backward pass drops what its forward pass dropped.
Gradients are checked against a NumPy transcription of the dropped softmax's gradient, with the
mask the layer drew."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support.autodiff import compiled_layer_grads, layer_grads

import attnkit
from attnkit import backend

BATCH, STEPS, FEATURES, BLOCK, RATE, SEED = 2, 48, 4, 16, 0.4, 23


pytestmark = pytest.mark.usefixtures("small_chunks")  # blocks of 16 queries


def _layer(spec):
    return attnkit.AttentionLayer(spec, plan="chunked", dropout=RATE, seed=SEED)


def _drawn_weights(spec, compiled=False):
    """The dropped weights (B, T, T) a fresh layer with the test's seed draws on its first
    training call, ``compiled`` or not (TensorFlow's stateless generators draw other masks
    compiled with XLA than op by op): a zero query gives every visible key the same score, so
    the weights are uniform over them, and one-hot values make the context the weights."""
    query = np.zeros((BATCH, STEPS, FEATURES), "float32")
    key = np.random.RandomState(1).randn(BATCH, STEPS, FEATURES).astype("float32")
    value = np.broadcast_to(np.eye(STEPS, dtype="float32"), (BATCH, STEPS, STEPS))
    out, _ = _grads(compiled, _layer(spec), [query, value, key])
    return out


def _grads(compiled, layer, inputs):
    if compiled:
        return compiled_layer_grads(layer, inputs, None)
    return layer_grads(layer, inputs, None, training=True)


def _visible(spec):
    if "causal" in spec:
        return np.tril(np.ones((STEPS, STEPS), bool))
    return np.ones((STEPS, STEPS), bool)


class TestStatelessDropout:
    def draw(self, salt, seed=5):
        weights = ops.ones((3, 16, 40))
        seed = keras.random.SeedGenerator(seed).next()
        salt = ops.convert_to_tensor(np.int32(salt))
        return ops.convert_to_numpy(backend.stateless_dropout(weights, RATE, seed, salt))

    def test_a_seed_and_salt_repeat_their_mask(self):
        np.testing.assert_array_equal(self.draw(16), self.draw(16))

    def test_another_salt_or_seed_draws_another_mask(self):
        assert (self.draw(0) != self.draw(16)).any()
        assert (self.draw(0) != self.draw(0, seed=6)).any()

    def test_drops_the_rate_and_scales_the_rest(self):
        drawn = self.draw(0)
        np.testing.assert_allclose(np.unique(drawn), [0.0, 1 / (1 - RATE)], rtol=1e-6)
        # 1920 Bernoulli draws: the dropped fraction is within 5 standard deviations.
        assert abs((drawn == 0).mean() - RATE) < 5 * np.sqrt(RATE * (1 - RATE) / drawn.size)


@pytest.mark.parametrize("spec", ["dot", "dot+causal"])
def test_each_block_draws_its_own_mask_at_the_rate(spec):
    weights = _drawn_weights(spec)
    visible = np.broadcast_to(_visible(spec), weights.shape)
    kept = weights[visible] > 0
    assert abs((~kept).mean() - RATE) < 5 * np.sqrt(RATE * (1 - RATE) / kept.size)
    assert (weights[~visible] == 0).all()
    uniform = 1 / visible.sum(-1, keepdims=True)  # each row's share before dropout
    expected = np.where(weights > 0, uniform / (1 - RATE), 0)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    masks = weights > 0
    for start in range(BLOCK, STEPS, BLOCK):  # no two blocks share a pattern
        assert (masks[:, start : start + BLOCK, :BLOCK] != masks[:, :BLOCK, :BLOCK]).any()
    assert (masks[0] != masks[1]).any()  # nor two samples


def test_each_call_draws_a_new_mask():
    layer = _layer("dot")
    x = np.random.RandomState(2).randn(BATCH, STEPS, FEATURES).astype("float32")
    first, second = (ops.convert_to_numpy(layer(x, training=True)) for _ in range(2))
    assert not np.allclose(first, second)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x, training=False)),
        ops.convert_to_numpy(attnkit.AttentionLayer("dot", plan="dense")(x)),
        rtol=1e-5,
        atol=1e-6,
    )


def _reference(spec, query, value, key, kept):
    """Output and gradients (query, value, key) of sum(out * c), c = linspace(-1, 1) over the
    features, for out = (softmax(q k^T) * kept / (1 - rate)) v, in float64."""
    q, v, k = (t.astype("float64") for t in (query, value, key))
    scores = np.where(_visible(spec), q @ k.transpose(0, 2, 1), -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    scale = kept / (1 - RATE)
    w = p * scale
    out = w @ v
    c = np.broadcast_to(np.linspace(-1, 1, v.shape[-1]), out.shape)
    d_w = c @ v.transpose(0, 2, 1)
    d_v = w.transpose(0, 2, 1) @ c
    d_p = d_w * scale
    d_s = p * (d_p - (d_p * p).sum(-1, keepdims=True))
    return out, [d_s @ k, d_v, d_s.transpose(0, 2, 1) @ q]


@pytest.mark.parametrize("compiled", [False, True], ids=["op-by-op", "compiled"])
@pytest.mark.parametrize("spec", ["dot", "dot+causal"])
def test_the_backward_pass_drops_what_the_forward_pass_dropped(spec, compiled):
    """Blocks are recomputed in the backward pass (keras.remat) and, compiled, run in loops;
    the gradient is that of the function whose output the forward pass gave."""
    if compiled and keras.backend.backend() == "torch":
        pytest.skip("PyTorch compiles no whole step here: the op-by-op case covers it")
    rng = np.random.RandomState(3)
    query, value, key = (rng.randn(BATCH, STEPS, FEATURES).astype("float32") for _ in range(3))
    kept = _drawn_weights(spec, compiled) > 0
    out, grads = _grads(compiled, _layer(spec), [query, value, key])
    want_out, want_grads = _reference(spec, query, value, key, kept)
    np.testing.assert_allclose(out, want_out, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
