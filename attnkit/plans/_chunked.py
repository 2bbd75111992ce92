"""The chunked plan: query blocks, each scored against only the keys its masks can allow.

Memory is O(B x block x Tk) instead of O(B x Tq x Tk), times the scorer's pair width, and
``causal`` skips the future key blocks: about half the work. Each block scores its whole row
of visible keys at once, so it needs no running (online) softmax. In a training step the
blocks are recomputed in the backward pass (:func:`attnkit.backend.remat`), except a plain product's
while what they keep stays under ``REMAT_ABOVE`` (:func:`rematerialises`).

How the blocks run depends on the backend (:mod:`attnkit.plans._blocks`): inside a computation
compiled as a whole (JAX, ``jit_compile=True``) as loops, which XLA executes one block at a
time; op by op as one call per block, a pairwise scorer's inference blocks compiled into fused
kernels where the backend can fuse (:func:`attnkit.backend.fused`). Dropout draws each block's
mask statelessly from one seed per call (:mod:`attnkit.plans._dropout`), the same again when
the block is recomputed.
"""

from __future__ import annotations

from keras import ops

from attnkit.backend import compiling, fused
from attnkit.numerics import masked_softmax
from attnkit.plans import _limits
from attnkit.plans._blocks import block_call, looped, unrolled
from attnkit.plans._checks import checked_scores
from attnkit.plans._visibility import combined_reach, hide_unseen, rows_see_a_key, visible
from attnkit.plans._work import Outcome, Work

__all__ = ["block_size", "chunked", "rematerialises"]


def chunked(work: Work) -> Outcome:
    """Context (B, Tq, Dv) one query block at a time, each against the keys its masks allow."""
    spans, block = _spans(work)
    names = tuple(sorted(work.params))
    n_extra = (work.key_valid is not None) + (work.query_valid is not None)
    # Masks that are exactly full or causal (kernel_form) let a block's last query see every
    # key of its span, so no key needs hiding (padded keys are zeroed by the layer); a padded
    # query may leave keys unseen. Skipping the two wheres saves a pass over the keys.
    hide = work.query_valid is not None or not rows_see_a_key(work.masks)
    seen = rows_see_a_key(work.masks, work.key_valid, work.query_valid)
    shape = (work.scorer, tuple(work.masks), work.activation, names, n_extra)
    # One seed per call, drawn here: a block in a loop or recomputed for the backward pass
    # cannot advance the layer's generator.
    per_block = None if work.dropout is None else work.dropout.per_block()

    def block_function(hide_keys):
        return _block_function(*shape, hide_keys, seen, per_block)

    weights = [work.params[name] for name in names]
    tensors = (work.query, work.key, work.value, work.key_valid, work.query_valid, weights)
    remat = work.training and rematerialises(spans, work.pair_width)
    if compiling(work.query):
        context = looped(block_function, n_extra, hide, *tensors, spans, block, remat)
        return Outcome(context, query_valid=work.query_valid)
    if work.training:
        compute = block_call(block_function(hide), n_extra, remat=remat)
    elif work.pair_width > 1:
        # Pairwise elementwise work (additive scorers) dominates: fuse it. A plain product's
        # time is its matmuls, which the backend's own kernels do best.
        compute = fused(_block_function, *shape, hide, seen)
    else:
        compute = block_function(hide)
    return Outcome(unrolled(compute, *tensors, spans), query_valid=work.query_valid)


def _spans(work: Work) -> tuple[list[tuple[int, int, int, int]], int]:
    """The blocks ``(start, stop, lo, hi)``: queries ``start:stop`` against keys ``lo:hi``,
    and the block size."""
    steps_q, steps_k = int(work.query.shape[1]), int(work.key.shape[1])
    back, ahead = combined_reach(work.masks)
    reach = None if back is None or ahead is None else back + ahead
    block = min(block_size(steps_k, work.pair_width, reach), steps_q)
    while -(-steps_q // block) > 256:  # keep the unrolled graph small
        block *= 2
    spans = []
    for start in range(0, steps_q, block):
        stop = min(start + block, steps_q)
        lo = 0 if back is None else max(0, start - back)
        hi = steps_k if ahead is None else min(steps_k, stop - 1 + ahead + 1)
        spans.append((start, stop, lo, hi))
    return spans, block


def block_size(steps_k: int, pair_width: int, reach: int | None = None) -> int:
    """The largest power-of-two query block whose key span x pair width fits ``CHUNK_TARGET``.

    With a bounded reach a block of b queries sees at most b + reach keys, so long sequences
    under ``local<w>`` stay linear in T. A pairwise scorer keeps several (block, span, units)
    intermediates alive at once (the sum, its tanh and, in training, their gradients), so it
    gets a quarter of the target; a plain product keeps its big blocks, which run faster.
    """
    block = 16
    target = _limits.CHUNK_TARGET if pair_width == 1 else _limits.CHUNK_TARGET // 4
    while True:
        span = steps_k if reach is None else min(steps_k, 2 * block + reach)
        if 2 * block * span * pair_width > target:
            return block
        block *= 2


def rematerialises(spans, pair_width: int) -> bool:
    """Whether a training step recomputes the blocks in its backward pass rather than keeping
    what they computed: always for a pairwise scorer (it would keep several floats per pair
    and unit), and for a plain product once its blocks score more than ``REMAT_ABOVE`` pairs
    per sample. Below that, what a plain product's blocks keep is a fraction of what the
    dense plan keeps, and recomputing them would cost a forward pass."""
    pairs = sum((stop - start) * (hi - lo) for start, stop, lo, hi in spans)
    return pair_width > 1 or pairs > _limits.REMAT_ABOVE


def _block_function(scorer, masks, activation, names, n_extra, hide, seen, dropout=None):
    """The context of one query block: ``f(q, k, v, first, *valid, *params)``.

    Everything the block differentiates is an argument: rematerialisation (TensorFlow's
    recompute_grad) gives no gradient to tensors a function captures. The block's first query
    and key indices are arguments too, so one traced function serves every block of a shape."""

    def one_block(q, k, v, first, *rest):
        valid, weights_in = rest[:n_extra], rest[n_extra:]
        block_params = dict(zip(names, weights_in, strict=True))
        q_idx = ops.reshape(first[0] + ops.arange(ops.shape(q)[1], dtype="int32"), (1, -1, 1))
        k_idx = ops.reshape(first[1] + ops.arange(ops.shape(k)[1], dtype="int32"), (1, 1, -1))
        allowed = visible(masks, q_idx, k_idx, *valid)
        if hide and allowed is not None:
            k, v = hide_unseen(allowed, k, v)
        scores = checked_scores(scorer, block_params, q, k, activation, "chunked")
        weights = masked_softmax(scores, allowed, rows_see_a_key=seen)
        if dropout is not None:  # a BlockDropout: the block's mask from its first query
            weights = dropout(weights, first[0])
        return ops.matmul(weights, v)

    return one_block
