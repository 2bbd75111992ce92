"""Parity of ``AttentionLayer(spec)`` with the peer layers users switch from.

Peers:

* ``keras.layers.Attention`` (Keras 3.15): ``dot``, ``dot+causal``, ``dot(scale=learned)``
* keras-self-attention 0.51.0 ``SeqSelfAttention``: ``additive(units=8)`` with ``+local15``,
  ``+causal15``, ``+causal``; ``general``, ``general(use_bias=true)`` (weights transplanted)
* keras-self-attention ``SeqWeightedAttention``: ``dot+weighted``
* keras-self-attention ``ScaledDotProductAttention``: ``dot(scale=sqrt)``, ``+causal``
* philipperemy ``attention`` 5.0.0, the real package (called eagerly: its functional-model call
  fails on Keras 3; TensorFlow backend only, it imports ``tensorflow.keras``), and a float64
  NumPy statement of its formula checked against it: ``bahdanau+last(units=U)`` and
  ``general+last(units=U)``, unpadded and padded.

* ``keras.layers.AdditiveAttention(use_scale=...)``: ``concat``, ``concat(use_scale=false)``, with
  and without ``causal`` and padding masks (its score ``s_ij = sum_d g_d tanh(q_id + k_jd)`` has
  no projections; ``additive`` and ``bahdanau`` project q and k first).

All inputs are float32 with distinct sizes (B, T, D, units all differ) from a fixed seed.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from keras_self_attention import (
    ScaledDotProductAttention,
    SeqSelfAttention,
    SeqWeightedAttention,
)
from support.compare import assert_close

from attnkit import AttentionLayer

#: keras-self-attention's SeqSelfAttention / SeqWeightedAttention call tf.keras.backend (K.shape,
#: K.dot): they run only under the TensorFlow backend.
tf_peer = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="keras-self-attention SeqSelfAttention/SeqWeightedAttention need the TensorFlow backend",
)

SEED = 20240611
B, TQ, TV, D, DV = 3, 7, 9, 6, 5  # keras.layers.Attention inputs
T, T_WIDE, UNITS = 9, 20, 8  # SeqSelfAttention: T=20 so that width-15 windows clip
U = 4  # attention package output units


# -- helpers ----------------------------------------------------------------------------------
def _rng(salt: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + salt)


def _normal(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype("float32")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _ak_weights(layer) -> dict:
    """attnkit's weights by short name (``scorer_w_q``, ``pooling_query``, ...)."""
    return {v.path.rsplit("/", 1)[-1]: v for v in layer.weights}


def _randomize(layer, rng, scale=0.5) -> None:
    """Every weight of a peer layer to random values (biases included: none stays zero)."""
    for variable in layer.weights:
        variable.assign(_normal(rng, *variable.shape, scale=scale))


def _lengths_mask(lengths, steps):
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def _allowed_band(kind: str, width: int | None, steps: int) -> np.ndarray:
    """The keys each query may see, written from keras-self-attention's definition (independent
    of attnkit)."""
    i = np.arange(steps)[:, None]
    j = np.arange(steps)[None, :]
    if kind == "full":
        return np.ones((steps, steps), bool)
    if kind == "local":
        lower = i - width // 2
        return (j >= lower) & (j < lower + width)
    if kind == "causal":
        return (j <= i) if width is None else (j <= i) & (j > i - width)
    raise AssertionError(kind)


# == 1. keras.layers.Attention ==================================================================
def _keras_inputs(with_key: bool):
    rng = _rng(1)
    q = _normal(rng, B, TQ, D)
    if with_key:
        v, k = _normal(rng, B, TV, DV), _normal(rng, B, TV, D)
        return [q, v, k]
    return [q, _normal(rng, B, TV, D)]


@pytest.mark.parametrize("with_key", [False, True], ids=["q_v", "q_v_k"])
def test_dot_matches_keras_attention(with_key):
    inputs = _keras_inputs(with_key)
    out_k, w_k = keras.layers.Attention()(inputs, return_attention_scores=True)
    out_a, w_a = AttentionLayer("dot", return_attention=True)(inputs)
    assert tuple(out_a.shape) == (B, TQ, DV if with_key else D)
    assert tuple(w_a.shape) == (B, TQ, TV)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")


@pytest.mark.parametrize("shape", ["self", "rectangular"])
def test_m4_dot_causal_matches_keras_attention_use_causal_mask(shape):
    rng = _rng(2)
    if shape == "self":
        x = _normal(rng, B, T, D)
        inputs = [x, x]
    else:
        inputs = [_normal(rng, B, TQ, D), _normal(rng, B, TV, D)]
    out_k, w_k = keras.layers.Attention()(
        inputs, return_attention_scores=True, use_causal_mask=True
    )
    out_a, w_a = AttentionLayer("dot+causal", return_attention=True)(inputs)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")
    # Top-left causal: key j > query i gets exactly zero weight in both.
    future = np.triu(np.ones(w_k.shape[1:], bool), k=1)
    assert future.any()
    assert np.all(_np(w_a)[:, future] == 0.0)
    assert np.all(_np(w_k)[:, future] == 0.0)


