"""``AttentionLayer`` against the float64 NumPy reference (tests/support/reference.py).

Every built-in scorer x mask x pooling, with and without padding, self-attention and
[query, value, key] inputs, in float32, float64 and the 16-bit mixed policies; plus the numerical
contracts of docs/guarantees.md, each test named after its case id: exact zeros (N1), fp16
overflow and mixed policies (N6), poison behind the padding (N4), masked maxima (N8), gradients
(N9), Keras mask propagation (M1) and jit parity (D2). tests/test_reliability.py has the rest.

Sizes are distinct everywhere (B=3, T=7, D=5; cross: Tq=4, Tk=6, Dv=3) so swapped axes fail.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support import reference as R
from support.autodiff import value_and_grads
from support.cases import (
    MASKS,
    POOLINGS,
    SCORERS,
    TK,
    TQ,
    B,
    D,
    T,
    cross_inputs,
    inputs_for,
    lengths_mask,
    make_layer,
    no_warnings,
    paddings_for,
    randomize,
    run,
    self_inputs,
    spec_of,
)
from support.compare import TOLERANCES, assert_close, numpy

from attnkit import AttentionLayer


def check_against_reference(layer, inputs, mask, dtype="float32", scale=1.0):
    """Compare with the reference and check the exact-zero and sum-to-one contracts."""
    out, weights = run(layer, inputs, mask)
    ref_out, ref_weights, allowed = R.layer_reference(layer, inputs, mask, return_allowed=True)
    assert out.shape == ref_out.shape and weights.shape == ref_weights.shape
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    assert_close(out, ref_out, dtype, scale)
    assert_close(weights, ref_weights, dtype, scale)
    visible = allowed.any(axis=-1)
    # rows that see a key sum to one; masked entries are exactly zero
    np.testing.assert_allclose(
        weights.sum(-1)[visible],
        1.0,
        rtol=0,
        atol=1e-6 if dtype in ("float32", "float64") else TOLERANCES[dtype][1],
    )
    assert (weights[~allowed] == 0).all(), "a masked entry got a non-zero weight"
    # rows (seq) or samples (many-to-one) that see nothing output exactly zero
    assert (out[~visible] == 0).all(), "a row with no visible key has a non-zero output"
    assert (weights[~visible] == 0).all()
    return out, weights


def collect(failures: list, label: str, fn, *args, **kwargs):
    """Run one sub-case; record its failure instead of stopping at the first."""
    try:
        fn(*args, **kwargs)
    except AssertionError as error:
        failures.append(f"--- {label}:\n{error}")


# -- float32: every scorer x mask x pooling --------------------------------------------------------
@pytest.mark.parametrize("mode", ["self", "cross"])
@pytest.mark.parametrize("pooling", list(POOLINGS))
@pytest.mark.parametrize("scorer", list(SCORERS))
def test_matches_reference_float32(scorer, pooling, mode):
    """All six masks x (unpadded + padded variants) for one scorer, pooling and input kind."""
    inputs = inputs_for(mode)
    failures: list[str] = []
    for mask_name in MASKS:
        spec = spec_of(scorer, mask_name, pooling)
        layer = make_layer(spec, inputs)
        for pad_name, mask in paddings_for(mode).items():
            collect(
                failures, f"{spec} {mode} {pad_name}", check_against_reference, layer, inputs, mask
            )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("spec", ["dense+gate", "dense(use_bias=false)+gate"])
def test_dense_gate_2d(spec):
    """2-D input (B, D): ``x * softmax(x W + b)`` over the D features."""
    x = np.random.default_rng(3).uniform(-2, 2, (B, D)).astype("float32")
    layer = make_layer(spec, x)
    out, weights = run(layer, x)
    ref_out, ref_weights = R.layer_reference(layer, x)
    assert out.shape == (B, D) and weights.shape == (B, D)
    assert_close(out, ref_out)
    assert_close(weights, ref_weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "spec", ["dense+gate", "dense+gate(shared=true)", "dense(use_bias=false)+gate(shared=true)"]
)
def test_dense_gate_3d(spec):
    """3-D input (B, T, D): per feature a softmax over time (or their mean if shared)."""
    x = self_inputs(4) * 2
    layer = make_layer(spec, x)
    out, weights = run(layer, x)
    ref_out, ref_weights = R.layer_reference(layer, x)
    assert out.shape == (B, T, D) and weights.shape == (B, T, D)
    assert_close(out, ref_out)
    assert_close(weights, ref_weights)
    # each feature's distribution over time sums to one
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    if "shared" in spec:
        np.testing.assert_array_equal(weights, np.broadcast_to(weights[:, :, :1], weights.shape))
    else:
        assert not np.allclose(weights, np.broadcast_to(weights[:, :, :1], weights.shape))


# -- float64 policy --------------------------------------------------------------------------------
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="float64 is computed in float32 on jax/torch (Keras result_type; keras#23704)",
)
@pytest.mark.parametrize("scorer", list(SCORERS))
def test_float64_policy_matches_reference(scorer):
    """``dtype="float64"``: every pooling, masks none and local5+causal, padded; to 1e-10."""
    failures: list[str] = []
    for mode in ("self", "cross"):
        inputs = inputs_for(mode, seed=5, dtype="float64")
        for pooling in POOLINGS:
            for mask_name in ("none", "local5+causal"):
                spec = spec_of(scorer, mask_name, pooling)
                layer = make_layer(spec, inputs, dtype="float64")
                assert all(v.dtype == "float64" for v in layer.weights)
                for pad_name, mask in list(paddings_for(mode).items())[:3]:
                    out, _ = layer(inputs, mask=mask)
                    assert keras.backend.standardize_dtype(out.dtype) == "float64"
                    collect(
                        failures,
                        f"{spec} {mode} {pad_name}",
                        check_against_reference,
                        layer,
                        inputs,
                        mask,
                        "float64",
                        100.0,
                    )  # 1e-12 * 100 = 1e-10
    assert not failures, "\n".join(failures)


# -- 16-bit mixed policies ---------------------------------------------------------------------
def representable(x, policy: str) -> np.ndarray:
    """Round x to values the 16-bit compute dtype holds exactly (the cast is then lossless)."""
    x = np.asarray(x, dtype=np.float32)
    if policy == "mixed_float16":
        return x.astype(np.float16).astype(np.float32)
    bits = x.view(np.uint32) & np.uint32(0xFFFF0000)  # truncate the mantissa to bfloat16's
    return bits.view(np.float32)


@pytest.mark.parametrize("scorer", list(SCORERS))
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_n6_mixed_policy_matches_reference(policy, scorer):
    """Outputs finite, fully masked rows exactly 0, within the policy's tolerance of float64."""
    keras.config.set_dtype_policy(policy)
    compute = policy.split("_")[1]
    failures: list[str] = []
    for mode in ("self", "cross"):
        inputs = inputs_for(mode, seed=6)
        inputs = (
            [representable(x, policy) for x in inputs]
            if mode == "cross"
            else representable(inputs, policy)
        )
        for pooling in ("seq", "last_u6", "weighted"):
            for mask_name in ("none", "local5+causal"):
                spec = spec_of(scorer, mask_name, pooling)
                layer = make_layer(spec, inputs)
                assert layer.compute_dtype == compute
                assert all(v.dtype == "float32" for v in layer.weights)
                for pad_name, mask in list(paddings_for(mode).items())[:3]:
                    out, _ = layer(inputs, mask=mask)
                    assert keras.backend.standardize_dtype(out.dtype) == compute
                    collect(
                        failures,
                        f"{policy} {spec} {mode} {pad_name}",
                        check_against_reference,
                        layer,
                        inputs,
                        mask,
                        policy,
                    )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "spec", ["dot", "dot+causal", "dot+last", "general+local5", "dot+weighted"]
)
def test_n6_fp16_huge_scores_stay_finite(spec):
    """N6: q = k = 40 * ones, d = 64, so q.k = 102400 > 65504 (fp16 max): scores in float32."""
    keras.config.set_dtype_policy("mixed_float16")
    x = np.full((2, 6, 64), 40.0, dtype="float32")
    layer = AttentionLayer(spec, return_attention=True)
    layer(x)
    for v in layer.weights:
        name = v.path.rsplit("/", 1)[-1]
        if name == "scorer_w":  # W = I: the same huge scores through q^T W k
            v.assign(np.eye(64, dtype="float32"))
        if name == "pooling_query":  # a query as large as the inputs
            v.assign(np.full((64,), 40.0, dtype="float32"))
    out, weights = run(layer, x)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    ref_out, ref_weights = R.layer_reference(layer, x)
    assert_close(out, ref_out, "mixed_float16")
    assert_close(weights, ref_weights, "mixed_float16")
    np.testing.assert_array_equal(out, 40.0)  # every value is 40: so is any average of them


