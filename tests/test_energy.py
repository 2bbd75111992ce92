"""``window_tanh_energy``, the banded offset pass of ``additive`` and ``bahdanau`` with a
hand-written gradient, against a float64 NumPy loop over its formula
``e[b, i, o] = sum_u w[u] tanh(q'[b, i, u] + k'[b, i + o, u])``: values, each of the three
gradients, under a compiled step, and the scorers' ``window()`` against their own ``pair()``."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support.autodiff import value_and_grads
from support.compare import assert_close

import attnkit
from attnkit.scorers import Additive, Bahdanau
from attnkit.scorers._tanh_energy import recomputed, window_tanh_energy


def reference(q, k, w, width):
    steps = q.shape[1]
    return np.stack(
        [np.sum(np.tanh(q + k[:, o : o + steps]) * w, axis=-1) for o in range(width)], axis=-1
    )


def reference_grads(q, k, w, width, upstream):
    """d sum(e * R): through t = tanh(q_i + k_i+o), dt = R[b, i, o] w (1 - t^2) to both
    features, R[b, i, o] t to w."""
    steps = q.shape[1]
    g_q, g_k, g_w = np.zeros_like(q), np.zeros_like(k), np.zeros_like(w)
    for o in range(width):
        t = np.tanh(q + k[:, o : o + steps])
        r = upstream[..., o : o + 1]
        d = r * w * (1 - t * t)
        g_q += d
        g_k[:, o : o + steps] += d
        g_w += np.sum(r * t, axis=(0, 1))
    return g_q, g_k, g_w


def _inputs(steps, width, units=6, seed=0):
    rng = np.random.RandomState(seed)
    q = rng.normal(scale=0.8, size=(2, steps, units))
    k = rng.normal(scale=0.8, size=(2, steps + width - 1, units))
    w = rng.normal(size=(units,))
    upstream = rng.normal(size=(2, steps, width))
    return q, k, w, upstream


CASES = [(1, 1), (5, 3), (16, 15), (37, 8), (40, 31)]


@pytest.mark.parametrize("energy", [recomputed, window_tanh_energy], ids=lambda f: f.__name__)
@pytest.mark.parametrize("steps, width", CASES)
def test_values_match_the_formula(steps, width, energy):
    q, k, w, _ = _inputs(steps, width)
    got = energy(*(ops.convert_to_tensor(t, "float32") for t in (q, k, w)), width)
    assert tuple(ops.shape(got)) == (2, steps, width)
    assert_close(got, reference(q, k, w, width), "float32", scale=2)


@pytest.mark.parametrize("energy", [recomputed, window_tanh_energy], ids=lambda f: f.__name__)
@pytest.mark.parametrize("steps, width", CASES)
def test_gradients_match_the_formula(steps, width, energy):
    """The hand-written gradient (``recomputed``, what compiled passes take) and the one that
    ``window_tanh_energy`` takes here, the backend's own op by op (on JAX, under tracing, the
    hand-written one)."""
    q, k, w, upstream = _inputs(steps, width, seed=1)
    r = ops.convert_to_tensor(upstream, "float32")

    def loss(q_t, k_t, w_t):
        return ops.sum(energy(q_t, k_t, w_t, width) * r), []

    _, grads, _ = value_and_grads(loss, [t.astype("float32") for t in (q, k, w)], [])
    for got, expected in zip(grads, reference_grads(q, k, w, width, upstream), strict=True):
        assert_close(got, expected, "float32", scale=10)


@pytest.mark.parametrize(
    "scorer",
    [Additive(units=5), Additive(units=4, use_attention_bias=False), Bahdanau(units=3)],
    ids=repr,
)
def test_window_is_pair_per_offset_in_value_and_gradient(scorer, monkeypatch):
    """The scorers' ``window()``, made to take the hand-written gradient as a compiled pass
    would, against the default one: the stacked ``pair()`` the backend differentiates."""
    monkeypatch.setattr("attnkit.scorers._tanh_energy.compiling", lambda tensor=None: True)
    width, steps = 7, 12
    layer = keras.layers.Layer()
    params = scorer.build(layer, 4, 4)
    rng = np.random.RandomState(2)
    for value in params.values():
        value.assign(rng.normal(size=value.shape).astype("float32"))
    x = rng.normal(size=(3, steps + width - 1, 4)).astype("float32")
    upstream = ops.convert_to_tensor(rng.normal(size=(3, steps, width)).astype("float32"))

    def scores(window):
        def loss(x_t):
            q_feat, k_feat = scorer.project(params, x_t[:, :steps], x_t)
            return ops.sum(window(params, q_feat, k_feat, width) * upstream), []

        return value_and_grads(loss, [x], list(params.values()))

    default = scores(lambda *a: attnkit.Scorer.window(scorer, *a))
    own = scores(scorer.window)
    for got, expected in zip(own[1] + own[2], default[1] + default[2], strict=True):
        assert_close(got, expected, "float32", scale=10)


def test_a_compiled_training_step_matches_the_dense_plan():
    """Inside a step compiled as a whole (JAX's jit, TensorFlow's jit_compile) the banded plan's
    additive layer learns what the dense plan learns."""
    x = np.random.RandomState(3).normal(size=(4, 40, 8)).astype("float32")
    y = np.random.RandomState(4).normal(size=(4, 1)).astype("float32")
    weights = None
    losses = {}
    for plan in ("dense", "banded"):
        inputs = keras.Input((40, 8))
        hidden = attnkit.AttentionLayer("additive+local5", plan=plan)(inputs)
        out = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(hidden))
        model = keras.Model(inputs, out)
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        jit = keras.backend.backend() != "torch"
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit)
        losses[plan] = [float(model.train_on_batch(x, y)) for _ in range(3)]
        losses[plan + " weights"] = model.get_weights()
    np.testing.assert_allclose(losses["banded"], losses["dense"], rtol=1e-4, atol=1e-5)
    for got, expected in zip(losses["banded weights"], losses["dense weights"], strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