def test_dot_learned_scale_matches_keras_attention_use_scale():
    inputs = _keras_inputs(with_key=True)
    peer = keras.layers.Attention(use_scale=True)
    peer(inputs)  # build
    layer = AttentionLayer("dot(scale=learned)", return_attention=True)
    layer(inputs)
    (scale_k,) = [v for v in peer.weights if v.path.rsplit("/", 1)[-1] == "scale"]
    scale_k.assign(1.7)
    _ak_weights(layer)["scorer_scale"].assign(1.7)
    out_k, w_k = peer(inputs, return_attention_scores=True)
    out_a, w_a = layer(inputs)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")
    # The scale really is used: scale 1 gives different weights.
    _, w_one = AttentionLayer("dot", return_attention=True)(inputs)
    assert not np.allclose(_np(w_one), _np(w_a), atol=1e-3)


@pytest.mark.parametrize("use_scale", [True, False])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_concat_matches_keras_additive_attention(use_scale, causal):
    q, v, k = _keras_inputs(with_key=True)
    q_mask = _lengths_mask([TQ, 5, 3], TQ)
    v_mask = _lengths_mask([TV, 6, 2], TV)
    peer = keras.layers.AdditiveAttention(use_scale=use_scale)
    out_k, w_k = peer(
        [q, v, k], mask=[q_mask, v_mask], return_attention_scores=True, use_causal_mask=causal
    )
    spec = "concat" + ("" if use_scale else "(use_scale=false)") + ("+causal" if causal else "")
    layer = AttentionLayer(spec, return_attention=True)
    layer([q, v, k])
    if use_scale:
        (scale_k,) = [w for w in peer.weights if w.path.rsplit("/", 1)[-1] == "scale"]
        _ak_weights(layer)["scorer_scale"].assign(_np(scale_k))
    out_a, w_a = layer([q, v, k], mask=[q_mask, v_mask])
    rows = _np(q_mask)  # Keras zeroes padded query rows' output but not their weights
    assert_close(_np(out_a), _np(out_k), "float32")
    assert_close(_np(w_a)[rows], _np(w_k)[rows], "float32")
    padded_keys = np.broadcast_to(~v_mask[:, None, :], w_a.shape)
    assert padded_keys.any() and np.all(_np(w_a)[padded_keys] == 0)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_m7_dot_with_padding_masks_matches_keras_attention(causal):
    """Masks where every query row keeps at least one key (Keras' documented precondition)."""
    q, v = _keras_inputs(with_key=False)
    q_mask = _lengths_mask([TQ, 5, 3], TQ)
    v_mask = _lengths_mask([TV, 6, 2], TV)  # key 0 always valid, so causal rows keep one key
    assert (~q_mask).any() and (~v_mask).any()
    out_k, w_k = keras.layers.Attention()(
        [q, v],
        mask=[ops.convert_to_tensor(q_mask), ops.convert_to_tensor(v_mask)],
        return_attention_scores=True,
        use_causal_mask=causal,
    )
    spec = "dot+causal" if causal else "dot"
    out_a, w_a = AttentionLayer(spec, return_attention=True)(
        [q, v], mask=[ops.convert_to_tensor(q_mask), ops.convert_to_tensor(v_mask)]
    )
    out_a, w_a, out_k, w_k = map(_np, (out_a, w_a, out_k, w_k))
    # Valid query rows agree (outputs and weights); padded keys get exactly zero weight.
    assert_close(out_a[q_mask], out_k[q_mask], "float32")
    assert_close(w_a[q_mask], w_k[q_mask], "float32")
    assert np.all(w_a.transpose(0, 2, 1)[~v_mask] == 0.0)
    # Padded query rows: Keras zeroes the output; attnkit zeroes output and weights, exactly.
    assert np.all(out_k[~q_mask] == 0.0)
    assert np.all(out_a[~q_mask] == 0.0)
    assert np.all(w_a[~q_mask] == 0.0)


# == 2. keras-self-attention SeqSelfAttention ===================================================
_ADDITIVE_MAP = {
    "Wt": "scorer_w_q",
    "Wx": "scorer_w_k",
    "bh": "scorer_b_h",
    "Wa": "scorer_w_a",
    "ba": "scorer_b_a",
}
_GENERAL_MAP = {"Wa": "scorer_w"}
_GENERAL_BIAS_MAP = {"Wa": "scorer_w", "ba": "scorer_b"}

