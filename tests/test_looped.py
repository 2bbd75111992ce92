"""The chunked plan's blocks run as loops inside a computation compiled as a whole
(attnkit.plans._blocks): the same numbers and gradients as the dense plan, in training and
inference, the loops really taken, the keys a group pads in still hidden."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
from keras import ops
from support.autodiff import compiled_layer_grads, layer_grads

import attnkit
from attnkit.plans import _blocks as looped
from attnkit.plans import _chunked, _limits

STEPS, FEATURES, BLOCK = 70, 6, 16  # four blocks of 16 queries and a last one of 6
COMPILED = keras.backend.backend() in ("tensorflow", "jax")


pytestmark = pytest.mark.usefixtures("small_chunks")  # blocks of 16 queries


@pytest.fixture
def loops(monkeypatch):
    """The number of blocks each loop ran."""
    ran = []
    original = looped._loop

    def counting(compute, firsts, *rest):
        ran.append(len(firsts))
        return original(compute, firsts, *rest)

    monkeypatch.setattr(looped, "_loop", counting)
    return ran


def _data():
    rng = np.random.RandomState(5)
    x = rng.uniform(-1.5, 1.5, (3, STEPS, FEATURES)).astype("float32")
    mask = np.ones((3, STEPS), bool)
    mask[1, 41:] = False
    mask[2] = False
    return x, mask


def _pair(spec):
    dense = attnkit.AttentionLayer(spec, plan="dense")
    chunked = attnkit.AttentionLayer(spec, plan="chunked")
    for layer in (dense, chunked):
        layer.build((None, STEPS, FEATURES))
    for target, source in zip(chunked.weights, dense.weights, strict=True):
        target.assign(ops.convert_to_numpy(source))
    return dense, chunked


class TestGroups:
    """looped.groups(): which blocks share a loop, and the key span they share."""

    @staticmethod
    def spans(his, los=None, block=BLOCK, last=None):
        los = los or [0] * len(his)
        pairs = enumerate(zip(los, his, strict=True))
        out = [(i * block, (i + 1) * block, lo, hi) for i, (lo, hi) in pairs]
        if last is not None:
            start = len(his) * block
            out.append((start, start + last[0], last[1], last[2]))
        return out

    def test_one_span_is_one_loop(self):
        spans = self.spans([64] * 4)
        assert looped.groups(spans, BLOCK) == [(spans, 64)]

    def test_causal_spans_are_padded_to_the_widest_of_each_group(self, monkeypatch):
        monkeypatch.setattr(_limits, "GROUPS", 4)
        spans = self.spans([16 * (i + 1) for i in range(8)])
        got = looped.groups(spans, BLOCK)
        assert [len(members) for members, _ in got] == [2, 2, 2, 2]
        assert [width for _, width in got] == [32, 64, 96, 128]
        assert [m for members, _ in got for m in members] == spans

    def test_a_window_clipped_at_the_start_joins_the_others(self, monkeypatch):
        spans = self.spans([21, 37, 53, 69], los=[0, 11, 27, 43])
        assert looped.groups(spans, BLOCK) == [(spans[:1], 21), (spans[1:], 26)]
        monkeypatch.setattr(_limits, "GROUPS", 2)
        assert looped.groups(spans, BLOCK) == [(spans, 26)]

    def test_a_short_last_block_and_a_block_with_no_key_stand_alone(self):
        spans = self.spans([64, 64], last=(6, 0, 64))
        spans.insert(1, (16, 32, 5, 5))  # sees no key
        got = looped.groups(spans, BLOCK)
        assert got == [([spans[0]], 64), ([spans[1]], 0), ([spans[2]], 64), ([spans[3]], 64)]


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize(
    "spec",
    ["additive", "gaussian+causal", "dot+local5", "general(use_bias=true)+causal3", "bahdanau"],
)
def test_loops_give_the_dense_plans_numbers(spec, groups, loops, monkeypatch):
    monkeypatch.setattr(_limits, "GROUPS", groups)
    dense, chunked = _pair(spec)
    x, mask = _data()
    expected, expected_grads = layer_grads(dense, [x], mask)
    got, grads = compiled_layer_grads(chunked, [x], mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    assert (got[2] == 0).all() and (got[1, 41:] == 0).all()
    for g_dense, g_chunked in zip(expected_grads, grads, strict=True):
        assert np.isfinite(g_chunked).all()
        np.testing.assert_allclose(g_chunked, g_dense, rtol=1e-4, atol=1e-5)
    if COMPILED:  # the four blocks of 16: two loops where causal's spans differ, else one
        assert loops == ([2, 2] if spec.endswith("+causal") and groups == 2 else [4])
    else:
        assert loops == []


def test_dropout_keeps_the_loops_and_the_rematerialisation(loops, monkeypatch):
    """Each block draws its dropout mask from one seed per call (attnkit.plans._dropout), so
    dropout does not unroll the blocks: compiled they run in loops, op by op each block is
    rematerialised (tests/test_dropout.py checks the gradients against NumPy)."""
    rematerialised = []
    original = _chunked.block_call
    monkeypatch.setattr(
        _chunked, "block_call", lambda *a, **k: rematerialised.append(1) or original(*a, **k)
    )
    layer = attnkit.AttentionLayer("additive", plan="chunked", dropout=0.3, seed=2)
    x, mask = _data()
    layer.build(x.shape)
    out, grads = compiled_layer_grads(layer, [x], mask)
    assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads)
    assert (out[2] == 0).all() and (out[1, 41:] == 0).all()
    if COMPILED:
        assert loops == [4] and rematerialised == []
    else:
        assert loops == [] and rematerialised == [1]


def _compiled_inference(layer, x, mask):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        call = tf.function(lambda t, m: layer(t, mask=m, training=False), jit_compile=True)
        return ops.convert_to_numpy(call(tf.constant(x), tf.constant(mask)))
    if backend == "jax":
        import jax

        values = [w.value for w in layer.weights]
        out = jax.jit(lambda v, t: layer.stateless_call(v, [], t, mask=mask)[0])(values, x)
        return ops.convert_to_numpy(out)
    return ops.convert_to_numpy(layer(x, mask=mask))


@pytest.mark.parametrize("spec", ["additive", "gaussian+causal", "dot+local5"])
def test_compiled_inference_runs_in_loops(spec, loops, monkeypatch):
    """Unrolled, XLA merged the blocks back into one computation over every pair (JAX's
    additive forward at T=4096 asked for 64 GiB); in loops it cannot."""
    monkeypatch.setattr(_limits, "GROUPS", 2)
    dense, chunked = _pair(spec)
    x, mask = _data()
    got = _compiled_inference(chunked, x, mask)
    np.testing.assert_allclose(got, ops.convert_to_numpy(dense(x, mask=mask)), rtol=1e-5, atol=2e-6)
    assert (got[2] == 0).all() and (got[1, 41:] == 0).all()
    if COMPILED:
        assert loops == ([2, 2] if spec.endswith("+causal") else [4])
    else:
        assert loops == []


@pytest.mark.skipif(not COMPILED, reason="PyTorch compiles no step as a whole: no loops")
def test_keys_padded_into_a_block_stay_hidden(loops, monkeypatch):
    """Under causal a group gives each block its widest block's keys: the first block sees
    keys 16..63 it never scores. A NaN value there must not reach its rows (0 x NaN)."""
    monkeypatch.setattr(_limits, "GROUPS", 1)
    layer = attnkit.AttentionLayer("dot+causal", plan="chunked")
    x, _ = _data()
    value = x.copy()
    value[:, 20] = np.nan
    layer.build([x.shape, value.shape])
    out, _ = compiled_layer_grads(layer, [x, value], None)
    assert loops == [4]
    assert np.isfinite(out[:, :BLOCK]).all()
    # A row that sees the NaN is NaN, as on every plan: the loop hid nothing it should not.
    assert np.isnan(out[:, 20:]).all()


def test_keras_compiled_training_takes_the_loops(loops):
    """Keras' own training step, compiled as a whole (jit_compile=True on TensorFlow, jax.jit),
    runs the loops and gives the dense plan's loss, for batches of two sizes (2, then 1)."""
    x, _ = _data()
    y = np.ones((3, 1), "float32")
    losses, weights = [], None
    for plan in ("dense", "chunked"):
        inputs = keras.Input((STEPS, FEATURES))
        layer = attnkit.AttentionLayer("additive", plan=plan)
        pooled = keras.layers.GlobalAveragePooling1D()(layer(inputs))
        model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones")(pooled))
        if weights is not None:
            layer.set_weights(weights)
        weights = layer.get_weights()
        model.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=COMPILED)
        history = model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
        losses.append(history.history["loss"][0])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    if COMPILED:  # one loop of the four blocks of 16, traced once per batch size
        assert loops and set(loops) == {4}
    else:
        assert loops == []


