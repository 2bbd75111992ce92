"""``attnkit.scorers._projection.project``, ``x @ w + bias`` per step, against NumPy in value
and in the gradients of all three inputs: the hand-written gradient that compiled passes take
(forced here) and the backend's own, with the weights as Keras variables as scorers pass them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support.autodiff import value_and_grads
from support.compare import assert_close

from attnkit.scorers import _projection as projection


def _weights(dims, units, with_bias, seed):
    rng = np.random.RandomState(seed)
    layer = keras.layers.Layer()
    w = layer.add_weight(shape=(dims, units), initializer="zeros")
    w.assign(rng.normal(size=(dims, units)).astype("float32"))
    if not with_bias:
        return w, None
    bias = layer.add_weight(shape=(units,), initializer="zeros")
    bias.assign(rng.normal(size=(units,)).astype("float32"))
    return w, bias


@pytest.mark.parametrize("by_hand", [True, False], ids=["hand-written", "backend"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("batch, steps, dims, units", [(1, 1, 1, 1), (3, 7, 5, 4), (2, 33, 8, 16)])
def test_value_and_gradients_match_numpy(
    batch, steps, dims, units, with_bias, by_hand, monkeypatch
):
    if by_hand:
        monkeypatch.setattr(projection, "compiling", lambda tensor=None: True)
    rng = np.random.RandomState(batch + steps)
    x = rng.normal(size=(batch, steps, dims)).astype("float32")
    upstream = rng.normal(size=(batch, steps, units)).astype("float32")
    w, bias = _weights(dims, units, with_bias, seed=steps)
    variables = [w] + ([bias] if with_bias else [])

    def loss(x_t):
        y = projection.project(x_t, w, bias)
        return ops.sum(y * ops.convert_to_tensor(upstream)), [y]

    (y,), (d_x,), d_vars = value_and_grads(loss, [x], variables)
    w_np = np.asarray(w.numpy(), "float64")
    b_np = np.zeros(units) if bias is None else np.asarray(bias.numpy(), "float64")
    flat_x, flat_g = x.reshape(-1, dims).astype("float64"), upstream.reshape(-1, units)
    assert_close(y, x.astype("float64") @ w_np + b_np, "float32", scale=4)
    assert_close(d_x, upstream.astype("float64") @ w_np.T, "float32", scale=4)
    assert_close(d_vars[0], flat_x.T @ flat_g, "float32", scale=8)
    if with_bias:
        assert_close(d_vars[1], flat_g.sum(axis=0), "float32", scale=8)