# (id, SeqSelfAttention kwargs, attnkit spec, steps, transplant map, mask band for the check)
_SSA_CASES = [
    ("additive", {}, "additive(units=8)", T, _ADDITIVE_MAP, ("full", None)),
    (
        "additive_local15",
        {"attention_width": 15},
        "additive(units=8)+local15",
        T_WIDE,
        _ADDITIVE_MAP,
        ("local", 15),
    ),
    (
        "additive_local4_even",
        {"attention_width": 4},
        "additive(units=8)+local4",
        T,
        _ADDITIVE_MAP,
        ("local", 4),
    ),
    (
        "additive_causal15",
        {"history_only": True, "attention_width": 15},
        "additive(units=8)+causal15",
        T_WIDE,
        _ADDITIVE_MAP,
        ("causal", 15),
    ),
    (
        "additive_causal",
        {"history_only": True},
        "additive(units=8)+causal",
        T_WIDE,
        _ADDITIVE_MAP,
        ("causal", None),
    ),
    # Multiplicative without its bias is exactly 'general'.
    (
        "mul_no_bias",
        {"attention_type": "multiplicative", "use_attention_bias": False},
        "general",
        T,
        _GENERAL_MAP,
        ("full", None),
    ),
    # With a (random, nonzero) b_a it is still 'general': a constant shift cancels in the softmax.
    (
        "mul_bias_cancels",
        {"attention_type": "multiplicative"},
        "general",
        T,
        _GENERAL_MAP,
        ("full", None),
    ),
    (
        "mul_bias",
        {"attention_type": "multiplicative"},
        "general(use_bias=true)",
        T,
        _GENERAL_BIAS_MAP,
        ("full", None),
    ),
    # Under a sigmoid the biases no longer cancel: b_a and b_h are both exercised.
    (
        "additive_sigmoid",
        {"attention_activation": "sigmoid"},
        "additive(units=8)",
        T,
        _ADDITIVE_MAP,
        ("full", None),
    ),
    (
        "additive_sigmoid_causal15",
        {"attention_activation": "sigmoid", "history_only": True, "attention_width": 15},
        "additive(units=8)+causal15",
        T_WIDE,
        _ADDITIVE_MAP,
        ("causal", 15),
    ),
    (
        "mul_bias_sigmoid",
        {"attention_type": "multiplicative", "attention_activation": "sigmoid"},
        "general(use_bias=true)",
        T,
        _GENERAL_BIAS_MAP,
        ("full", None),
    ),
]


def _transplanted_pair(ksa_kwargs, spec, steps, mapping, salt, **layer_kwargs):
    """(x, peer, attnkit layer) with the peer's random weights copied into attnkit's."""
    rng = _rng(salt)
    x = _normal(rng, B, steps, D)
    peer = SeqSelfAttention(units=UNITS, return_attention=True, **ksa_kwargs, **layer_kwargs)
    peer(x)
    _randomize(peer, rng)
    activation = ksa_kwargs.get("attention_activation")
    layer = AttentionLayer(
        spec, return_attention=True, attention_activation=activation, **layer_kwargs
    )
    layer(x)
    mine = _ak_weights(layer)
    assert set(mapping.values()) == set(mine), (spec, sorted(mine))
    for theirs, ours in mapping.items():
        source = getattr(peer, theirs)
        assert tuple(source.shape) == tuple(mine[ours].shape), (theirs, ours)
        assert np.any(_np(source) != 0.0)
        mine[ours].assign(_np(source))
    return x, peer, layer


@tf_peer
@pytest.mark.parametrize(
    "ksa_kwargs, spec, steps, mapping, band",
    [c[1:] for c in _SSA_CASES],
    ids=[c[0] for c in _SSA_CASES],
)
def test_seq_self_attention_matches(ksa_kwargs, spec, steps, mapping, band):
    x, peer, layer = _transplanted_pair(ksa_kwargs, spec, steps, mapping, salt=3)
    out_k, w_k = peer(x)
    out_a, w_a = layer(x)
    assert tuple(w_a.shape) == (B, steps, steps)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")
    # The window really is keras-self-attention's, and (for width 15 on T=20) really clips.
    allowed = _allowed_band(band[0], band[1], steps)
    w_a, w_k = _np(w_a), _np(w_k)
    assert np.all(w_a[:, ~allowed] == 0.0) and np.all(w_k[:, ~allowed] == 0.0)
    assert np.all(w_a[:, allowed] > 0.0)
    if band[0] != "full":
        assert (~allowed).any()
    if band == ("local", 15) or band == ("causal", 15):
        # Clipping at the edges *and* cut-off inside: some row sees fewer than all 20 keys
        # because of the width, not only because of the sequence ends.
        assert allowed.sum(axis=1).max() == 15


@tf_peer
def test_seq_self_attention_biases_are_exercised():
    """Guard on the transplant: under a sigmoid, zeroing b_a or b_h changes the result."""
    kwargs = {"attention_activation": "sigmoid"}
    x, peer, layer = _transplanted_pair(kwargs, "additive(units=8)", T, _ADDITIVE_MAP, salt=4)
    out_k, _ = peer(x)
    assert_close(layer(x)[0], out_k, "float32")
    for name in ("scorer_b_a", "scorer_b_h"):
        variable = _ak_weights(layer)[name]
        kept = _np(variable).copy()
        variable.assign(np.zeros_like(kept))
        assert not np.allclose(_np(layer(x)[0]), _np(out_k), atol=1e-4), name
        variable.assign(kept)


