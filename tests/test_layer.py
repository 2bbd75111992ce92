"""AttentionLayer as a Keras citizen: config, saving, masks, dropout, regulariser, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import attnkit

#: One spec per built-in component, each with non-default parameters somewhere.
BUILTIN_SPECS = [
    "dot",
    "dot(scale=sqrt)+causal",
    "dot(scale=learned)+local5",
    "general(use_bias=true)+causal3",
    "additive+local15",
    "additive(units=8, use_additive_bias=false)+causal15",
    "bahdanau(units=6)+last(units=4)",
    "general+last",
    "gaussian",
    "gaussian(sigma=2.0)+local4+causal",
    "dot+weighted",
    "additive+weighted",
    "concat(use_scale=false)+causal",
]
#: The attention block needs a fixed number of steps (its dense scorer is T x T).
GATE_SPECS = ["dense+gate", "dense(use_bias=false)+gate(shared=true)"]


#: Multi-head layers saved and loaded with the built-ins: per-head scorer weights, grouped keys,
#: every projection option, a many-to-one pooling.
HEADS_SPECS = [
    ("additive+local3", {"num_heads": 2, "key_dim": 3}),
    (
        "dot(scale=sqrt)+causal",
        {
            "num_heads": 4,
            "key_dim": 2,
            "num_key_value_heads": 2,
            "value_dim": 3,
            "output_shape": 5,
            "use_bias": False,
        },
    ),
    ("bahdanau+last(units=4)", {"num_heads": 2, "key_dim": 3}),
]


def _model(spec: str, return_attention: bool = False, **options) -> keras.Model:
    tokens = keras.Input((11 if "gate" in spec else None,), dtype="int32")
    hidden = keras.layers.Embedding(30, 8, mask_zero=True)(tokens)
    out = attnkit.AttentionLayer(spec, return_attention=return_attention, name="attn", **options)(
        hidden
    )
    return keras.Model(tokens, out)


def _tokens(seed: int = 0) -> np.ndarray:
    x = np.random.RandomState(seed).randint(1, 30, (4, 11)).astype("int32")
    x[1, 7:] = 0
    x[2, 3:] = 0
    return x


def test_the_specs_cover_every_builtin():
    """BUILTIN_SPECS and GATE_SPECS name every built-in component (no mask is ``full``, no
    pooling ``seq``): the fresh-process test below stands for the conformance check
    ``check_save_load_fresh_process`` on the built-ins."""
    named = {"full", "seq"}
    for spec in BUILTIN_SPECS + GATE_SPECS:
        resolved = attnkit.resolve(spec)
        named |= {c.name for c in (resolved.scorer, *resolved.masks, resolved.pooling)}
    builtins = {c.name for c in attnkit.registry().components() if c.builtin}
    assert builtins <= named, builtins - named


@pytest.mark.slow
def test_save_and_load_in_a_fresh_process(tmp_path):
    """Every built-in spec, and multi-head and grouped-query layers: .keras saved here loads in
    a new process (safe_mode, no custom objects, only `import attnkit`) and predicts
    bit-identical outputs."""
    x = _tokens()
    np.save(tmp_path / "x.npy", x)
    specs = [(spec, {}) for spec in BUILTIN_SPECS + GATE_SPECS] + HEADS_SPECS
    for i, (spec, heads) in enumerate(specs):
        model = _model(spec, dropout=0.2, seed=7, attention_activation="tanh", **heads)
        model.save(tmp_path / f"m{i}.keras")
        np.save(tmp_path / f"y{i}.npy", model.predict(x, verbose=0))
    script = textwrap.dedent(
        f"""
        import os, sys, json
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, keras, attnkit
        x = np.load({str(tmp_path / "x.npy")!r})
        out = {{}}
        for i in range({len(specs)}):
            model = keras.models.load_model({str(tmp_path)!r} + f"/m{{i}}.keras", safe_mode=True)
            y = model.predict(x, verbose=0)
            expected = np.load({str(tmp_path)!r} + f"/y{{i}}.npy")
            layer = model.get_layer("attn")
            heads = None if layer.heads is None else layer.heads.config()
            out[i] = [layer.spec, bool(np.array_equal(y, expected)), heads]
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for i, (spec, heads) in enumerate(specs):
        canonical, identical, loaded_heads = results[str(i)]
        assert canonical == attnkit.resolve(spec).canonical
        assert identical, f"{spec} {heads}: outputs differ after loading in a fresh process"
        if heads:
            assert {k: loaded_heads[k] for k in heads} == heads
        else:
            assert loaded_heads is None


