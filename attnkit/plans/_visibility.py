"""Which (query, key) pairs are visible: the spec's masks ANDed, then padding.

Every plan and ``attnkit explain`` ask :func:`visible`; they differ only in the index grids
they ask about (every pair, a block of queries against its keys, each query's window).
"""

from __future__ import annotations

from typing import Any

from keras import ops

__all__ = ["combined_reach", "hide_unseen", "rows_see_a_key", "visible"]


def visible(masks, q_idx: Any, k_idx: Any, *padding: Any) -> Any:
    """``AND_m m.allowed(q_idx, k_idx) AND AND_p p``, or None when nothing is hidden.

    Args:
        masks: structural masks (ANDed; none means every key).
        q_idx: integer positions of the queries, broadcastable against ``k_idx``, e.g.
            (1, Tq, 1) or the queries' positions (B, Tq, 1).
        k_idx: integer positions of the keys, e.g. (1, 1, Tk) or a window (1, Tq, W).
        *padding: booleans laid out on the same grid (None entries are skipped): the keys'
            padding (B, 1, Tk), the queries' (B, Tq, 1), a window's (B, Tq, W).

    Returns:
        A boolean tensor of the broadcast shape, or None.
    """
    allowed = None
    for mask in masks:
        allowed = _and(allowed, mask.allowed(q_idx, k_idx))
    for valid in padding:
        if valid is not None:
            allowed = _and(allowed, valid)
    return allowed


def _and(a, b):
    return b if a is None else ops.logical_and(a, b)


def combined_reach(masks) -> tuple[int | None, int | None]:
    """The reach of the AND of ``masks``: the tightest (back, ahead) bound on each side of a
    query, None for unbounded."""
    back = ahead = None
    for mask in masks:
        b, a = mask.reach()
        back = b if back is None else (back if b is None else min(back, b))
        ahead = a if ahead is None else (ahead if a is None else min(ahead, a))
    return back, ahead


def rows_see_a_key(masks, key_valid: Any = None, query_valid: Any = None) -> bool:
    """Whether every query is sure to see a key: each mask is exactly full or causal (causal
    query i >= 0 sees key 0 whatever the lengths) and nothing is padded. The masked softmax
    then needs no zeroing pass (:func:`attnkit.masked_softmax`)."""
    if key_valid is not None or query_valid is not None:
        return False
    return all(mask.kernel_form() is not None for mask in masks)


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