@tf_peer
@pytest.mark.parametrize(
    "ksa_kwargs, spec, mapping",
    [
        ({}, "additive(units=8)", _ADDITIVE_MAP),
        (
            {"history_only": True, "attention_width": 15},
            "additive(units=8)+causal15",
            _ADDITIVE_MAP,
        ),
        ({"attention_type": "multiplicative"}, "general(use_bias=true)", _GENERAL_BIAS_MAP),
    ],
    ids=["additive", "additive_causal15", "mul_bias"],
)
def test_seq_self_attention_regularizer_loss_matches(ksa_kwargs, spec, mapping):
    steps = T_WIDE if "causal15" in spec else T
    x, peer, layer = _transplanted_pair(
        ksa_kwargs, spec, steps, mapping, salt=5, attention_regularizer_weight=0.1
    )
    out_k, w_k = peer(x)
    out_a, w_a = layer(x)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")
    assert len(peer.losses) == 1 and len(layer.losses) == 1
    loss_k, loss_a = float(_np(peer.losses[0])), float(_np(layer.losses[0]))
    # Independent float64 value of lambda * sum_b ||A A^T - I||_F^2 / B from the peer's weights.
    a = _np(w_k).astype("float64")
    expected = 0.1 * np.sum((a @ a.transpose(0, 2, 1) - np.eye(steps)) ** 2) / B
    assert loss_a > 0.0
    assert_close(loss_a, loss_k, "float32")
    assert_close(loss_a, expected, "float32")


# == 2b. SeqWeightedAttention and ScaledDotProductAttention ====================================
def _weighted_pair(salt):
    rng = _rng(salt)
    x = _normal(rng, B, T, D)
    peer = SeqWeightedAttention(return_attention=True)
    peer(x)
    _randomize(peer, rng)  # W (D, 1) and a nonzero b, which cancels in the softmax
    assert float(_np(peer.b)[0]) != 0.0
    layer = AttentionLayer("dot+weighted", return_attention=True)
    layer(x)
    _ak_weights(layer)["pooling_query"].assign(_np(peer.W)[:, 0])
    return x, peer, layer


def _assert_close_eps(actual, expected):
    # SeqWeightedAttention divides by (sum + K.epsilon()): a relative shift of ~1e-7.
    np.testing.assert_allclose(
        _np(actual).astype("float64"), _np(expected).astype("float64"), rtol=1e-5, atol=1e-6
    )


@tf_peer
def test_seq_weighted_attention_matches_dot_weighted():
    x, peer, layer = _weighted_pair(salt=6)
    out_k, w_k = peer(x)
    out_a, w_a = layer(x)
    assert tuple(out_a.shape) == (B, D) and tuple(w_a.shape) == (B, T)
    _assert_close_eps(out_a, out_k)
    _assert_close_eps(w_a, w_k)


@tf_peer
def test_seq_weighted_attention_with_padding_mask_matches():
    x, peer, layer = _weighted_pair(salt=7)
    mask = ops.convert_to_tensor(_lengths_mask([T, 6, 2], T))
    out_k, w_k = peer(x, mask=mask)
    out_a, w_a = layer(x, mask=mask)
    _assert_close_eps(out_a, out_k)
    _assert_close_eps(w_a, w_k)
    assert np.all(_np(w_a)[~_np(mask)] == 0.0)


def test_scaled_dot_product_attention_self_matches_dot_sqrt():
    x = _normal(_rng(8), B, T, D)
    out_k, w_k = ScaledDotProductAttention(return_attention=True)(x)
    out_a, w_a = AttentionLayer("dot(scale=sqrt)", return_attention=True)(x)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")


def test_scaled_dot_product_attention_list_matches_dot_sqrt():
    rng = _rng(9)
    q, k, v = _normal(rng, B, TQ, D), _normal(rng, B, TV, D), _normal(rng, B, TV, DV)
    out_k, w_k = ScaledDotProductAttention(return_attention=True)([q, k, v])  # its order: q, k, v
    out_a, w_a = AttentionLayer("dot(scale=sqrt)", return_attention=True)([q, v, k])  # Keras'
    assert tuple(out_a.shape) == (B, TQ, DV)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")


@pytest.mark.parametrize("shape", ["self", "rectangular"])
def test_scaled_dot_product_attention_history_only_matches_dot_sqrt_causal(shape):
    rng = _rng(10)
    if shape == "self":
        x = _normal(rng, B, T, D)
        peer_in, ours_in = x, x
    else:
        q, k, v = _normal(rng, B, TQ, D), _normal(rng, B, TV, D), _normal(rng, B, TV, DV)
        peer_in, ours_in = [q, k, v], [q, v, k]
    out_k, w_k = ScaledDotProductAttention(return_attention=True, history_only=True)(peer_in)
    out_a, w_a = AttentionLayer("dot(scale=sqrt)+causal", return_attention=True)(ours_in)
    assert_close(out_a, out_k, "float32")
    assert_close(w_a, w_k, "float32")
    future = np.triu(np.ones(w_a.shape[1:], bool), k=1)
    assert np.all(_np(w_a)[:, future] == 0.0)


def test_scaled_dot_product_attention_key_mask_matches_on_valid_rows():
    x = _normal(_rng(11), B, T, D)
    mask = _lengths_mask([T, 5, 3], T)
    out_k, w_k = ScaledDotProductAttention(return_attention=True)(
        x, mask=ops.convert_to_tensor(mask)
    )
    out_a, w_a = AttentionLayer("dot(scale=sqrt)", return_attention=True)(
        x, mask=ops.convert_to_tensor(mask)
    )
    out_a, w_a, out_k, w_k = map(_np, (out_a, w_a, out_k, w_k))
    # The peer masks keys only (its padded query rows still attend); attnkit also zeroes them.
    assert_close(out_a[mask], out_k[mask], "float32")
    assert_close(w_a[mask], w_k[mask], "float32")
    assert np.all(out_a[~mask] == 0.0)
    assert np.any(out_k[~mask] != 0.0)