@pytest.mark.parametrize("spec", BUILTIN_SPECS + GATE_SPECS)
def test_config_round_trip(spec):
    layer = attnkit.AttentionLayer(
        spec,
        return_attention=True,
        dropout=0.25,
        seed=3,
        attention_activation="sigmoid",
        attention_regularizer_weight=0.5,
    )
    config = layer.get_config()
    assert config["spec"] == attnkit.resolve(spec).canonical
    json.dumps(config)  # plain data only
    clone = attnkit.AttentionLayer.from_config(config)
    assert clone.get_config() == config
    assert clone.resolved == layer.resolved
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "attnkit>AttentionLayer"
    again = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert again.get_config() == config


def test_missing_plugin_names_distribution_and_fix():
    config = attnkit.AttentionLayer("dot").get_config()
    config["spec"] = "cosine_sim(temperature=5)+causal"
    config["plugins"] = {"cosine_sim": "attnkit-cosine==1.2.0"}
    with pytest.raises(attnkit.MissingPluginError) as info:
        attnkit.AttentionLayer.from_config(config)
    message = str(info.value)
    assert "attnkit-cosine" in message and "1.2.0" in message
    assert "pip install 'attnkit-cosine>=1.2.0'" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("spec", BUILTIN_SPECS)
def test_weights_only_created_in_build(spec):
    layer = attnkit.AttentionLayer(spec)
    layer.build((None, None, 8))
    names = [w.path for w in layer.weights]
    x = np.random.RandomState(0).randn(2, 5, 8).astype("float32")
    layer(x)
    layer(x[:, :3])
    assert [w.path for w in layer.weights] == names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "policy", ["float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"]
)
@pytest.mark.parametrize(
    "spec",
    [
        "dot",
        "general+causal",
        "additive+local3",
        "gaussian",
        "bahdanau+last(units=3)",
        "dot+weighted",
        "concat+causal",
    ],
)
def test_n2_fully_masked_rows_are_zero_in_every_policy(policy, spec):
    """N2: a sample with every key padded, negative scores (value = -10|v|), every policy: zero
    weights and output, finite elsewhere, rows that see a key sum to 1."""
    keras.config.set_dtype_policy(policy)
    layer = attnkit.AttentionLayer(spec, return_attention=True)
    rng = np.random.RandomState(0)
    query = rng.randn(3, 5, 4).astype("float32")
    value = -10 * np.abs(rng.randn(3, 6, 4)).astype("float32")  # negative scores (N2)
    value_mask = np.ones((3, 6), bool)
    value_mask[1] = False  # sample 1 sees no key at all
    out, weights = layer([query, value], mask=[None, value_mask])
    out, weights = ops.convert_to_numpy(out), ops.convert_to_numpy(weights)
    assert layer.compute_dtype == ("float32" if policy == "float32" else policy.split("_")[-1])
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    assert (out[1] == 0).all() and (weights[1] == 0).all()
    sums = weights[[0, 2]].astype("float64").sum(-1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-2)


def test_dropout_is_seeded_training_only_and_validated():
    x = np.random.RandomState(0).randn(2, 6, 4).astype("float32")
    a = attnkit.AttentionLayer("dot", dropout=0.5, seed=11, return_attention=True)
    b = attnkit.AttentionLayer("dot", dropout=0.5, seed=11, return_attention=True)
    (_out_a, w_a), (_out_b, w_b) = a(x, training=True), b(x, training=True)
    np.testing.assert_array_equal(ops.convert_to_numpy(w_a), ops.convert_to_numpy(w_b))
    assert (ops.convert_to_numpy(w_a) == 0).any()
    plain = attnkit.AttentionLayer("dot", return_attention=True)
    np.testing.assert_allclose(
        ops.convert_to_numpy(a(x, training=False)[0]),
        ops.convert_to_numpy(plain(x)[0]),
        rtol=1e-6,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="dropout"):
        attnkit.AttentionLayer("dot", dropout=1.0)


