"""The banded plan: each query scores only the W = back + 1 + ahead keys its masks' reach
allows, so time and memory are O(B T W) instead of O(B T^2).

Two ways to score a window, chosen by the scorer, never by its name:

- a scorer that splits into per-step features and a per-pair part (:meth:`Scorer.project` and
  :meth:`Scorer.pair`) has every key projected once and is scored one window offset at a time,
  ``s[b, i, o] = pair(q'[b, i], k'[b, i - back + o])`` (:meth:`Scorer.window`): W passes over
  (B, T, P) features, no gathered copies, memory O(B T (W + P)) at any length. On TensorFlow
  the pass runs as one XLA computation (:func:`attnkit.backend.fused`), so the projections and
  the offsets' elementwise work fuse. Training takes the same pass: in a model, where the
  layer's inputs need gradients, the gradient of gathered windows is the slow part;
- any other scorer, and any call with dropout, sees each query as its own batch row,
  (B*T, 1, Dq) against its gathered window (B*T, W, Dk), which the conformance suite's
  batch-independence check guarantees is the same formula.

Either way the values are summed by :func:`attnkit.plans._window_sum.window_sum`.
"""

from __future__ import annotations

from keras import ops

from attnkit.backend import fused
from attnkit.numerics import masked_softmax
from attnkit.plans import _limits
from attnkit.plans._checks import checked_scores, checked_window, splits
from attnkit.plans._visibility import combined_reach, visible
from attnkit.plans._window_sum import pad_steps, window_sum
from attnkit.plans._work import Outcome, Work

__all__ = ["banded"]


def banded(work: Work) -> Outcome:
    """Context (B, Tq, Dv) scoring each query against its window only."""
    if not splits(work.scorer) or work.dropout is not None:
        return Outcome(_gathered(work), query_valid=work.query_valid)
    back, ahead = combined_reach(work.masks)
    names = tuple(sorted(work.params))
    extras = [t for t in (work.key_valid, work.query_valid) if t is not None]
    flags = (work.key_valid is not None, work.query_valid is not None)
    shape = (work.scorer, tuple(work.masks), work.activation, names, back, ahead, flags)
    shape += (work.training,)
    steps, width = work.query.shape[1], back + ahead + 1
    features = max(work.key.shape[-1] or 1, work.pair_width)
    # Only Python ints: None and JAX's symbolic dimensions (shape polymorphism) are unknown.
    if isinstance(steps, int) and steps * width * features >= _limits.FUSE_ABOVE:
        compute = fused(_offset_function, *shape)
    else:
        compute = _offset_function(*shape)
    params = (work.params[n] for n in names)
    context = compute(work.query, work.key, work.value, *extras, *params)
    return Outcome(context, query_valid=work.query_valid)


def _offset_function(scorer, masks, activation, names, back, ahead, flags, training):
    """``f(q, k, v, *valid, *params)``: the context of every query, its keys projected once
    (:meth:`Scorer.project`) and scored one window offset at a time. The projections run
    inside, so that compiled the whole pass is one XLA computation. Everything it
    differentiates is an argument, so one compiled function serves every layer with this
    scorer, these masks and these names."""
    width = back + ahead + 1
    has_key_valid, has_query_valid = flags

    def attend(query, key, value, *rest):
        n_valid = has_key_valid + has_query_valid
        valid, weights_in = rest[:n_valid], rest[n_valid:]
        params = dict(zip(names, weights_in, strict=True))
        key_valid = valid[0] if has_key_valid else None
        query_valid = valid[-1] if has_query_valid else None
        allowed = _allowed(masks, query, key, back, ahead, key_valid, query_valid)
        features = scorer.project(params, query, key)
        if features is None:  # a scorer may decline the split, e.g. for some parameters
            window_scores = _gathered_scores(scorer, params, query, key, back, ahead, activation)
        else:
            q_feat, k_feat = features
            k_feat = pad_steps(k_feat, back, ahead)
            window_scores = checked_window(scorer, params, q_feat, k_feat, width, "banded")
            if activation is not None:
                window_scores = activation(window_scores)
        # Full-shape, not broadcast: XLA's CPU gradient of a broadcast where after a softmax
        # is several times slower.
        allowed = ops.broadcast_to(allowed, ops.shape(window_scores))
        weights = masked_softmax(window_scores, allowed)
        return window_sum(weights, value, back, ahead, training)

    return attend


def _gathered(work: Work):
    back, ahead = combined_reach(work.masks)
    window_scores = _gathered_scores(
        work.scorer, work.params, work.query, work.key, back, ahead, work.activation
    )
    allowed = _allowed(
        work.masks, work.query, work.key, back, ahead, work.key_valid, work.query_valid
    )
    weights = masked_softmax(window_scores, allowed)
    if work.dropout is not None:
        weights = work.dropout(weights)
    return window_sum(weights, work.value, back, ahead, work.training)


def _gathered_scores(scorer, params, query, key, back: int, ahead: int, activation):
    """(B, Tq, W) scores of each query against its gathered window of keys, each query its
    own batch row: (B*Tq, 1, Dq) against (B*Tq, W, Dk)."""
    width = back + ahead + 1
    batch, steps_q = ops.shape(query)[0], ops.shape(query)[1]
    keys = _gather_windows(key, back, ahead, steps_q)  # (B, Tq, W, Dk)
    flat_q = ops.reshape(query, (-1, 1, ops.shape(query)[-1]))
    flat_k = ops.reshape(keys, (-1, width, ops.shape(key)[-1]))
    return ops.reshape(
        checked_scores(scorer, params, flat_q, flat_k, activation, "banded"),
        (batch, steps_q, width),
    )


def _allowed(masks, query, key, back: int, ahead: int, key_valid, query_valid):
    """(B or 1, Tq, W): whether query i may see key i - back + o, that key existing."""
    steps_q, steps_k = ops.shape(query)[1], ops.shape(key)[1]
    q_idx = ops.reshape(ops.arange(steps_q, dtype="int32"), (1, -1, 1))
    offsets = ops.reshape(ops.arange(back + ahead + 1, dtype="int32"), (1, 1, -1))
    k_idx = q_idx - back + offsets
    inside = ops.logical_and(ops.greater_equal(k_idx, 0), ops.less(k_idx, steps_k))
    key_window = None
    if key_valid is not None:
        flags = ops.expand_dims(ops.cast(key_valid, "int8"), -1)
        key_window = ops.greater(_gather_windows(flags, back, ahead, steps_q)[..., 0], 0)
    if query_valid is not None:
        query_valid = ops.expand_dims(query_valid, -1)
    return visible(masks, q_idx, k_idx, inside, key_window, query_valid)


def _gather_windows(tensor, back: int, ahead: int, steps_q):
    """(B, Tk, D) -> (B, Tq, W, D): for query i the rows i-back .. i+ahead (zeros outside)."""
    padded = pad_steps(tensor, back, ahead)
    width = back + ahead + 1
    return ops.stack([padded[:, o : o + steps_q, :] for o in range(width)], axis=2)