# == 3. The SeqSelfAttention padding bug that attnkit fixes =====================================
@tf_peer
def test_seq_self_attention_mask_bug_and_attnkit_fix():
    """KSA 0.51.0 penalises only (padded query, padded key) pairs (its issue #41),
    so valid queries still attend to padded keys; attnkit gives those keys exactly 0."""
    rng = _rng(12)
    lengths = [T, 6, 4]
    tokens = np.where(_lengths_mask(lengths, T), rng.integers(1, 20, (B, T)), 0)
    embedding = keras.layers.Embedding(20, D, mask_zero=True)
    embedding.build((B, T))
    embedding.embeddings.assign(_normal(rng, 20, D))  # seeded; row 0 (padding) is nonzero too
    x = _np(embedding(tokens))
    mask = _np(embedding.compute_mask(tokens))
    assert mask.dtype == bool and np.array_equal(mask, _lengths_mask(lengths, T))
    _, peer, layer = _transplanted_pair({}, "additive(units=8)", T, _ADDITIVE_MAP, salt=12)
    _, w_k = map(_np, peer(x, mask=ops.convert_to_tensor(mask)))
    out_a, w_a = map(_np, layer(x, mask=ops.convert_to_tensor(mask)))
    for b, length in enumerate(lengths):
        if length == T:
            continue
        # The peer: valid queries put real weight on padded keys.
        leaked = w_k[b, :length, length:].sum(axis=-1)
        assert np.all(leaked > 1e-3), leaked
        # attnkit: exactly zero there, rows of valid queries sum to 1, padded rows are zero.
        assert np.all(w_a[b, :length, length:] == 0.0)
        assert_close(w_a[b, :length].sum(axis=-1), np.ones(length), "float32")
        assert np.all(w_a[b, length:] == 0.0) and np.all(out_a[b, length:] == 0.0)
        # attnkit on the padded sequence == the peer on the unpadded (truncated) sequence.
        out_t, w_t = map(_np, peer(x[b : b + 1, :length]))
        assert_close(out_a[b, :length], out_t[0], "float32")
        assert_close(w_a[b, :length, :length], w_t[0], "float32")


# == 4. philipperemy `attention` 5.0.0 ===========================================================
def _attention_package_numpy(h_s, weights, score):
    """float64 transcription of attention.Attention(units, score) .

    Returns (output (B, units), alpha (B, T)).
    """
    h_s = np.asarray(h_s, "float64")
    w = {k: np.asarray(v, "float64") for k, v in weights.items()}
    h_t = h_s[:, -1, :]  # last_hidden_state
    if score == "luong":
        # Dense(d, no bias) on every h_s, then Dot(axes=[1, 2]) with h_t.
        scores = np.einsum("bd,btd->bt", h_t, h_s @ w["luong_w"])
    elif score == "bahdanau":
        hidden = np.tanh((h_t @ w["bahdanau_w1"])[:, None, :] + h_s @ w["bahdanau_w2"])
        scores = (hidden @ w["bahdanau_v"])[..., 0]
    else:
        raise AssertionError(score)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    alpha = e / e.sum(axis=1, keepdims=True)  # attention_weight
    context = np.einsum("bt,btd->bd", alpha, h_s)  # context_vector
    pre = np.concatenate([context, h_t], axis=-1)  # attention_output
    return np.tanh(pre @ w["attention_vector"]), alpha  # Dense(units, no bias, tanh)


def _package_weights(score, rng):
    w = {"attention_vector": _normal(rng, 2 * D, U, scale=0.5)}
    if score == "luong":
        w["luong_w"] = _normal(rng, D, D, scale=0.5)
    else:
        w.update(
            bahdanau_w1=_normal(rng, D, D, scale=0.5),
            bahdanau_w2=_normal(rng, D, D, scale=0.5),
            bahdanau_v=_normal(rng, D, 1, scale=0.5),
        )
    return w


#: The attention package imports tensorflow.keras: it runs under the TensorFlow backend only.
attention_peer = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the attention package imports tensorflow.keras: TensorFlow backend only",
)


def _package_layer(score, weights, steps=T):
    """The real ``attention.Attention(U, score)``, built eagerly (its functional-model call
    fails on Keras 3: Keras passes ``training`` twice) and given ``weights``."""
    from attention import Attention

    peer = Attention(units=U, score=score)
    peer(np.zeros((1, steps, D), "float32"))
    by_name = {w.path.split("/")[-2]: w for w in peer.weights}  # attention/<name>/kernel
    assert set(by_name) == set(weights), sorted(by_name)
    for name, value in weights.items():
        by_name[name].assign(value)
    return peer