def test_regularizer_excludes_padded_rows():
    """lambda * sum_b ||(A A^T - I) * V||^2 / B, with V dropping pairs touching a padded row."""
    rng = np.random.RandomState(1)
    x = rng.randn(3, 6, 4).astype("float32")
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False
    layer = attnkit.AttentionLayer(
        "additive+local3", return_attention=True, attention_regularizer_weight=0.3
    )
    _, weights = layer(x, mask=mask)
    a = ops.convert_to_numpy(weights).astype("float64")
    gram = a @ a.transpose(0, 2, 1) - np.eye(6)
    valid = mask[:, :, None] & mask[:, None, :]
    expected = 0.3 * np.sum(np.where(valid, gram, 0.0) ** 2) / 3
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(ops.convert_to_numpy(layer.losses[0])), expected, rtol=1e-5)
    unmasked = 0.3 * np.sum(gram**2) / 3
    assert abs(unmasked - expected) > 1e-3  # the exclusion is not vacuous


def test_attention_activation_applies_before_softmax():
    x = np.random.RandomState(2).randn(2, 5, 4).astype("float32")
    plain = attnkit.AttentionLayer("dot", return_attention=True)
    sig = attnkit.AttentionLayer("dot", return_attention=True, attention_activation="sigmoid")
    scores = np.einsum("btd,bsd->bts", x, x)
    expected = 1 / (1 + np.exp(-scores))
    expected = np.exp(expected) / np.exp(expected).sum(-1, keepdims=True)
    np.testing.assert_allclose(ops.convert_to_numpy(sig(x)[1]), expected, rtol=1e-5, atol=1e-6)
    assert sig.get_config()["attention_activation"] == "sigmoid"
    assert plain.get_config()["attention_activation"] is None


def test_mask_propagation_and_return_attention_masks():
    seq = attnkit.AttentionLayer("dot", return_attention=True)
    mask = np.array([[1, 1, 0]], bool)
    assert seq.compute_mask(None, mask)[0] is mask and seq.compute_mask(None, mask)[1] is None
    last = attnkit.AttentionLayer("dot+last")
    assert last.compute_mask(None, mask) is None
    both = attnkit.AttentionLayer("dot")
    assert both.compute_mask(None, [mask, None]) is mask


