"""Layers to benchmark, attnkit's and the peers', each built by name in a worker process."""

from __future__ import annotations

import keras
from keras import ops


class PeerMissing(RuntimeError):
    """A peer's package cannot be imported here; its row says so instead of timing it."""


class AttentionPackage(keras.layers.Layer):
    """The ``attention`` package's ``Attention(units, score)`` (5.0.0) inside a layer of our own:
    called directly in a functional model, Keras 3 passes it ``training`` twice, so this
    layer's call calls it without. It imports ``tensorflow.keras``: TensorFlow backend only."""

    def __init__(self, units=128, score="luong", **kwargs):
        super().__init__(**kwargs)
        if keras.backend.backend() != "tensorflow":
            raise PeerMissing("the attention package runs on the tensorflow backend only")
        try:
            from attention import Attention
        except ImportError as error:
            raise PeerMissing(f"not installed: attention ({error})") from None
        self.inner = Attention(units=units, score=score)

    def call(self, h_s):
        return self.inner(h_s)


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


class _KerasMultiHead(keras.layers.Layer):
    """keras.layers.MultiHeadAttention as self-attention (query = value = key = x)."""

    def __init__(self, inner, causal=False, **kwargs):
        super().__init__(**kwargs)
        self.inner, self.causal = inner, causal

    def call(self, x):
        return self.inner(x, x, use_causal_mask=self.causal)


def _multi_head(arg: str):
    """``mha-8x64`` (8 heads of 64), with ``-causal``, ``-sliding8`` (sliding_window=8, which
    is attnkit's local15) and ``-flash`` (its flash path demanded)."""
    parts = arg.split("-")
    heads, key_dim = (int(n) for n in parts[1].split("x"))
    options = {}
    for part in parts[2:]:
        if part.startswith("sliding"):
            options["sliding_window"] = int(part[len("sliding") :])
        elif part == "flash":
            options["flash_attention"] = True
    inner = keras.layers.MultiHeadAttention(heads, key_dim, **options)
    return _KerasMultiHead(inner, causal="causal" in parts)


def _attnkit(arg: str):
    """``SPEC``, ``SPEC@PLAN``, ``SPEC/8x64`` (8 heads of 64) or ``SPEC@PLAN/8x64``."""
    import attnkit

    arg, _, heads = arg.partition("/")
    spec, _, plan = arg.partition("@")
    options = {}
    if heads:
        num_heads, key_dim = (int(n) for n in heads.split("x"))
        options = {"num_heads": num_heads, "key_dim": key_dim}
    return attnkit.AttentionLayer(spec, plan=plan or "auto", **options)


def build(name: str):
    """A layer from a benchmark name: ``attnkit:SPEC``, ``keras:dot``, ``keras:mha-8x64``,
    ``ksa:additive15``..."""
    kind, _, arg = name.partition(":")
    if kind == "attnkit":
        return _attnkit(arg)
    if kind == "keras" and arg.startswith("mha-"):
        return _multi_head(arg)
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