@attention_peer
@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_attention_package_matches_its_float64_formula(score):
    """The real package against a float64 NumPy statement of its formula (so the reference the
    attnkit tests below also use is the package's)."""
    rng = _rng(13)
    h_s = _normal(rng, B, T, D)
    weights = _package_weights(score, rng)
    out_p = _np(_package_layer(score, weights)(h_s))
    out_n, _ = _attention_package_numpy(h_s, weights, score)
    assert out_p.shape == (B, U)
    assert_close(out_p, out_n, "float32")
    # The two scores are really different formulas (guards against a copy-paste reference).
    other = "bahdanau" if score == "luong" else "luong"
    out_o, _ = _attention_package_numpy(
        h_s, {**weights, **_package_weights(other, _rng(14))}, other
    )
    assert not np.allclose(out_o, out_n, atol=1e-3)


#: The attention package's scores, the attnkit spec that computes each, and the weight map
#: (package name -> attnkit name, transposed?). attnkit's general is q^T W k; the package
#: computes h_t . (h_s W) = h_t^T W^T h_s, hence the transpose.
PACKAGE_CASES = pytest.mark.parametrize(
    "score, spec, mapping",
    [
        (
            "bahdanau",
            f"bahdanau+last(units={U})",
            {
                "bahdanau_w1": ("scorer_w_1", False),
                "bahdanau_w2": ("scorer_w_2", False),
                "bahdanau_v": ("scorer_v", False),
                "attention_vector": ("pooling_w_c", False),
            },
        ),
        (
            "luong",
            f"general+last(units={U})",
            {"luong_w": ("scorer_w", True), "attention_vector": ("pooling_w_c", False)},
        ),
    ],
    ids=["bahdanau", "luong"],
)


@PACKAGE_CASES
def test_last_pooling_matches_attention_package(score, spec, mapping):
    """attnkit against the float64 formula on every backend, and against the real package on
    TensorFlow, on transplanted weights."""
    rng = _rng(15)
    h_s = _normal(rng, B, T, D)
    weights = _package_weights(score, rng)
    layer = AttentionLayer(spec, return_attention=True)
    layer(h_s)
    mine = _transplant(layer, weights, mapping)
    out_a, alpha_a = layer(h_s)
    out_n, alpha_n = _attention_package_numpy(h_s, weights, score)
    assert tuple(out_a.shape) == (B, U) and tuple(alpha_a.shape) == (B, T)
    assert_close(out_a, out_n, "float32")
    assert_close(alpha_a, alpha_n, "float32")
    if keras.backend.backend() == "tensorflow":  # the real package, on its backend
        assert_close(out_a, _np(_package_layer(score, weights)(h_s)), "float32")
    if score == "luong":
        # The transpose matters (a non-symmetric W): without it the numbers differ.
        mine["scorer_w"].assign(weights["luong_w"])
        assert not np.allclose(_np(layer(h_s)[1]), alpha_n, atol=1e-4)


def _transplant(layer, weights, mapping) -> dict:
    """Give ``layer`` the package's ``weights`` under ``mapping``; returns attnkit's weights."""
    mine = _ak_weights(layer)
    assert set(mine) == {ours for ours, _ in mapping.values()}
    for theirs, (ours, transpose) in mapping.items():
        mine[ours].assign(weights[theirs].T if transpose else weights[theirs])
    return mine


@attention_peer
@PACKAGE_CASES
def test_last_pooling_on_padded_steps_matches_the_package_on_the_unpadded_ones(
    score, spec, mapping
):
    """The package has no masking; attnkit on a right-padded batch (garbage in the padding)
    gives what the package gives each sample cut to its valid steps: its query is the last
    valid step and padded keys get no weight."""
    rng = _rng(17)
    h_s = _normal(rng, B, T, D)
    lengths = [T, T - 2, 3]
    mask = _lengths_mask(lengths, T)
    h_s[~mask] = 7.0
    weights = _package_weights(score, rng)
    layer = AttentionLayer(spec)
    layer(h_s)
    _transplant(layer, weights, mapping)
    out_a = _np(layer(h_s, mask=mask))
    for b, length in enumerate(lengths):
        peer = _package_layer(score, weights, steps=length)
        assert_close(out_a[b], _np(peer(h_s[b : b + 1, :length]))[0], "float32")


def test_last_pooling_without_units_is_the_context_vector():
    """``last`` without units returns c = sum_s alpha_s h_s (the package's context_vector)."""
    rng = _rng(16)
    h_s = _normal(rng, B, T, D)
    weights = _package_weights("luong", rng)
    layer = AttentionLayer("general+last", return_attention=True)
    layer(h_s)
    _ak_weights(layer)["scorer_w"].assign(weights["luong_w"].T)
    out_a, alpha_a = layer(h_s)
    _, alpha_n = _attention_package_numpy(h_s, weights, "luong")
    context = np.einsum("bt,btd->bd", alpha_n, h_s.astype("float64"))
    assert_close(alpha_a, alpha_n, "float32")
    assert_close(out_a, context, "float32")


# == 5. The old Keras attention blocks ==========================================================
def _attention_block_2d(features: int) -> keras.Model:
    """The dense attention block: ``x * Dense(D, softmax)(x)`` on (B, D)."""
    inputs = keras.Input((features,))
    probs = keras.layers.Dense(features, activation="softmax", name="attention_vec")(inputs)
    return keras.Model(inputs, keras.layers.Multiply()([inputs, probs]))


