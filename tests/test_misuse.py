"""Inputs and call patterns beyond everyday use: extreme parameters, features far from zero,
second-order gradients, calls that are wrong, specs at the length limit, odd command-line
arguments. Each test is named after its failure mode's id in docs/guarantees.md."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import attrs
import keras
import numpy as np
import pytest
from keras import ops
from support import reference as R
from support.cases import randomize
from support.compare import assert_close, numpy

import attnkit
from attnkit.errors import (
    InputShapeError,
    MaskShapeError,
    SerializationError,
    SpecParameterError,
    SpecSyntaxError,
    UnknownComponentError,
)
from attnkit.spec import MAX_SPEC_LENGTH, format_value, parse

BACKEND = keras.backend.backend()


def _layer(spec, shape, **options):
    layer = attnkit.AttentionLayer(spec, **options)
    layer.build(shape)
    return layer


def _copy(source, target):
    for t, s in zip(target.weights, source.weights, strict=True):
        t.assign(ops.convert_to_numpy(s))


# == N10: the gaussian distance agrees on every plan, whatever the features' offset ===========
@pytest.mark.parametrize("offset", [30.0, 300.0])
def test_n10_gaussian_distance_does_not_cancel_at_a_common_offset(offset):
    """Features sharing a large offset: every plan agrees with float64 within float32's
    tolerance (the expansion ``||q||^2 + ||k||^2 - 2 q.k`` cancels catastrophically at 300)."""
    rng = np.random.default_rng(1)
    x = (offset + rng.normal(size=(2, 40, 8))).astype("float32")
    q = x.astype("float64")
    distance = ((q[:, :, None, :] - q[:, None, :, :]) ** 2).sum(-1)
    expected, _ = R.attention(-distance / 2.0, R.allowed_local(40, 40, 7)[None], q)
    for plan in ("dense", "banded", "chunked"):
        layer = _layer("gaussian+local7", x.shape, plan=plan)  # sigma starts at 1
        assert_close(layer(x), expected, "float32")


def test_n10_appending_steps_does_not_move_far_outputs():
    """Two steps more switch the automatic plan (dense to banded); outputs far from the appended
    steps stay what they were, to about an ulp."""
    rng = np.random.default_rng(1)
    x = (30.0 + rng.normal(size=(2, 300, 8))).astype("float32")
    layer = _layer("gaussian+local5", (None, None, 8))
    steps = next(t for t in range(8, 300) if layer.choice(x[:, : t + 2]).plan == "banded")
    assert layer.choice(x[:, :steps]).plan == "dense"
    short, long = numpy(layer(x[:, :steps])), numpy(layer(x[:, : steps + 2]))
    np.testing.assert_allclose(long[:, : steps - 5], short[:, : steps - 5], rtol=0, atol=2e-5)


# == N11: second-order gradients on every plan =================================================
def _gradient_penalty_step(layer, x):
    """A WGAN-GP critic step: the gradient, with respect to the layer's weights, of the squared
    norm of the output's gradient with respect to the inputs (plus the output's mean)."""
    weights = layer.trainable_weights
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                out = layer(x, training=True)
                score = tf.reduce_sum(tf.tanh(out))
            grad = inner.gradient(score, x)
            loss = tf.reduce_mean(out) + tf.reduce_sum(tf.square(grad))
        return [g.numpy() for g in outer.gradient(loss, weights)]
    if BACKEND == "jax":
        import jax

        values = [w.value for w in weights]

        def loss(values, x):
            def score(x):
                out, _ = layer.stateless_call(values, [], x, training=True)
                return jax.numpy.sum(jax.numpy.tanh(out)), out

            grad, out = jax.grad(score, has_aux=True)(x)
            return jax.numpy.mean(out) + jax.numpy.sum(jax.numpy.square(grad))

        # One compiled step, as a JAX training step is (the plans see tracers either way).
        return [np.asarray(g) for g in jax.jit(jax.grad(loss))(values, jax.numpy.asarray(x))]
    import torch

    x = torch.tensor(x, requires_grad=True)
    out = layer(x, training=True)
    (grad,) = torch.autograd.grad(torch.tanh(out).sum(), x, create_graph=True)
    loss = out.mean() + grad.square().sum()
    return [g.detach().cpu().numpy() for g in torch.autograd.grad(loss, [w.value for w in weights])]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize(
    "spec, plan",
    [
        ("additive+causal", "chunked"),
        ("bahdanau", "chunked"),
        ("concat+local5", "chunked"),
        ("dot(scale=learned)+causal", "chunked"),
        ("additive+local5", "banded"),
        ("additive(units=8)", "dense"),
    ],
)
def test_n11_second_order_gradients_through_every_plan(spec, plan):
    """A gradient penalty trains through every plan with the dense plan's numbers: the chunked
    plan's recomputed blocks are differentiable twice."""
    x = np.random.default_rng(2).normal(size=(2, 40, 6)).astype("float32")
    dense = _layer(spec, x.shape, plan="dense")
    randomize(dense, seed=3)
    other = _layer(spec, x.shape, plan=plan)
    _copy(dense, other)
    assert other.choice(x, training=True).plan == plan
    expected = _gradient_penalty_step(dense, x)
    got = _gradient_penalty_step(other, x)
    scale = max(1.0, max(np.abs(e).max() for e in expected))
    for g, e in zip(got, expected, strict=True):
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4 * scale)


