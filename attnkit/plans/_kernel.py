"""The kernel plan: the backend's fused ``keras.ops.dot_product_attention``.

Taken for specs it computes exactly (:func:`kernel_form`): a scorer that is a scaled dot
product (:meth:`Scorer.dot_scale`), masks that are ``full`` or ``causal``
(:meth:`Mask.kernel_form`) and an aligned pooling (``seq``). ``auto`` takes it where the
backend's kernel is a fused one (:func:`kernel_by_default`).
"""

from __future__ import annotations

import keras
from keras import ops

from attnkit.backend import flash_attention_argument, on_accelerator
from attnkit.components import Scorer
from attnkit.plans._visibility import visible
from attnkit.plans._work import Outcome, Work

__all__ = ["KERNEL_BACKENDS", "kernel", "kernel_by_default", "kernel_form"]

#: Backends whose dot_product_attention is a fused kernel. TensorFlow's is the same ops the
#: dense plan runs, so there the kernel plan is only taken when asked for.
KERNEL_BACKENDS = ("jax", "torch")


def kernel_by_default() -> bool:
    """Whether ``auto`` takes the kernel plan on this backend and device: on torch (a fused
    kernel on CPU and GPU) and on JAX with a GPU (cuDNN's flash attention). JAX's CPU
    ``dot_product_attention`` is XLA ops in a (B, T, heads, D) layout, slower than the dense
    plan there."""
    backend = keras.backend.backend()
    if backend == "jax":
        return on_accelerator()
    return backend in KERNEL_BACKENDS


def kernel_form(scorer, masks, pooling, same_length: bool) -> str | None:
    """``"full"`` or ``"causal"`` when ``dot_product_attention`` computes this spec exactly,
    else None. Causal needs queries and keys of one length: kernels align a causal mask
    differently when they differ."""
    if not pooling.aligned or type(scorer).dot_scale is Scorer.dot_scale:
        return None
    forms = {mask.kernel_form() for mask in masks}
    if None in forms or not forms <= {"full", "causal"}:
        return None
    if "causal" in forms:
        return "causal" if same_length else None
    return "full"


def kernel(work: Work) -> Outcome:
    """Context (B, Tq, Dv) ``softmax(scale * q k^T, masked) v``.

    Heads folded into the batch (``work.heads`` > 1) are unfolded into the kernel's heads axis,
    (B, T, H, D), so that the backend's fused and flash kernels see them as heads.

    Kernels give a row that sees no key a uniform average (torch, JAX) rather than zeros, and
    padding plus a causal mask can hide every key from the first rows, so rows with nothing
    visible (and padded queries) are zeroed afterwards; their zero cotangent keeps them out
    of the gradient too.
    """
    query, key, value = work.query, work.key, work.value
    causal = any(mask.kernel_form() == "causal" for mask in work.masks)
    scale = work.scorer.dot_scale(work.params, query.shape[-1])
    if not (isinstance(scale, float) and scale == 1.0):
        query = query * ops.cast(scale, query.dtype)
    width = value.shape[-1]
    # Kernels want one head size for q, k and v; zero features change no score and no output.
    if query.shape[-1] < width:
        query, key = (_pad_features(t, width) for t in (query, key))
    elif width < query.shape[-1]:
        value = _pad_features(value, query.shape[-1])
    heads = work.heads
    q, k, v = (_heads_axis(t, heads) for t in (query, key, value))
    mask = keep = None
    if work.key_valid is not None:
        # Padding and causality in one boolean mask: (B, 1, Tk), or (B, Tq, Tk) when causal.
        q_idx = ops.expand_dims(work.positions, -1)
        k_idx = ops.reshape(ops.arange(ops.shape(key)[1], dtype="int32"), (1, 1, -1))
        allowed = visible(work.masks, q_idx, k_idx, ops.expand_dims(work.key_valid, 1))
        keep = ops.any(allowed, axis=-1)  # (B, Tq or 1)
        mask, causal = _heads_first(allowed, heads), False
    if work.query_valid is not None:
        keep = work.query_valid if keep is None else ops.logical_and(keep, work.query_valid)
    context = ops.dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        scale=1.0,
        is_causal=causal,
        flash_attention=flash_attention_argument(),
    )
    context = _fold_heads(context, heads)[:, :, :width]
    if keep is not None:
        context = ops.where(ops.expand_dims(keep, -1), context, ops.zeros_like(context))
    return Outcome(context, query_valid=work.query_valid)


def _pad_features(tensor, width: int):
    return ops.pad(tensor, [(0, 0), (0, 0), (0, width - tensor.shape[-1])])


def _heads_axis(tensor, heads: int):
    """(B H, T, D) -> (B, T, H, D)."""
    return ops.transpose(_split_batch(tensor, heads), (0, 2, 1, 3))


def _heads_first(allowed, heads: int):
    """Boolean (B H, Tq or 1, Tk) -> (B, H, Tq or 1, Tk)."""
    return _split_batch(allowed, heads)


def _split_batch(tensor, heads: int):
    """(B H, ...) -> (B, H, ...), every size read from the tensor: a -1 cannot be resolved for
    a tensor with no elements (zero steps)."""
    shape = ops.shape(tensor)
    return ops.reshape(tensor, (shape[0] // heads, heads, *shape[1:]))


def _fold_heads(context, heads: int):
    """(B, Tq, H, D) -> (B H, Tq, D)."""
    batch, steps, _, depth = ops.shape(context)
    return ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch * heads, steps, depth))