# -- N1: rows with nothing visible ------------------------------------------------------------
@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_n1_rows_without_visible_keys_are_exactly_zero(pooling):
    """All keys padded, padded queries, and a padded last step behind local1: outputs == 0."""
    failures: list[str] = []
    q, v, k = cross_inputs(7)
    q_mask = lengths_mask([4, 2, 0], TQ)
    v_mask = lengths_mask([0, 0, 6], TK)  # samples 0, 1: no key at all; sample 2: no query
    for scorer in SCORERS:
        layer = make_layer(spec_of(scorer, "local5", pooling), [q, v, k])
        out, weights = run(layer, [q, v, k], [q_mask, v_mask])
        if not ((out == 0).all() and (weights == 0).all()):
            failures.append(f"{layer.spec}: output or weights not exactly zero")
    # self-attention: local1 with padding -> a padded step sees nothing (its own key is padded)
    x = self_inputs(8)
    mask = lengths_mask([7, 3, 0], T)
    for scorer in SCORERS:
        layer = make_layer(SCORERS[scorer] + "+local1+" + POOLINGS[pooling], x)
        out, weights = run(layer, x, mask)
        ref_out, ref_weights, allowed = R.layer_reference(layer, x, mask, return_allowed=True)
        visible = allowed.any(-1)
        if not ((out[~visible] == 0).all() and (weights[~visible] == 0).all()):
            failures.append(f"{layer.spec}: padded rows not exactly zero")
        if not np.isfinite(out).all():
            failures.append(f"{layer.spec}: non-finite output")
        elif not (
            np.allclose(out, ref_out, rtol=1e-5, atol=1e-5)
            and np.allclose(weights, ref_weights, rtol=1e-5, atol=1e-5)
        ):
            failures.append(f"{layer.spec}: differs from the reference")
    assert not failures, "\n".join(failures)


