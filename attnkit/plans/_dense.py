"""The dense plan: scores for every (query, key) pair at once, (B, Tq, Tk).

The fastest plan for short sequences, and the only one that holds every weight at once, so
it runs whenever the weights themselves are wanted: returned, regularised, or read by a
pooling.
"""

from __future__ import annotations

from keras import ops

from attnkit.debug import check_stage
from attnkit.inputs import static
from attnkit.numerics import masked_softmax
from attnkit.plans._checks import check_scores
from attnkit.plans._visibility import hide_unseen, rows_see_a_key, visible
from attnkit.plans._work import Outcome, Work

__all__ = ["dense"]


def dense(work: Work) -> Outcome:
    """``a = masked_softmax(act(score(q, k)), allowed)``, ``c = dropout(a) @ v``.

    Keys the masks hide from every query (causal with Tk > Tq, a many-to-one query's window)
    are zeroed before the scorer sees them (:func:`hide_unseen`), so what they hold reaches no
    output and no gradient. A query that sees no key gets zero weights and counts as padding
    in the outcome, so a many-to-one output whose query saw nothing is zero, like a seq row
    with nothing visible.
    """
    allowed = _allowed(work)
    key, value = work.key, work.value
    if allowed is not None and work.masks:
        key, value = hide_unseen(allowed, key, value)
    scores = work.scorer.score(work.params, work.query, key)
    check_scores(work.scorer, scores, work.query, key, "dense")
    scores = ops.cast(scores, work.query.dtype)
    # Only the scores the masks let through are ever used.
    scores = check_stage(scores, work.owner, "the scores", work.scorer, allowed)
    if work.activation is not None:
        scores = work.activation(scores)
    seen = work.pooling.aligned and rows_see_a_key(work.masks, work.key_valid, work.query_valid)
    softmax = masked_softmax(scores, allowed, rows_see_a_key=seen)
    softmax = check_stage(softmax, work.owner, "the attention weights (activation, masked softmax)")
    weights = softmax if work.dropout is None else work.dropout(softmax)
    context = ops.matmul(weights, value) if work.pooling.uses_context else None
    return Outcome(context, weights, softmax, allowed, _counted(work, allowed))


def _allowed(work: Work):
    """The boolean (B or 1, Tq, Tk) of keys each query may see, or None for all."""
    key_valid = None if work.key_valid is None else ops.expand_dims(work.key_valid, 1)
    query_valid = None if work.query_valid is None else ops.expand_dims(work.query_valid, -1)
    if not work.masks:
        return visible((), None, None, key_valid, query_valid)
    q_idx = ops.expand_dims(work.positions, -1)
    k_idx = ops.reshape(ops.arange(ops.shape(work.key)[1], dtype="int32"), (1, 1, -1))
    return visible(work.masks, q_idx, k_idx, key_valid, query_valid)


def _counted(work: Work, allowed):
    """The queries whose output counts: those that see a key."""
    if allowed is not None:
        return ops.any(allowed, axis=-1)
    if work.pooling.many_to_one and not (static(work.key.shape[1]) or 0) > 0:
        # Unmasked, a query sees every key: none at all when there are no keys (Tk = 0),
        # and then last(units)'s tanh(W_c [0; h_t]) must be zeroed too.
        seen = ops.greater(ops.shape(work.key)[1], 0)
        return ops.broadcast_to(seen, ops.shape(work.query)[:2])
    return work.query_valid
