"""Layers to benchmark, attnkit's and the peers', each built by name in a worker process."""

from __future__ import annotations

import keras
from keras import ops


class PeerMissing(RuntimeError):
    """A peer's package cannot be imported here; its row says so instead of timing it."""


class AttentionPackage(keras.layers.Layer):
    """A plain Keras transcription of the ``attention`` package's layer (it no longer runs on
    Keras 3): h_t = last step, score luong (h_t W h_s) or bahdanau, tanh(W_c [c; h_t])."""

    def __init__(self, units=128, score="luong", **kwargs):
        super().__init__(**kwargs)
        self.units, self.score = units, score

    def build(self, shape):
        d = shape[-1]
        if self.score == "luong":
            self.w = self.add_weight(shape=(d, d), name="luong_w")
        else:
            self.w1 = self.add_weight(shape=(d, d), name="w1")
            self.w2 = self.add_weight(shape=(d, d), name="w2")
            self.v = self.add_weight(shape=(d, 1), name="v")
        self.wc = self.add_weight(shape=(2 * d, self.units), name="attention_vector")

    def call(self, h_s):
        h_t = h_s[:, -1, :]
        if self.score == "luong":
            scores = ops.einsum("bd,btd->bt", h_t, ops.matmul(h_s, self.w))
        else:
            hidden = ops.tanh(
                ops.expand_dims(ops.matmul(h_t, self.w1), 1) + ops.matmul(h_s, self.w2)
            )
            scores = ops.squeeze(ops.matmul(hidden, self.v), -1)
        alpha = ops.softmax(scores, axis=-1)
        context = ops.einsum("bt,btd->bd", alpha, h_s)
        return ops.tanh(ops.matmul(ops.concatenate([context, h_t], -1), self.wc))


class _KerasSelf(keras.layers.Layer):
    """keras.layers.Attention / AdditiveAttention as self-attention (query = value = x)."""

    def __init__(self, inner, causal=False, **kwargs):
        super().__init__(**kwargs)
        self.inner, self.causal = inner, causal

    def call(self, x):
        return self.inner([x, x], use_causal_mask=self.causal)


class DotProductAttention(keras.layers.Layer):
    """Self-attention through ``keras.ops.dot_product_attention``, one head, scale 1 (attnkit's
    ``dot``): the backend's fused kernel. ``flash``: None lets the backend choose (its flash
    path on a GPU where dtype and shapes allow, its plain path otherwise); True demands it."""

    def __init__(self, causal=False, flash=None, **kwargs):
        super().__init__(**kwargs)
        self.causal, self.flash = causal, flash

    def call(self, x):
        heads = ops.expand_dims(x, 2)  # (B, T, 1, D)
        context = ops.dot_product_attention(
            heads, heads, heads, scale=1.0, is_causal=self.causal, flash_attention=self.flash
        )
        return ops.squeeze(context, 2)


def build(name: str):
    """A layer from a benchmark name: ``attnkit:SPEC``, ``keras:dot``, ``ksa:additive15``..."""
    kind, _, arg = name.partition(":")
    if kind == "attnkit":
        import attnkit

        spec, _, plan = arg.partition("@")
        return attnkit.AttentionLayer(spec, plan=plan or "auto")
    if kind == "keras":
        if arg == "dot":
            return _KerasSelf(keras.layers.Attention())
        if arg == "dot-causal":
            return _KerasSelf(keras.layers.Attention(), causal=True)
        if arg == "additive":
            return _KerasSelf(keras.layers.AdditiveAttention())
        # sdpa, sdpa-causal (flash where the backend can), flash, flash-causal (flash or fail)
        kernel, _, causal = arg.partition("-")
        if kernel in ("sdpa", "flash"):
            return DotProductAttention(causal=bool(causal), flash=kernel == "flash" or None)
    if kind == "ksa":
        if keras.backend.backend() != "tensorflow":  # it is written on tf.keras
            raise PeerMissing("keras-self-attention runs on the tensorflow backend only")
        try:
            from keras_self_attention import SeqSelfAttention
        except ImportError as error:
            raise PeerMissing(f"not installed: keras-self-attention ({error})") from None

        if arg.startswith("additive"):
            # additive, additive15 (attention_width=15), additive15-causal (history_only too)
            width, _, causal = arg[len("additive") :].partition("-")
            return SeqSelfAttention(
                units=32, attention_width=int(width or 0) or None, history_only=bool(causal)
            )
        if arg == "multiplicative":
            return SeqSelfAttention(attention_type="multiplicative")
    if kind == "attention":
        return AttentionPackage(units=128, score=arg)
    raise ValueError(f"unknown benchmark layer {name!r}")