# -- N4: poison behind the padding mask -------------------------------------------------------
POISONS = {"1e30": 1e30, "-1e30": -1e30, "inf": np.inf, "-inf": -np.inf, "nan": np.nan}
_CACHE: dict = {}


def cached_layer(spec: str, mode: str) -> AttentionLayer:
    """Layers reused across the poison tests (the same weights for every poison)."""
    key = (spec, mode)
    if key not in _CACHE:
        _CACHE[key] = make_layer(spec, inputs_for(mode, seed=9))
    return _CACHE[key]


def forward_and_gradients(layer, inputs, mask):
    """(output, weights, input gradients, weight gradients) of a fixed random loss."""
    listed = isinstance(inputs, list)
    tensors = inputs if listed else [inputs]

    def loss(*ts):
        out, weights = layer(list(ts) if listed else ts[0], mask=mask)
        rng = np.random.default_rng(0)
        value = ops.sum(
            out * ops.convert_to_tensor(rng.normal(size=out.shape).astype("float32"))
        ) + ops.sum(
            weights * ops.convert_to_tensor(rng.normal(size=weights.shape).astype("float32"))
        )
        return value, [out, weights]

    (out, weights), g_t, g_w = value_and_grads(loss, tensors, layer.trainable_weights)
    grads = [np.zeros(t.shape) if g is None else g for t, g in zip(tensors, g_t, strict=False)]
    weight_grads = [
        np.zeros(v.shape) if g is None else g
        for v, g in zip(layer.trainable_weights, g_w, strict=False)
    ]
    return out, weights, grads, weight_grads


