"""Multi-head and grouped-query layers: arguments, shapes, training options, configs, explain.

What the heads compute is held elsewhere: to Keras' MultiHeadAttention and GroupQueryAttention
and to a float64 formula in test_parity.py, and, for every component, to the spec run per head
by the conformance suite's ``check_heads`` (tests/test_builtins_conform.py).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from support.compare import assert_close, numpy

import attnkit
from attnkit import AttentionLayer
from attnkit.errors import ArgumentError, ComponentError

B, T, D = 2, 9, 10
DATA = Path(__file__).parent / "data"


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(B, T, D)).astype("float32")


def _mask() -> np.ndarray:
    mask = np.ones((B, T), bool)
    mask[1, 6:] = False
    return mask


# == arguments ===================================================================================
@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"key_dim": 4}, "key_dim is an argument of multi-head attention; pass num_heads"),
        ({"num_key_value_heads": 2}, "pass num_heads too"),
        ({"num_heads": 4}, "num_heads needs key_dim"),
        ({"num_heads": 0, "key_dim": 4}, "num_heads must be a positive integer"),
        ({"num_heads": 2.0, "key_dim": 4}, "num_heads must be a positive integer"),
        ({"num_heads": 2, "key_dim": True}, "key_dim must be a positive integer"),
        ({"num_heads": 6, "key_dim": 4, "num_key_value_heads": 4}, "must be a multiple"),
        ({"num_heads": 2, "key_dim": 4, "output_shape": (3, 4)}, "output_shape must be one size"),
        ({"num_heads": 2, "key_dim": 4, "attention_axes": (1, 2)}, "does not take attention_axes"),
        ({"num_heads": 2, "key_dim": 4, "use_gate": True}, "does not take use_gate"),
        ({"num_heads": 2, "key_dim": 4, "sliding_window": 3}, "'local<2w-1>'"),
        ({"num_heads": 2, "key_dim": 4, "flash_attention": True}, "plan='kernel'"),
    ],
)
def test_bad_head_arguments_are_refused_by_name(kwargs, fragment):
    with pytest.raises(ArgumentError) as caught:
        AttentionLayer("dot", **kwargs)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, attnkit.AttnkitError)


@pytest.mark.parametrize("spec", ["dot+gate", "dense", "dense+causal"])
def test_specs_with_nothing_to_project_per_head_are_refused(spec):
    with pytest.raises(ComponentError, match="use it without num_heads"):
        AttentionLayer(spec, num_heads=2, key_dim=4)


# == shapes ======================================================================================
@pytest.mark.parametrize(
    "spec, output, weights",
    [
        ("additive+local3", (B, T, D), (B, 3, T, T)),
        ("dot+causal", (B, T, D), (B, 3, T, T)),
        ("general+weighted", (B, D), (B, 3, T)),
        ("bahdanau+last(units=5)", (B, D), (B, 3, T)),
    ],
)
def test_outputs_and_weights_have_a_heads_axis(spec, output, weights):
    layer = AttentionLayer(spec, num_heads=3, key_dim=4, return_attention=True)
    out, attention = layer(_x(), mask=_mask())
    assert tuple(out.shape) == output
    assert tuple(attention.shape) == weights
    if len(output) == 3:  # padded query steps output zeros, as without heads
        assert not numpy(out)[1, 6:].any()


@pytest.mark.parametrize("spec", ["dot+causal", "additive+local3", "general+weighted"])
def test_heads_build_on_inputs_of_unknown_length(spec):
    """A functional model over (None, D): the heads fold and unfold with a length known only
    when the model runs (the spec without weights runs once over the heads in the batch)."""
    x = keras.Input((None, D))
    out = AttentionLayer(spec, num_heads=2, key_dim=3)(x)
    model = keras.Model(x, out)
    assert tuple(model(_x()).shape) == ((B, T, D) if len(out.shape) == 3 else (B, D))


@pytest.mark.parametrize(
    "spec, plan", [("dot+causal", "auto"), ("dot+causal", "kernel"), ("additive+local3", "auto")]
)
def test_heads_on_zero_steps_give_empty_outputs(spec, plan):
    layer = AttentionLayer(spec, num_heads=2, key_dim=3, plan=plan, return_attention=True)
    out, weights = layer(np.zeros((B, 0, D), "float32"))
    assert tuple(out.shape) == (B, 0, D) and tuple(weights.shape) == (B, 2, 0, 0)


def test_output_shape_value_dim_and_no_bias_shape_the_projections():
    layer = AttentionLayer(
        "gaussian", num_heads=2, key_dim=3, value_dim=5, output_shape=7, use_bias=False
    )
    assert tuple(layer(_x()).shape) == (B, T, 7)
    shapes = {w.path.rsplit("/", 1)[-1]: tuple(w.shape) for w in layer.weights}
    assert shapes == {
        "scorer_rho": (2,),
        "query_kernel": (D, 2, 3),
        "key_kernel": (D, 2, 3),
        "value_kernel": (D, 2, 5),
        "output_kernel": (2, 5, 7),
    }


def test_each_head_gets_its_own_scorer_weights():
    layer = AttentionLayer("additive(units=32)", num_heads=3, key_dim=4)
    layer.build((None, T, D))
    w_q = numpy(layer._scorer_params["w_q"])
    assert w_q.shape == (3, 4, 32)
    assert not np.allclose(w_q[0], w_q[1]) and not np.allclose(w_q[1], w_q[2])
    # Each head's slice has one head's scale: glorot_normal over its own fans (4, 32), std
    # sqrt(2 / 36) = 0.236, not over the stacked (3, 4, 32)'s fans (12, 96), std 0.136.
    assert 0.19 < w_q.std() < 0.28


def test_a_value_a_component_makes_outside_its_host_is_shared_by_every_head():
    """A plugin written for one head runs unchanged: a weight made through ``layer`` gets a head
    axis, anything else its ``build`` returns is handed to every head as it is."""
    import attrs
    from keras import ops

    from attnkit import Scorer

    @attrs.frozen
    class Shifted(Scorer):
        name = "test_shifted"

        def build(self, layer, query_dim, key_dim):
            return {"w": layer.add_weight("w", (query_dim,)), "shift": ops.ones((key_dim,))}

        def score(self, params, query, key):
            return ops.matmul(query * params["w"], ops.swapaxes(key + params["shift"], 1, 2))

    layer = AttentionLayer(attnkit.Resolved.of(Shifted()), num_heads=3, key_dim=4)
    out = layer(_x())
    assert tuple(out.shape) == (B, T, D)
    assert layer._built.per_head == {"scorer_w"}


# == single-head layers are unchanged ============================================================
def test_a_seeded_initializer_draws_each_head_apart_and_reproducibly():
    from attnkit.hosts import PerHead

    seeded = PerHead(keras.initializers.GlorotUniform(seed=5))
    first, again = numpy(seeded((3, 4, 6))), numpy(seeded((3, 4, 6)))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0], first[1])
    np.testing.assert_array_equal(first[0], numpy(keras.initializers.GlorotUniform(5)((4, 6))))


def test_a_layer_saved_before_heads_existed_loads_and_predicts_the_same():
    """tests/data/single_head.keras was saved by a single-head-only attnkit (TensorFlow):
    additive(units=6)+local3 into general+weighted, over a padded batch."""
    model = keras.models.load_model(DATA / "single_head.keras", safe_mode=True)
    data = np.load(DATA / "single_head.npz")
    assert_close(model.predict(data["tokens"], verbose=0), data["output"])
    for name in ("seq_attention", "pooled_attention"):
        layer = model.get_layer(name)
        assert layer.heads is None and "num_heads" not in layer.get_config()


def test_without_num_heads_the_weights_are_the_single_head_ones():
    layer = AttentionLayer("additive+local3")
    layer.build((None, T, D))
    names = [w.path.rsplit("/", 1)[-1] for w in layer.weights]
    assert names == ["scorer_w_q", "scorer_w_k", "scorer_b_h", "scorer_w_a", "scorer_b_a"]
    assert tuple(layer._scorer_params["w_q"].shape) == (D, 32)


# == training options ============================================================================
def test_the_regulariser_is_summed_over_heads():
    """``lambda * sum_h sum_b ||A_h A_h^T - I||^2 / B`` over the valid query rows."""
    lam = 0.01
    layer = AttentionLayer(
        "additive+local3",
        num_heads=3,
        key_dim=4,
        return_attention=True,
        attention_regularizer_weight=lam,
    )
    mask = _mask()
    _, weights = layer(_x(), mask=mask)
    a = numpy(weights).astype("float64")
    expected = 0.0
    for b in range(B):
        rows = a[b][:, mask[b]][:, :, :]  # (H, valid queries, T)
        gram = rows @ rows.transpose(0, 2, 1)
        expected += ((gram - np.eye(rows.shape[1])) ** 2).sum()
    expected *= lam / B
    assert len(layer.losses) == 3  # one per head
    assert_close(sum(float(numpy(loss)) for loss in layer.losses), expected)


def test_dropout_draws_for_each_head_apart():
    layer = AttentionLayer(
        "dot", num_heads=4, key_dim=4, dropout=0.5, seed=3, return_attention=True
    )
    _, weights = layer(_x(), training=True)
    kept = numpy(weights) > 0
    assert kept.mean() < 0.8  # dropped
    assert not (kept[:, 0] == kept[:, 1]).all()  # heads drop different weights
    inference, _ = layer(_x(), training=False)
    again, _ = layer(_x(), training=False)
    assert_close(numpy(inference), numpy(again))


@pytest.mark.parametrize("spec", ["bahdanau+causal", "general+weighted", "dot+last(units=4)"])
def test_every_weight_gets_a_gradient(spec):
    """``weighted`` asks with its own query per head, so the query gets no projection."""
    from support.autodiff import layer_grads

    layer = AttentionLayer(spec, num_heads=2, key_dim=3, num_key_value_heads=1)
    layer.build((None, T, D))
    _, grads = layer_grads(layer, [_x()], _mask())
    names = {w.path.rsplit("/", 1)[-1] for w in layer.weights}
    assert ("query_kernel" in names) == ("weighted" not in spec)
    assert len(grads) == 1 + len(layer.trainable_weights)
    for grad in grads:
        assert grad is not None and np.isfinite(grad).all() and np.abs(grad).max() > 0


# == config and explain ==========================================================================
def test_config_round_trips_the_heads():
    layer = AttentionLayer(
        "dot+causal", num_heads=4, key_dim=3, num_key_value_heads=2, output_shape=[6]
    )
    config = layer.get_config()
    assert {k: config[k] for k in ("num_heads", "key_dim", "value_dim", "output_shape")} == {
        "num_heads": 4,
        "key_dim": 3,
        "value_dim": 3,
        "output_shape": 6,
    }
    again = AttentionLayer.from_config(config)
    assert again.heads == layer.heads


def test_explain_shows_heads_weights_per_head_and_the_plan(capsys):
    from attnkit.cli import main

    code = main(
        [
            "explain",
            "additive+local15",
            "--heads",
            "8",
            "--key-dim",
            "64",
            "--kv-heads",
            "2",
            "--length",
            "1024",
            "--features",
            "512",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "8 query heads of 64, 2 key/value heads" in text
    assert "grouped-query, 4 query heads per key head" in text
    assert "scorer_w_q     (8, 64, 32)" in text and "(one per head)" in text
    assert "key_kernel     (512, 2, 64)" in text
    assert "per head)" in text and "T=1024    banded" in text