def _attention_3d_block(steps: int, features: int, single: bool) -> keras.Model:
    """``attention_3d_block``: Permute, Dense(T, softmax) over each feature's time series,
    (with ``SINGLE_ATTENTION_VECTOR`` the mean over features, repeated), Permute back, and
    multiply the input."""
    inputs = keras.Input((steps, features))
    a = keras.layers.Permute((2, 1))(inputs)
    a = keras.layers.Dense(steps, activation="softmax", name="attention_vec")(a)
    if single:
        a = keras.layers.Lambda(lambda t: ops.mean(t, axis=1))(a)
        a = keras.layers.RepeatVector(features)(a)
    probs = keras.layers.Permute((2, 1))(a)
    return keras.Model(inputs, keras.layers.Multiply()([inputs, probs]))


def _transplant_dense(model, layer, rng) -> None:
    """Random kernel and bias into the block's Dense, and the same into attnkit's dense scorer."""
    dense = model.get_layer("attention_vec")
    kernel = _normal(rng, *dense.kernel.shape, scale=0.7)
    bias = _normal(rng, *dense.bias.shape, scale=0.3)
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    mine = _ak_weights(layer)
    mine["scorer_w"].assign(kernel)
    mine["scorer_b"].assign(bias)


def test_dense_gate_matches_the_dense_attention_block():
    rng = _rng(21)
    x = _normal(rng, B, D)
    peer = _attention_block_2d(D)
    layer = AttentionLayer("dense+gate")
    layer(x)
    _transplant_dense(peer, layer, rng)
    assert_close(layer(x), peer.predict(x, verbose=0), "float32")


@pytest.mark.parametrize("single", [False, True], ids=["per_feature", "single_vector"])
def test_dense_gate_matches_the_attention_3d_block(single):
    rng = _rng(22)
    x = _normal(rng, B, T, D)
    peer = _attention_3d_block(T, D, single)
    layer = AttentionLayer(f"dense+gate(shared={'true' if single else 'false'})")
    layer(x)
    _transplant_dense(peer, layer, rng)
    assert_close(layer(x), peer.predict(x, verbose=0), "float32")


# -- multi-head and grouped-query attention ---------------------------------------------------
# keras.layers.MultiHeadAttention and GroupQueryAttention, transplanted into
# AttentionLayer("dot(scale=sqrt)...", num_heads=...). The peers are called with
# return_attention_scores=True so that their weights are compared too (that call takes their
# einsum path; the fused one computes the same formula). Keras gives a query that sees no key
# (padded, or before every visible key) a uniform row where attnkit gives zeros: rows are
# compared where the query is valid and sees a key.

HB, HT, HTK, HD, HEADS, HEAD_DIM = 2, 7, 6, 10, 3, 4


def _head_inputs(cross: bool, rng):
    query = _normal(rng, HB, HT, HD)
    if not cross:
        return query, query, query
    return query, _normal(rng, HB, HTK, HD + 2), _normal(rng, HB, HTK, HD - 3)


def _transplant_heads(layer, peer) -> None:
    """The peer's ``query/kernel``, ..., ``attention_output/bias`` into the layer's
    ``query_kernel``, ..., ``output_bias``."""
    theirs = {
        "_".join(w.path.split("/")[-2:]).replace("attention_output", "output"): w
        for w in peer.weights
    }
    mine = _ak_weights(layer)
    assert sorted(mine) == sorted(theirs)
    for name, weight in mine.items():
        weight.assign(theirs[name])


def _seen_rows(allowed, query_valid):
    """(B, Tq) rows that count: valid queries that see at least one key."""
    return allowed.any(-1) & query_valid


HEAD_CASES = {
    # id: (peer kwargs, peer call kwargs, spec, attnkit kwargs, cross, padded)
    "self": ({}, {}, "dot(scale=sqrt)", {}, False, False),
    "causal": ({}, {"use_causal_mask": True}, "dot(scale=sqrt)+causal", {}, False, False),
    "sliding": ({"sliding_window": 2}, {}, "dot(scale=sqrt)+local3", {}, False, False),
    "sliding_causal": (
        {"sliding_window": 3},
        {"use_causal_mask": True},
        "dot(scale=sqrt)+causal3",
        {},
        False,
        False,
    ),
    "padded_causal": ({}, {"use_causal_mask": True}, "dot(scale=sqrt)+causal", {}, False, True),
    "cross_padded": ({}, {}, "dot(scale=sqrt)", {}, True, True),
    "no_bias": ({"use_bias": False}, {}, "dot(scale=sqrt)", {"use_bias": False}, True, False),
}
MHA_ONLY = {
    "value_dim_output_shape": (
        {"value_dim": 5, "output_shape": 6},
        {"use_causal_mask": True},
        "dot(scale=sqrt)+causal",
        {"value_dim": 5, "output_shape": 6},
        True,
        True,
    ),
}