def poison_case(layer, mode, poison):
    if mode == "self":
        clean = inputs_for(mode, seed=9)
        mask = lengths_mask([7, 4, 0], T)
        padded = [~mask]
        dirty = np.where(mask[:, :, None], clean, np.float32(poison)).astype("float32")
        clean_list, dirty_list = [clean], [dirty]
    else:
        q, v, k = inputs_for(mode, seed=9)
        q_mask, v_mask = lengths_mask([4, 2, 3], TQ), lengths_mask([6, 3, 0], TK)
        mask = [q_mask, v_mask]
        # poison the padded keys and values; queries are clean
        v_d = np.where(v_mask[:, :, None], v, np.float32(poison)).astype("float32")
        k_d = np.where(v_mask[:, :, None], k, np.float32(poison)).astype("float32")
        clean_list, dirty_list = [q, v, k], [q, v_d, k_d]
        padded = [np.zeros((B, TQ), bool), ~v_mask, ~v_mask]
    args = (lambda xs: xs[0]) if mode == "self" else (lambda xs: xs)
    c_out, c_w, c_g, c_wg = forward_and_gradients(layer, args(clean_list), mask)
    d_out, d_w, d_g, d_wg = forward_and_gradients(layer, args(dirty_list), mask)
    problems = []
    if not np.array_equal(d_out, c_out):
        problems.append("output changed by the values behind the mask")
    if not np.array_equal(d_w, c_w):
        problems.append("attention weights changed by the values behind the mask")
    for i, (gc, gd, pad) in enumerate(zip(c_g, d_g, padded, strict=False)):
        if not np.isfinite(gd).all():
            where = "padded" if np.isfinite(gd[~pad]).all() else "valid (and maybe padded)"
            problems.append(f"non-finite gradient w.r.t. input {i} at {where} positions")
        elif not (gd[pad] == 0).all():
            problems.append(f"non-zero gradient at padded positions of input {i}")
        if np.isfinite(gd[~pad]).all() and not np.array_equal(gd[~pad], gc[~pad]):
            problems.append(f"gradient w.r.t. input {i} changed at valid positions")
    for v, gc, gd in zip(layer.trainable_weights, c_wg, d_wg, strict=False):
        name = v.path.rsplit("/", 1)[-1]
        if not np.isfinite(gd).all():
            problems.append(f"non-finite gradient w.r.t. weight {name}")
        elif not np.array_equal(gd, gc):
            problems.append(f"gradient w.r.t. weight {name} changed")
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("poison", list(POISONS))
@pytest.mark.parametrize("mode", ["self", "cross"])
def test_n4_poison_behind_padding_changes_nothing(mode, poison):
    """N4: every scorer x (seq, last(units=6), weighted) with local5; bit-identical outputs,
    finite gradients, exactly zero at the padded positions and unchanged elsewhere."""
    failures: list[str] = []
    for scorer in SCORERS:
        for pooling in ("seq", "last_u6", "weighted"):
            layer = cached_layer(spec_of(scorer, "local5", pooling), mode)
            collect(
                failures,
                f"{layer.spec} {mode} poison={poison}",
                poison_case,
                layer,
                mode,
                POISONS[poison],
            )
    assert not failures, "\n".join(failures)


# -- N8: a masked key holding the row's largest score ---------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        "dot+causal",
        "dot(scale=sqrt)+local4",
        "general+causal3",
        "gaussian+causal",
        "additive(units=8)+local5+causal",
    ],
)
def test_n8_masked_key_with_largest_score_changes_nothing(spec):
    """Key 5 is masked for every query (Tq=4, causal/local windows end before it). Making its
    score the row maximum by far must not change any output, weight or the sum to one."""
    q, v, k = cross_inputs(10)
    q = np.abs(q)  # positive queries: a key along their mean scores high against every one
    layer = make_layer(spec, [q, v, k])
    out, weights = run(layer, [q, v, k])
    k_big = k.copy()
    if "gaussian" in spec:
        k_big[:, 5] = q[:, 3]  # distance 0 to the last query: the largest possible score
    elif "additive" in spec:
        # the key that maximises w_a . tanh(.) : saturate each unit in the sign of w_a
        w = R.layer_weights(layer)
        target = np.sign(w["scorer_w_a"][:, 0]) * 20.0
        k_big[:, 5] = np.linalg.lstsq(w["scorer_w_k"].T, target, rcond=None)[0]
    else:
        k_big[:, 5] = 1e4 * q.mean(axis=1)  # q.k of order 1e4 against O(1) for the others
        if "general" in spec:
            w = R.layer_weights(layer)["scorer_w"]
            k_big[:, 5] = 1e4 * np.linalg.solve(w, q.mean(axis=1).T).T
    raw = R.scores_for(layer.resolved.scorer, R.layer_weights(layer), q, k_big)
    # precondition: key 5 holds the maximum of row 3 (at least) in every sample
    assert (raw[:, 3].argmax(-1) == 5).all() and (raw.argmax(-1) == 5).mean() >= 0.5
    out_big, weights_big = run(layer, [q, v, k_big])
    np.testing.assert_array_equal(out_big, out)
    np.testing.assert_array_equal(weights_big, weights)
    assert (weights_big[..., 5] == 0).all()
    np.testing.assert_allclose(weights_big.sum(-1), 1.0, atol=1e-6)
    ref_out, ref_weights = R.layer_reference(layer, [q, v, k_big])
    assert_close(out_big, ref_out)
    assert_close(weights_big, ref_weights)


