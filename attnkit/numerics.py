"""The numerics every plan shares (``keras.ops`` only): the masked softmax, the dtype scores
are computed in, and keras-self-attention's attention regulariser."""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

__all__ = ["attention_penalty", "masked_softmax", "score_dtype"]


def score_dtype(compute_dtype: str) -> str:
    """The dtype scores and softmax run in: float32 for 16-bit policies, else the policy's."""
    return "float32" if compute_dtype in ("float16", "bfloat16") else compute_dtype


def masked_softmax(scores: Any, allowed: Any = None, *, rows_see_a_key: bool = False) -> Any:
    """Softmax over the last axis restricted to the allowed entries.

    ``w_ij = allowed_ij * exp(s_ij - m_i) / sum_j(allowed_ij * exp(s_ij - m_i))``, where m_i is
    the maximum over the row's *allowed* scores.

    Masked scores are replaced (with ``where``) by ``-0.7 * finfo(dtype).max`` before the
    backend's fused softmax and their weights set to exactly zero after it, never shifted by a
    constant: a huge, infinite or NaN score behind the mask changes nothing, in value or
    gradient, and the replacement is below every finite score, so the row maximum is taken over
    the allowed entries. A row with no allowed entry gives exact zeros, never NaN.

    Args:
        scores: (..., Tk) floating scores; use float32 or wider for 16-bit policies.
        allowed: boolean, broadcastable to ``scores``; None allows everything.
        rows_see_a_key: the caller knows every row allows at least one key (a causal or full
            mask without padding). The replaced scores then already give masked entries
            ``exp(low - m_i) = 0`` exactly, so the zeroing ``where`` is skipped: one pass over
            the scores fewer.
    """
    single = scores.shape[-1] == 1  # ops.softmax warns on a length-1 axis; the answer is 1
    if allowed is None:
        return ops.exp(scores - scores) if single else ops.softmax(scores, axis=-1)
    # Scalars, not full tensors, on the masked side: where() broadcasts, and nothing of the
    # scores' size is allocated beyond the two results.
    dtype = str(ops.dtype(scores))
    low = ops.convert_to_tensor(np.asarray(-0.7 * np.finfo(dtype).max, dtype=dtype))
    shifted = ops.where(allowed, scores, low)
    weights = ops.exp(shifted - shifted) if single else ops.softmax(shifted, axis=-1)
    if rows_see_a_key:
        return weights
    return ops.where(allowed, weights, ops.cast(0, weights.dtype))


def attention_penalty(weights: Any, valid: Any = None, scale: float = 1.0) -> Any:
    """keras-self-attention's attention regulariser,
    ``scale * sum_b ||(A_b A_b^T - I) * V_b||_F^2 / B`` for weights A (B, Tq, Tk), where V
    leaves out the pairs of rows with a padded query (``valid``: boolean (B, Tq), or None)."""
    gram = ops.matmul(weights, ops.swapaxes(weights, -1, -2))
    diff = gram - ops.eye(ops.shape(gram)[-1], dtype=gram.dtype)
    if valid is not None:
        pair = ops.logical_and(ops.expand_dims(valid, -1), ops.expand_dims(valid, 1))
        diff = ops.where(pair, diff, ops.zeros_like(diff))
    batch = ops.cast(ops.shape(weights)[0], diff.dtype)
    return scale * ops.sum(ops.square(diff)) / batch
