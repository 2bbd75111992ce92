"""``band_matmul`` and ``window_sum``, the banded plan's weighted sum, against a float64
NumPy loop over its formula ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]``: values and
gradients, lengths that are not a multiple of the block, blocks narrower and wider than the
window, lengths unknown when the graph is built, and the shifted products of compiled
inference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support.autodiff import value_and_grads
from support.compare import assert_close

from attnkit.plans import _window_sum as banded
from attnkit.plans._window_sum import band_matmul, window_sum


def reference(w, v, back):
    """c[b, i] = sum_o w[b, i, o] v[b, i - back + o], zero outside 0 <= i - back + o < T."""
    batch, steps, width = w.shape
    out = np.zeros((batch, steps, v.shape[-1]))
    for i in range(steps):
        for o in range(width):
            j = i - back + o
            if 0 <= j < steps:
                out[:, i] += w[:, i, o : o + 1] * v[:, j]
    return out


def reference_grads(w, v, back, upstream):
    """d sum(c * R) / dw[b, i, o] = R[b, i] . v[b, j]; / dv[b, j] = sum over (i, o) reaching j
    of w[b, i, o] R[b, i]; j = i - back + o."""
    batch, steps, width = w.shape
    g_w, g_v = np.zeros_like(w), np.zeros_like(v)
    for i in range(steps):
        for o in range(width):
            j = i - back + o
            if 0 <= j < steps:
                g_w[:, i, o] = np.sum(upstream[:, i] * v[:, j], axis=-1)
                g_v[:, j] += w[:, i, o : o + 1] * upstream[:, i]
    return g_w, g_v


def _inputs(steps, width, features=5, seed=0):
    rng = np.random.RandomState(seed)
    w = rng.uniform(-1, 1, (2, steps, width))
    v = rng.normal(size=(2, steps, features))
    upstream = rng.normal(size=(2, steps, features))
    return w, v, upstream


# (steps, back, ahead, block): T below, at and past a block, not a multiple of it; a window
# wider than a block's half, one as wide as the block, and windows on one side only.
CASES = [
    (1, 0, 0, None),
    (5, 2, 2, None),
    (16, 7, 7, None),
    (37, 14, 0, None),
    (37, 0, 3, None),
    (37, 4, 5, 8),
    (37, 3, 3, 7),
    (50, 15, 16, 32),
    (70, 2, 1, 64),
]


@pytest.mark.parametrize("steps, back, ahead, block", CASES)
def test_values_match_the_formula(steps, back, ahead, block):
    w, v, _ = _inputs(steps, back + ahead + 1)
    got = band_matmul(
        ops.convert_to_tensor(w, "float32"), ops.convert_to_tensor(v, "float32"), back, ahead, block
    )
    assert tuple(ops.shape(got)) == v.shape
    assert_close(got, reference(w, v, back), "float32", scale=2)


@pytest.mark.parametrize("steps, back, ahead, block", CASES[1::2])
def test_gradients_match_the_formula(steps, back, ahead, block):
    w, v, upstream = _inputs(steps, back + ahead + 1, seed=1)
    r = ops.convert_to_tensor(upstream, "float32")

    def loss(w_t, v_t):
        return ops.sum(band_matmul(w_t, v_t, back, ahead, block) * r), []

    _, (g_w, g_v), _ = value_and_grads(loss, [w.astype("float32"), v.astype("float32")], [])
    expected_w, expected_v = reference_grads(w, v, back, upstream)
    assert_close(g_w, expected_w, "float32", scale=5)
    assert_close(g_v, expected_v, "float32", scale=5)


@pytest.mark.skipif(
    keras.backend.backend() == "jax", reason="JAX computes float64 only with JAX_ENABLE_X64 set"
)
@pytest.mark.xfail(
    keras.backend.backend() == "torch",
    reason="Keras on torch computes ops.matmul of float64 in float32 (keras-team/keras#23704)",
    strict=True,
)
def test_float64_is_exact_to_rounding():
    w, v, _ = _inputs(29, 9, seed=2)
    w_t, v_t = ops.convert_to_tensor(w, "float64"), ops.convert_to_tensor(v, "float64")
    got = band_matmul(w_t, v_t, 4, 4)
    assert_close(got, reference(w, v, 4), "float64", scale=10)


def test_a_length_unknown_when_the_graph_is_built():
    weights_in, values_in = keras.Input((None, 7)), keras.Input((None, 3))
    out = keras.layers.Lambda(lambda t: band_matmul(t[0], t[1], 3, 3))([weights_in, values_in])
    model = keras.Model([weights_in, values_in], out)
    for steps in (2, 16, 23):
        w, v, _ = _inputs(steps, 7, features=3, seed=steps)
        got = model.predict([w.astype("float32"), v.astype("float32")], verbose=0)
        assert_close(got, reference(w, v, 3), "float32", scale=2)


@pytest.mark.parametrize("back, ahead", [(3, 2), (7, 7), (0, 4), (11, 0)])
@pytest.mark.parametrize("poison", [np.inf, np.nan])
def test_a_non_finite_value_reaches_only_the_rows_whose_window_holds_it(poison, back, ahead):
    """0 * inf is NaN: a block's matmul would carry it to every row of the block; rows that
    cannot see the value must come out as without it (guarantee N5)."""
    steps, poisoned = 40, 21
    w, v, _ = _inputs(steps, back + ahead + 1, seed=4)
    dirty = v.copy()
    dirty[0, poisoned, 1] = poison
    w_t = ops.convert_to_tensor(w, "float32")
    clean = ops.convert_to_numpy(band_matmul(w_t, ops.convert_to_tensor(v, "float32"), back, ahead))
    got = ops.convert_to_numpy(
        band_matmul(w_t, ops.convert_to_tensor(dirty, "float32"), back, ahead)
    )
    sees = (np.arange(steps) - back <= poisoned) & (poisoned <= np.arange(steps) + ahead)
    np.testing.assert_array_equal(got[1], clean[1])
    np.testing.assert_array_equal(got[0, ~sees], clean[0, ~sees])
    assert np.isnan(got[0, sees, 1]).all()
    np.testing.assert_array_equal(got[0, sees][:, [0, 2, 3, 4]], clean[0, sees][:, [0, 2, 3, 4]])


@pytest.fixture
def compiled_inference(monkeypatch):
    """``window_sum`` as a compiled inference pass runs it: its shifted products."""
    monkeypatch.setattr(banded, "compiling", lambda tensor=None: True)

    def call(w, v, back, ahead):
        return window_sum(w, v, back, ahead, training=False)

    return call


@pytest.mark.parametrize("steps, back, ahead, block", CASES)
def test_shifted_products_match_the_formula(steps, back, ahead, block, compiled_inference):
    w, v, upstream = _inputs(steps, back + ahead + 1, seed=5)
    r = ops.convert_to_tensor(upstream, "float32")

    def loss(w_t, v_t):
        out = compiled_inference(w_t, v_t, back, ahead)
        return ops.sum(out * r), [out]

    (got,), (g_w, g_v), _ = value_and_grads(loss, [w.astype("float32"), v.astype("float32")], [])
    assert_close(got, reference(w, v, back), "float32", scale=2)
    expected_w, expected_v = reference_grads(w, v, back, upstream)
    assert_close(g_w, expected_w, "float32", scale=5)
    assert_close(g_v, expected_v, "float32", scale=5)


@pytest.mark.parametrize("training", [True, False])
def test_window_sum_takes_block_matmuls_to_train_and_op_by_op(training, monkeypatch):
    """Only compiled inference takes the shifted products; a training pass and an op-by-op
    one take ``band_matmul``."""
    calls = []
    monkeypatch.setattr(banded, "band_matmul", lambda *a: calls.append(a) or a[1])
    w, v = (ops.convert_to_tensor(t, "float32") for t in _inputs(9, 3)[:2])
    window_sum(w, v, 1, 1, training=training)
    assert len(calls) == 1
    monkeypatch.setattr(banded, "compiling", lambda tensor=None: True)
    window_sum(w, v, 1, 1, training=training)
    assert len(calls) == 1 + training


@pytest.mark.parametrize("back, ahead", [(3, 2), (0, 4), (11, 0)])
@pytest.mark.parametrize("poison", [np.inf, np.nan])
def test_shifted_products_keep_a_non_finite_value_in_its_windows(
    poison, back, ahead, compiled_inference
):
    """A value meets only the weights of the rows whose window holds it (N5); those rows are
    non-finite in that feature and in no other."""
    steps, poisoned = 40, 21
    w, v, _ = _inputs(steps, back + ahead + 1, seed=6)
    dirty = v.copy()
    dirty[0, poisoned, 1] = poison
    w_t = ops.convert_to_tensor(w, "float32")
    clean = ops.convert_to_numpy(
        compiled_inference(w_t, ops.convert_to_tensor(v, "float32"), back, ahead)
    )
    got = ops.convert_to_numpy(
        compiled_inference(w_t, ops.convert_to_tensor(dirty, "float32"), back, ahead)
    )
    sees = (np.arange(steps) - back <= poisoned) & (poisoned <= np.arange(steps) + ahead)
    np.testing.assert_array_equal(got[1], clean[1])
    np.testing.assert_array_equal(got[0, ~sees], clean[0, ~sees])
    assert not np.isfinite(got[0, sees, 1]).any()
    np.testing.assert_array_equal(got[0, sees][:, [0, 2, 3, 4]], clean[0, sees][:, [0, 2, 3, 4]])