# -- M1: Keras mask propagation ----------------------------------------------------------------
class MaskProbe(keras.layers.Layer):
    """Outputs the Keras mask it receives (as floats), or -1 per sample when it gets none."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.zeros((ops.shape(inputs)[0], 1)) - 1.0
        return ops.cast(mask, "float32")

    def compute_mask(self, inputs, mask=None):
        return None


@pytest.mark.parametrize(
    "spec",
    [
        "additive+local5",
        "dot(scale=sqrt)+causal",
        "bahdanau+causal3+last(units=6)",
        "general+weighted",
        "gaussian+last",
    ],
)
def test_m1_embedding_mask_zero_propagates(spec):
    """Embedding(mask_zero=True) -> AttentionLayer: no warning (Keras warns about layers that
    drop a mask), the same numbers as an explicit mask, padded keys get exactly zero weight
    (keras-self-attention#41), seq output carries the mask, many-to-one output carries none."""
    ids = np.random.default_rng(11).integers(1, 20, (B, T)).astype("int32")
    ids[1, 4:] = 0
    ids[2, :] = 0
    valid = ids != 0
    with no_warnings():
        tokens = keras.Input((None,), dtype="int32")
        embedding = keras.layers.Embedding(20, D, mask_zero=True)
        layer = AttentionLayer(spec, return_attention=True)
        assert layer.supports_masking
        out, weights = layer(embedding(tokens))
        probe = MaskProbe()(out)
        model = keras.Model(tokens, [out, weights, probe])
        randomize(layer, 12)
        m_out, m_weights, m_probe = (numpy(t) for t in model(ids))

    hidden = numpy(embedding(ids)).astype("float32")
    e_out, e_weights = run(layer, hidden, valid)
    np.testing.assert_allclose(m_out, e_out, rtol=0, atol=1e-7)
    np.testing.assert_allclose(m_weights, e_weights, rtol=0, atol=1e-7)
    ref_out, ref_weights = R.layer_reference(layer, hidden, valid)
    assert_close(m_out, ref_out)
    assert_close(m_weights, ref_weights)
    key_axis_valid = valid[:, None, :] if m_weights.ndim == 3 else valid
    assert (np.broadcast_to(~key_axis_valid, m_weights.shape) & (m_weights != 0)).sum() == 0
    if layer.resolved.pooling.many_to_one:
        np.testing.assert_array_equal(m_probe, -1.0)  # no mask after a many-to-one output
        assert (m_out[2] == 0).all()
    else:
        np.testing.assert_array_equal(m_probe, valid.astype("float64"))
        assert (m_out[~valid] == 0).all()


# -- D2: jit -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        "additive+local5+causal",
        "dot(scale=learned)+causal3+last(units=6)",
        "gaussian+local4+weighted",
        "general(use_bias=true)+local5",
        "bahdanau+causal+last",
    ],
)
def test_d2_jit_compiled_model_matches_eager(spec):
    x = self_inputs(13)
    mask = lengths_mask([7, 4, 0], T)
    x_in = keras.Input((T, D))
    m_in = keras.Input((T,), dtype="bool")
    layer = AttentionLayer(spec, return_attention=True)
    model = keras.Model([x_in, m_in], layer(x_in, mask=m_in))
    randomize(layer, 14)
    model.compile(jit_compile=True)
    jit_out, jit_weights = model.predict([x, mask], verbose=0)
    eager_out, eager_weights = run(layer, x, mask)
    np.testing.assert_allclose(jit_out, eager_out, rtol=0, atol=1e-5)
    np.testing.assert_allclose(jit_weights, eager_weights, rtol=0, atol=1e-5)
    padded_rows = ~mask if eager_out.ndim == 3 else ~mask.any(-1)
    assert (jit_out[padded_rows] == 0).all() and (jit_weights[padded_rows] == 0).all()