@pytest.mark.parametrize("spec", ["dot+causal", "general", "additive+causal"])
@pytest.mark.parametrize("budget", ["kept", "recomputed"])
@pytest.mark.parametrize(
    "grads_of",
    [functools.partial(layer_grads, training=True), compiled_layer_grads],
    ids=["eager", "compiled"],
)
def test_plain_products_keep_their_blocks_within_the_budget(spec, budget, grads_of, monkeypatch):
    """A plain product's blocks are kept for the backward pass while they score at most
    REMAT_ABOVE pairs per sample, and recomputed past it; a pairwise scorer's always are.
    Either way the gradients are the dense plan's."""
    if budget == "recomputed":
        monkeypatch.setattr(_limits, "REMAT_ABOVE", STEPS * STEPS // 4)
    calls = []
    for module in (_chunked, looped):
        original = module.block_call

        def spy(*args, _original=original, **kwargs):
            calls.append(kwargs.get("remat", True))
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "block_call", spy)
    dense, chunked = _pair(spec)
    x, mask = _data()
    expected = layer_grads(dense, [x], mask)
    out, grads = grads_of(chunked, [x], mask)
    pairwise = spec.startswith("additive")
    assert calls and set(calls) == {pairwise or budget == "recomputed"}
    np.testing.assert_allclose(out, expected[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