# == N12: parameters that would overflow are refused ===========================================
@pytest.mark.parametrize("spec", ["dot(scale=1e39)", "dot(scale=1e-40)", "gaussian(sigma=1e-20)"])
def test_n12_parameters_that_overflow_float32_are_refused_with_a_caret(spec):
    with pytest.raises(SpecParameterError) as info:
        attnkit.resolve(spec)
    assert "^" in str(info.value) and "from" in info.value.reason


@pytest.mark.parametrize(
    "spec", ["dot(scale=1e12)", "dot(scale=1e-12)", "gaussian(sigma=1e-6)", "gaussian(sigma=1e6)"]
)
def test_n12_every_accepted_extreme_stays_finite(spec):
    """At the ends of the accepted ranges, unit-normal inputs over 64 features give finite
    outputs on every plan."""
    x = np.random.default_rng(4).normal(size=(2, 300, 64)).astype("float32")
    for plan in ("dense", "banded", "chunked"):
        out = numpy(_layer(spec + "+local9", x.shape, plan=plan)(x))
        assert np.isfinite(out).all(), (spec, plan)


# == M8: any scorer with any mask, at every length =============================================
@pytest.mark.parametrize("steps", [127, 128, 300])
def test_m8_a_positional_scorer_with_a_mask_works_at_every_length(steps):
    """``dense`` scores key positions from its weights: every plan choice keeps it dense, and
    explain says so."""
    x = np.random.default_rng(5).normal(size=(1, steps, steps)).astype("float32")
    layer = _layer("dense+local3", x.shape)
    out = numpy(layer(x))
    assert out.shape == (1, steps, steps) and np.isfinite(out).all()
    assert layer.choice(x).plan == "dense"
    from attnkit.explain import plan_for

    (reason,) = {p["reason"] for p in [plan_for(attnkit.resolve("dense+local3"), steps, steps)]}
    assert "positions" in reason


# == S6: canonical text stays short; what saves loads ==========================================
def test_s6_canonical_floats_are_shortest_and_round_trip():
    assert format_value(1e15) == "1e15" and format_value(0.1) == "0.1"
    assert str(attnkit.resolve("dot(scale=1e12)")) == "dot(scale=1e12)"
    for value in (1e15, 2.0, 1e-7, 123456.789, -3.5e-12):
        assert parse(f"c(v={format_value(value)})").tokens[0].args == (("v", value),)


@attrs.frozen
class _ManyParameters(attnkit.Scorer):
    """A scorer with a dozen float parameters (a plugin's, say), written with 17 digits each."""

    name = "many"
    p01: float = attnkit.param(0.0, doc="")
    p02: float = attnkit.param(0.0, doc="")
    p03: float = attnkit.param(0.0, doc="")
    p04: float = attnkit.param(0.0, doc="")
    p05: float = attnkit.param(0.0, doc="")
    p06: float = attnkit.param(0.0, doc="")
    p07: float = attnkit.param(0.0, doc="")
    p08: float = attnkit.param(0.0, doc="")
    p09: float = attnkit.param(0.0, doc="")
    p10: float = attnkit.param(0.0, doc="")
    p11: float = attnkit.param(0.0, doc="")
    p12: float = attnkit.param(0.0, doc="")

    def score(self, params, query, key):
        return ops.matmul(query, ops.swapaxes(key, -1, -2))


def test_s6_a_spec_too_long_to_load_is_refused_at_save():
    """A layer assembled from instances can hold a canonical spec over the limit; saving it is
    refused with SerializationError instead of writing a file that cannot load."""
    values = {f"p{i:02d}": 0.12345678901234566 + i for i in range(1, 13)}
    layer = attnkit.AttentionLayer(attnkit.Resolved.of(_ManyParameters(**values)))
    assert len(layer.spec) > MAX_SPEC_LENGTH
    layer(np.ones((1, 3, 4), "float32"))  # it runs
    with pytest.raises(SerializationError, match="could not be loaded back"):
        layer.get_config()