def test_jit_compiled_gate_matches_eager():
    x = self_inputs(15)
    x_in = keras.Input((T, D))
    layer = AttentionLayer("dense+gate(shared=true)", return_attention=True)
    model = keras.Model(x_in, layer(x_in))
    randomize(layer, 16)
    model.compile(jit_compile=True)
    jit_out, jit_weights = model.predict(x, verbose=0)
    eager_out, eager_weights = run(layer, x)
    np.testing.assert_allclose(jit_out, eager_out, rtol=0, atol=1e-5)
    np.testing.assert_allclose(jit_weights, eager_weights, rtol=0, atol=1e-5)


# -- N9: every trainable weight gets a gradient ---------------------------------------------------
GRADIENT_SPECS = (
    [
        spec_of(s, "local5+causal", "seq")
        for s in SCORERS
        if s not in ("dot", "dot_sqrt", "dot_0.5", "gaussian_fixed", "concat_noscale")
    ]
    + [spec_of(s, "causal3", "weighted") for s in SCORERS]
    + [
        "additive+last(units=6)",
        "bahdanau+causal3+last(units=6)",
        "gaussian+last(units=6)",
        "dot+local4+last(units=6)",
        "general(use_bias=true)+local4+last",
    ]
)
#: Scalars added to every score of a row: softmax cancels them, so their gradient is 0 in exact
#: arithmetic (they matter only with an attention_activation).
SHIFT_INVARIANT = {"scorer_b_a", "scorer_b"}


def weight_gradients(layer, x, mask):
    rng = np.random.default_rng(17)

    def loss(t):
        out, weights = layer(t, mask=mask)
        value = ops.sum(out * ops.convert_to_tensor(rng.normal(size=out.shape).astype("float32")))
        value += ops.sum(
            weights * ops.convert_to_tensor(rng.normal(size=weights.shape).astype("float32"))
        )
        return value, []

    _, _, grads = value_and_grads(loss, [x], layer.trainable_weights)
    return {
        v.path.rsplit("/", 1)[-1]: g for v, g in zip(layer.trainable_weights, grads, strict=False)
    }


@pytest.mark.parametrize("spec", GRADIENT_SPECS)
def test_n9_every_weight_gets_a_finite_nonzero_gradient(spec):
    x = self_inputs(18)
    mask = lengths_mask([7, 5, 0], T)
    layer = make_layer(spec, x)
    assert layer.trainable_weights
    grads = weight_gradients(layer, x, mask)
    for name, g in grads.items():
        assert g is not None, f"{name}: no gradient"
        g = numpy(g)
        assert np.isfinite(g).all(), f"{name}: non-finite gradient"
        if name in SHIFT_INVARIANT and layer.resolved.scorer.name in ("additive", "general"):
            # softmax(s + b) == softmax(s): the gradient is 0 up to float32 round-off
            assert np.abs(g).max() <= 1e-5, f"{name}: a shift of every score must not matter"
        else:
            assert np.abs(g).max() > 0, f"{name}: zero gradient"
    if any(name in SHIFT_INVARIANT for name in grads):
        # with a non-linear attention_activation the score bias does matter
        sig = AttentionLayer(spec, return_attention=True, attention_activation="sigmoid")
        sig(x)
        randomize(sig, 1)
        for name, g in weight_gradients(sig, x, mask).items():
            g = numpy(g)
            assert np.isfinite(g).all() and np.abs(g).max() > 1e-6, f"{name} (sigmoid)"


@pytest.mark.parametrize("spec", ["dense+gate", "dense+gate(shared=true)"])
@pytest.mark.parametrize("rank", [2, 3])
def test_gate_weights_get_gradients(spec, rank):
    x = self_inputs(19) if rank == 3 else self_inputs(19)[:, 0, :]
    layer = make_layer(spec, x)

    def loss(t):
        out, _ = layer(t)
        coefficients = np.random.default_rng(20).normal(size=out.shape).astype("float32")
        return ops.sum(out * ops.convert_to_tensor(coefficients)), []

    _, _, grads = value_and_grads(loss, [x], layer.trainable_weights)
    for v, g in zip(layer.trainable_weights, grads, strict=False):
        assert g is not None and np.isfinite(numpy(g)).all() and np.abs(numpy(g)).max() > 0, v.path
