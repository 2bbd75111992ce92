"""Numerical primitives shared by every component and plan, written with ``keras.ops`` only."""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

__all__ = ["as_bool_mask", "masked_softmax", "score_dtype"]


def score_dtype(compute_dtype: str) -> str:
    """The dtype scores and softmax run in: float32 for 16-bit policies, else the policy's."""
    return "float32" if compute_dtype in ("float16", "bfloat16") else compute_dtype


def masked_softmax(scores: Any, allowed: Any = None) -> Any:
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
    return ops.where(allowed, weights, ops.cast(0, weights.dtype))


def as_bool_mask(mask: Any) -> Any:
    """A padding mask as booleans: bool as is, integers nonzero, floats above 0.5 (Keras' rule)."""
    dtype = str(ops.dtype(mask))
    if "bool" in dtype:
        return mask
    if "int" in dtype:
        return ops.not_equal(mask, 0)
    return ops.greater(mask, 0.5)