# == S7: activation objects ======================================================================
def test_s7_an_activation_keras_cannot_save_is_refused_clearly():
    activation = functools.partial(keras.activations.leaky_relu, negative_slope=0.1)
    layer = attnkit.AttentionLayer("dot", attention_activation=activation)
    out = layer(np.ones((1, 3, 4), "float32"))
    assert out.shape == (1, 3, 4)
    with pytest.raises(SerializationError, match="cannot save attention_activation"):
        layer.get_config()


def test_s7_a_keras_layer_as_activation_saves_and_loads(tmp_path):
    inputs = keras.Input((5, 4))
    layer = attnkit.AttentionLayer("dot", attention_activation=keras.layers.ReLU())
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(6).normal(size=(2, 5, 4)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# == C1-C3: calls that are wrong get an attnkit error naming the problem ======================
def test_c1_self_attention_with_a_list_of_masks_is_a_mask_error():
    layer = attnkit.AttentionLayer("dot", name="c1")
    with pytest.raises(MaskShapeError, match="c1.*one padding mask.*list of 1"):
        layer(np.ones((2, 3, 4), "float32"), mask=[np.ones((2, 3), bool)])


def test_c2_value_and_key_of_different_lengths_are_an_input_error():
    layer = attnkit.AttentionLayer("dot", name="c2")
    q, v, k = (np.ones(s, "float32") for s in ((2, 3, 4), (2, 5, 4), (2, 6, 4)))
    with pytest.raises(
        InputShapeError, match=r"c2.*same number of steps.*\(2, 5, 4\).*\(2, 6, 4\)"
    ):
        layer([q, v, k])
    with pytest.raises(InputShapeError, match="same batch size"):
        layer([q, np.ones((3, 5, 4), "float32")])


def test_c3_a_parsed_spec_with_an_unknown_component_names_it():
    with pytest.raises(UnknownComponentError) as info:
        attnkit.AttentionLayer(attnkit.parse("dot+casual"))
    assert "'casual'" in str(info.value) and "^^^^^^" in str(info.value)
    assert "did you mean 'causal'" in str(info.value)


# == G7, G8: carets anywhere, one rule for numbers ==============================================
@pytest.mark.parametrize("tokens", [0, 8, 16, 17, 21, 28, 35])
def test_g7_a_bad_token_anywhere_gets_its_caret(tokens):
    """A bad token after ``tokens`` good ones (up to column 249 of the 256 allowed): the message
    shows a window of at most 120 columns with the caret under it."""
    spec = ("dot" + "+causal" * tokens + "+Bad" + "+causal" * 40)[:MAX_SPEC_LENGTH]
    with pytest.raises(SpecSyntaxError) as info:
        parse(spec)
    assert info.value.start == spec.index("B")
    shown, caret = str(info.value).splitlines()[1:3]
    assert len(shown) <= 2 + 120
    assert shown[caret.index("^")] == "B", (shown, caret)


@pytest.mark.parametrize("spec", ["additive(units=0032)", "dot(scale=00.5)", "dot(scale=-007)"])
def test_g8_leading_zeros_are_refused_everywhere(spec):
    with pytest.raises(SpecSyntaxError, match="leading zero"):
        parse(spec)
    assert str(parse("dot(scale=0.5)").tokens[0]) == "dot(scale=0.5)"


# == L1, L2: the command line ===================================================================
@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "dot", "--timeout", "nan"],
        ["bench", "dot", "--timeout", "-1"],
        ["bench", "dot", "--warmup", "-5"],
        ["bench", "dot", "--length", "0"],
        ["explain", "dot", "--features", "x"],
        ["check", "--device", "tpu"],
        ["nonsense"],
    ],
)
def test_l1_bad_arguments_exit_2_with_one_line(argv, capsys):
    from attnkit import cli

    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err


def test_l2_explain_reads_weight_shapes_without_allocating_them():
    """Two 2^31 - 1 unit projections would need 1 TiB: explain reads their shapes only."""
    done = subprocess.run(
        [sys.executable, "-m", "attnkit.cli", "explain", "additive(units=2147483647)", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shapes = {w["name"]: w["shape"] for w in json.loads(done.stdout)["weights"]}
    assert shapes["scorer_w_q"] == [64, 2147483647]