def _head_pair(peer_name, case, rng):
    peer_kwargs, call_kwargs, spec, kwargs, cross, padded = case
    query, value, key = _head_inputs(cross, rng)
    if peer_name == "mha":
        peer = keras.layers.MultiHeadAttention(HEADS, HEAD_DIM, **peer_kwargs)
        heads = {"num_heads": HEADS, "key_dim": HEAD_DIM}
    else:
        peer = keras.layers.GroupQueryAttention(HEAD_DIM, HEADS * 2, HEADS, **peer_kwargs)
        heads = {"num_heads": HEADS * 2, "key_dim": HEAD_DIM, "num_key_value_heads": HEADS}
    query_valid = _lengths_mask([HT, HT - 2], HT) if padded else np.ones((HB, HT), bool)
    tk = value.shape[1]
    key_valid = _lengths_mask([tk - 3, tk], tk) if padded else np.ones((HB, tk), bool)
    if not cross:  # self-attention: one tensor, one padding
        key_valid = query_valid
    peer_call = dict(call_kwargs, return_attention_scores=True)
    if padded:
        peer_call.update(query_mask=query_valid, value_mask=key_valid)
    peer(query, value, key, **peer_call)  # builds it
    _randomize(peer, rng)  # biases too: none stays zero
    expected, expected_weights = peer(query, value, key, **peer_call)
    layer = AttentionLayer(spec, return_attention=True, **heads, **kwargs)
    inputs = [query, value, key] if cross else query
    mask = [query_valid, key_valid] if padded and cross else (query_valid if padded else None)
    layer.build([np.shape(t) for t in inputs] if cross else query.shape)
    _transplant_heads(layer, peer)
    output, weights = layer(inputs, mask=mask)
    layer.return_attention = False  # every plan, the kernel plan's heads axis included
    outputs = {}
    for plan in ("banded", "chunked", "kernel"):
        layer.plan = plan
        outputs[layer.choice(inputs, mask=mask).plan] = layer(inputs, mask=mask)
    return (output, weights, outputs), (expected, expected_weights), (query_valid, key_valid, tk)


def _band(spec: str, tq: int, tk: int) -> np.ndarray:
    i, j = np.arange(tq)[:, None], np.arange(tk)[None, :]
    allowed = np.ones((tq, tk), bool)
    if "causal" in spec:
        allowed &= j <= i
    if "local3" in spec:
        allowed &= np.abs(i - j) <= 1
    if "causal3" in spec:
        allowed &= i - j < 3
    return allowed


def _check_head_parity(peer_name, case, salt):
    (output, weights, outputs), (expected, expected_weights), (q_valid, k_valid, tk) = _head_pair(
        peer_name, case, _rng(salt)
    )
    allowed = _band(case[2], HT, tk)[None] & k_valid[:, None, :]
    rows = _seen_rows(allowed, q_valid)
    assert rows.sum() >= HB * HT - 4  # the comparison covers most rows
    assert_close(_np(output)[rows], _np(expected)[rows])
    got, want = _np(weights), _np(expected_weights)  # (B, H, Tq, Tk)
    assert got.shape == want.shape
    assert_close(got.transpose(0, 2, 1, 3)[rows], want.transpose(0, 2, 1, 3)[rows])
    np.testing.assert_array_equal(got.transpose(0, 2, 1, 3)[~rows], 0.0)
    assert "chunked" in outputs
    for planned in outputs.values():
        assert_close(_np(planned)[rows], _np(expected)[rows])


@pytest.mark.parametrize("case", [*HEAD_CASES, *MHA_ONLY])
def test_multi_head_matches_keras_multi_head_attention(case):
    _check_head_parity("mha", {**HEAD_CASES, **MHA_ONLY}[case], salt=31)


@pytest.mark.parametrize("case", list(HEAD_CASES))
def test_grouped_query_matches_keras_group_query_attention(case):
    _check_head_parity("gqa", HEAD_CASES[case], salt=37)


def _multi_head_reference(query, value, key, weights, allowed, group=1):
    """float64 NumPy: ``sum_h softmax(q_h k_g^T / sqrt(dk), allowed) v_g Wo[h] + bo``."""
    w = {name: np.asarray(t, np.float64) for name, t in weights.items()}
    q = np.einsum("btd,dhk->bthk", query, w["query_kernel"]) + w["query_bias"]
    k = np.einsum("btd,dhk->bthk", key, w["key_kernel"]) + w["key_bias"]
    v = np.einsum("btd,dhk->bthk", value, w["value_kernel"]) + w["value_bias"]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    scores = np.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(allowed[:, None], scores, -np.inf)
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    context = np.einsum("bhqt,bthv->bqhv", a, v)
    return np.einsum("bqhv,hvo->bqo", context, w["output_kernel"]) + w["output_bias"]


@pytest.mark.parametrize("kv_heads", [3, 1], ids=["multi_head", "grouped"])
def test_multi_head_dot_matches_its_float64_formula(kv_heads):
    rng = _rng(41)
    query, value, key = (np.asarray(t, np.float64) for t in _head_inputs(True, rng))
    layer = AttentionLayer(
        "dot(scale=sqrt)+causal", num_heads=3, key_dim=HEAD_DIM, num_key_value_heads=kv_heads
    )
    inputs = [t.astype("float32") for t in (query, value, key)]
    layer.build([t.shape for t in inputs])
    _randomize(layer, rng)
    got = _np(layer(inputs))
    allowed = np.broadcast_to(_band("causal", HT, HTK), (HB, HT, HTK))
    weights = {name: _np(w) for name, w in _ak_weights(layer).items()}
    expected = _multi_head_reference(query, value, key, weights, allowed, group=3 // kv_heads)
    assert_close(got, expected)