def test_m1_symbolic_model_without_warnings_and_output_mask():
    """Embedding(mask_zero) -> layer -> a mask-consuming layer: no warning, mask carried."""
    seen = {}

    class Probe(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.supports_masking = True

        def call(self, inputs, mask=None):
            seen["mask"] = mask
            return inputs

    tokens = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(30, 8, mask_zero=True)(tokens)
    out = Probe()(attnkit.AttentionLayer("additive+causal")(hidden))
    model = keras.Model(tokens, out)
    x = _tokens()
    model(x)
    np.testing.assert_array_equal(ops.convert_to_numpy(seen["mask"]), x != 0)


class TestBadInput:
    def test_wrong_rank(self):
        with pytest.raises(attnkit.InputShapeError, match="rank 3"):
            attnkit.AttentionLayer("dot")(np.zeros((2, 4), "float32"))

    def test_list_of_four(self):
        x = np.zeros((2, 3, 4), "float32")
        with pytest.raises(attnkit.InputShapeError, match="list of 4"):
            attnkit.AttentionLayer("dot")([x, x, x, x])

    def test_m2_mask_shape(self):
        """A wrong (B, T) shape, and the 3-D masks other layers take, raise MaskShapeError
        quoting the expected and received shapes. Deliberate deviation: (B, Tq, Tv) and
        (1, Tq, Tv) masks are refused; only (B, T) padding masks exist, and structural masks
        are spec tokens (causal, local<w>), so one mask cannot mean two things."""
        x = np.zeros((2, 3, 7), "float32")
        v = np.zeros((2, 5, 7), "float32")
        with pytest.raises(attnkit.MaskShapeError, match=r"\(2, 3\).*\(2, 5\)"):
            attnkit.AttentionLayer("dot")(x, mask=np.ones((2, 5), bool))
        for mask in (np.ones((2, 3, 5), bool), np.ones((1, 3, 5), bool)):
            with pytest.raises(attnkit.MaskShapeError, match=r"must have shape.*received"):
                attnkit.AttentionLayer("dot")([x, v], mask=mask)
            with pytest.raises(attnkit.MaskShapeError, match=r"must have shape.*received"):
                attnkit.AttentionLayer("dot")([x, v], mask=[None, mask])

    def test_dot_needs_equal_sizes(self):
        q, v = np.zeros((2, 3, 4), "float32"), np.zeros((2, 5, 6), "float32")
        with pytest.raises(attnkit.ComponentError, match="general"):
            attnkit.AttentionLayer("dot")([q, v])

    def test_bad_spec_is_a_spec_error(self):
        with pytest.raises(attnkit.SpecError, match="did you mean 'additive'"):
            attnkit.AttentionLayer("addtive")

    @pytest.mark.parametrize("mode", ["self", "cross"])
    def test_m2_mask_dtypes_agree(self, mode):
        """bool, int 0/1, float 0/1 and noisy floats (0.4 drops, 0.6 keeps: Keras' > 0.5 rule)
        give the same numbers; distinct sizes B=2, Tq=3, Tv=5, D=7 so swapped axes fail."""
        rng = np.random.RandomState(3)
        q, v = rng.randn(2, 3, 7).astype("float32"), rng.randn(2, 5, 7).astype("float32")
        q_mask = np.array([[1, 1, 0], [1, 1, 1]])
        v_mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]])
        noisy = {1: 0.6, 0: 0.4}
        layer = attnkit.AttentionLayer("additive", return_attention=True)
        outs = []
        for cast in (
            lambda m: m.astype(bool),
            lambda m: m.astype("int32"),
            lambda m: m.astype("float32"),
            lambda m: np.vectorize(noisy.get)(m).astype("float32"),
        ):
            if mode == "self":
                out, weights = layer(v, mask=cast(v_mask))
            else:
                out, weights = layer([q, v], mask=[cast(q_mask), cast(v_mask)])
            outs.append((ops.convert_to_numpy(out), ops.convert_to_numpy(weights)))
        for out, weights in outs[1:]:
            np.testing.assert_array_equal(out, outs[0][0])
            np.testing.assert_array_equal(weights, outs[0][1])
        assert (outs[0][1][..., ~v_mask.astype(bool)[0]][0] == 0).all()

    def test_m2_explicit_mask_wins_over_the_keras_mask(self):
        """In a model, ``mask=`` overrides the mask Embedding(mask_zero=True) attaches."""
        tokens = np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]], "int32")
        explicit = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
        tokens_in = keras.Input((5,), dtype="int32")
        explicit_in = keras.Input((5,), dtype="bool")
        embedding = keras.layers.Embedding(10, 7, mask_zero=True)
        layer = attnkit.AttentionLayer("dot", return_attention=True)
        implicit = keras.Model(tokens_in, layer(embedding(tokens_in))[1])
        overridden = keras.Model(
            [tokens_in, explicit_in], layer(embedding(tokens_in), mask=explicit_in)[1]
        )
        plain = ops.convert_to_numpy(embedding(tokens))  # the same vectors, no mask attached
        _, expected = layer(plain, mask=explicit)
        _, by_keras = layer(plain, mask=tokens != 0)
        got = ops.convert_to_numpy(overridden([tokens, explicit]))
        np.testing.assert_array_equal(got, ops.convert_to_numpy(expected))
        np.testing.assert_array_equal(
            ops.convert_to_numpy(implicit(tokens)), ops.convert_to_numpy(by_keras)
        )
        assert not np.array_equal(got, ops.convert_to_numpy(by_keras))
