"""Numerical primitives shared by every component and plan, written with ``keras.ops`` only."""

from __future__ import annotations

from typing import Any

from keras import ops

__all__ = ["as_bool_mask", "masked_softmax", "score_dtype"]


def score_dtype(compute_dtype: str) -> str:
    """The dtype scores and softmax run in: float32 for 16-bit policies, else the policy's."""
    return "float32" if compute_dtype in ("float16", "bfloat16") else compute_dtype


def masked_softmax(scores: Any, allowed: Any = None) -> Any:
    """Softmax over the last axis restricted to the allowed entries.

    ``w_ij = allowed_ij * exp(s_ij - m_i) / sum_j(allowed_ij * exp(s_ij - m_i))``, where m_i is
    the maximum over the row's *allowed* scores only.

    Masked scores are replaced (with ``where``), never shifted by a constant, so a huge, infinite
    or NaN score behind the mask changes nothing, in value or gradient. A row with no allowed
    entry gives exact zeros, never NaN, in every dtype.

    Args:
        scores: (..., Tk) floating scores; use float32 or wider for 16-bit policies.
        allowed: boolean, broadcastable to ``scores``; None allows everything.
    """
    if allowed is None:
        peak = ops.stop_gradient(ops.max(scores, axis=-1, keepdims=True))
        exp = ops.exp(scores - peak)
        return exp / ops.sum(exp, axis=-1, keepdims=True)
    allowed = ops.broadcast_to(allowed, ops.shape(scores))
    # The row max over allowed entries only (keras-self-attention takes it over all entries, so
    # a masked key with the largest score underflows every visible one). Softmax is invariant to
    # the shift, so no gradient needs to flow through it.
    peak = ops.max(ops.where(allowed, scores, float("-inf")), axis=-1, keepdims=True)
    peak = ops.stop_gradient(ops.where(ops.isfinite(peak), peak, ops.zeros_like(peak)))
    shifted = ops.where(allowed, scores, peak) - peak
    exp = ops.where(allowed, ops.exp(shifted), ops.zeros_like(shifted))
    total = ops.sum(exp, axis=-1, keepdims=True)
    return exp / ops.where(total > 0, total, ops.ones_like(total))


def as_bool_mask(mask: Any) -> Any:
    """A padding mask as booleans: bool as is, integers nonzero, floats above 0.5 (Keras' rule)."""
    dtype = str(ops.dtype(mask))
    if "bool" in dtype:
        return mask
    if "int" in dtype:
        return ops.not_equal(mask, 0)
    return ops.greater(mask, 0.5)
