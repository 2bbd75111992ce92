"""Numerical primitives shared by every component and plan (``keras.ops`` only), and the input
type check the layer needs before any of them."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from keras import ops

__all__ = ["as_bool_mask", "hide_unseen", "is_ragged", "masked_softmax", "score_dtype"]


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
            the scores fewer, 0.76 -> 0.67 of dot's time for dot+causal at T=4096
            (``benchmarks/README.md``, fifth session).
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


def as_bool_mask(mask: Any) -> Any:
    """A padding mask as booleans: bool as is, integers nonzero, floats above 0.5 (Keras' rule)."""
    dtype = str(ops.dtype(mask))
    if "bool" in dtype:
        return mask
    if "int" in dtype:
        return ops.not_equal(mask, 0)
    return ops.greater(mask, 0.5)


def hide_unseen(allowed: Any, key: Any, value: Any) -> tuple[Any, Any]:
    """Zero the keys and values no query may see: ``k_j, v_j <- 0`` where no ``allowed_ij``.

    The softmax already gives such a key exactly zero weight, but its value would still meet
    that zero in ``weights @ v`` (``0 * inf`` and ``0 * NaN`` are NaN) and the key itself would
    still reach the scorer (an infinite key makes the gradient w.r.t. the queries and the
    scorer's weights NaN although its score is masked). Zeroed first, a key hidden from every
    query by the masks (causal cross-attention with Tk > Tq, a many-to-one query's window)
    changes no output and gets an exactly zero gradient, whatever it holds. A key that *some*
    query sees cannot be hidden this way: the scorer computes every pair from one key tensor.

    Args:
        allowed: boolean (B or 1, Tq, Tk).
        key: (B, Tk, Dk).
        value: (B, Tk, Dv).

    Returns:
        (key, value) with the unseen steps zeroed.
    """
    seen = ops.expand_dims(ops.any(allowed, axis=-2), -1)  # (B or 1, Tk, 1)
    return (
        ops.where(seen, key, ops.cast(0, key.dtype)),
        ops.where(seen, value, ops.cast(0, value.dtype)),
    )


def is_ragged(tensor: Any) -> bool:
    """True for a ``tf.RaggedTensor`` (or a symbolic input declared ragged).

    Looked up in ``sys.modules``: when TensorFlow was never imported no ragged tensor exists,
    and the other backends must not pay for importing it.
    """
    if getattr(tensor, "ragged", False) is True:  # keras.Input(..., ragged=True)
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(tensor, tf.RaggedTensor)
