"""The banded plan: each query scores only the W = back + 1 + ahead keys its masks' reach
allows, so time and memory are O(B T W) instead of O(B T^2).

Two ways to score a window, chosen by the scorer, never by its name:

- a scorer that splits into per-step features and a per-pair part (:meth:`Scorer.project` and
  :meth:`Scorer.pair`) has every key projected once and is scored one window offset at a time,
  ``s[b, i, o] = pair(q'[b, i], k'[b, i - back + o])``: W passes over (B, T, P) features, no
  gathered copies. On TensorFlow the pass runs as one XLA computation (:mod:`attnkit.fusion`),
  so the projections and the offsets' elementwise work fuse: about 4x faster than gathered
  windows for ``additive+local15`` at T=1024 (10.2 vs 47.2 ms, benchmarks/profile_banded.py),
  and memory O(B T (W + P)) at any length. Training takes the same pass (see :func:`banded`);
- any other scorer sees each query as its own batch row, (B*T, 1, Dq) against its gathered
  window (B*T, W, Dk), which the conformance suite's batch-independence check guarantees is
  the same formula.
"""

from __future__ import annotations

from keras import ops

from attnkit.fusion import compiling, fused
from attnkit.ops import masked_softmax
from attnkit.scoring import checked_scores, checked_window, combined_reach, splits

__all__ = ["FUSE_ABOVE", "band_matmul", "banded", "window_sum"]

#: Window features per sample, T x W x max(Dk, pair width), from which the offset pass is
#: compiled as one fused computation (the projected width is known only once projected).
#: Below it, or with a length unknown when the graph is built, the pass runs op by op:
#: compiling takes about a second, per length, and small windows do not repay it.
FUSE_ABOVE = 2**16


def banded(
    scorer,
    params,
    prepared,
    value,
    masks,
    key_valid,
    activation,
    dropout,
    pair_width: int = 1,
    training: bool = False,
):
    """Context (B, Tq, Dv) scoring each query against its window only.

    Training takes the offset pass too. In a model, where the layer's inputs need gradients,
    gathered windows' gradient is the slow part: additive+local15 at T=1024, batch 32, with a
    ``Dense`` below it trained in 95 ms per step on the offset pass against 430 ms gathered
    (TensorFlow op by op, the pass compiled by :func:`attnkit.fusion.fused`) and 136 against
    467 ms (PyTorch); inside a step compiled as a whole (JAX, ``jit_compile=True``) it fuses
    with the step. Dropout on the weights scores gathered windows of keys; either way the
    values are summed by :func:`window_sum` (``training``: the sum a gradient is fast for)."""
    if not splits(scorer) or dropout is not None:
        return _gathered(
            scorer, params, prepared, value, masks, key_valid, activation, dropout, training
        )
    back, ahead = combined_reach(masks)
    names = tuple(sorted(params))
    extras = [t for t in (key_valid, prepared.valid) if t is not None]
    flags = (key_valid is not None, prepared.valid is not None)
    shape = (scorer, tuple(masks), activation, names, back, ahead, flags, training)
    steps, width = prepared.query.shape[1], back + ahead + 1
    features = max(prepared.key.shape[-1] or 1, pair_width)
    # Only Python ints: None and JAX's symbolic dimensions (shape polymorphism) are unknown.
    if isinstance(steps, int) and steps * width * features >= FUSE_ABOVE:
        compute = fused(_offset_function, *shape)
    else:
        compute = _offset_function(*shape)
    return compute(prepared.query, prepared.key, value, *extras, *(params[n] for n in names))


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
        steps = ops.shape(query)[1]
        allowed = _allowed(masks, steps, ops.shape(key)[1], back, ahead, key_valid, query_valid)
        features = scorer.project(params, query, key)
        if features is None:  # a scorer may decline the split, e.g. for some parameters
            window_scores = _gathered_scores(scorer, params, query, key, back, ahead, activation)
        else:
            q_feat, k_feat = features
            k_feat = _pad_steps(k_feat, back, ahead)
            window_scores = checked_window(scorer, params, q_feat, k_feat, width, "banded")
            if activation is not None:
                window_scores = activation(window_scores)
        # Full-shape, not broadcast: XLA's CPU gradient of a broadcast where after a softmax
        # measured 3x slower (190 vs 65 ms per step for additive+local15 at T=1024).
        allowed = ops.broadcast_to(allowed, ops.shape(window_scores))
        weights = masked_softmax(window_scores, allowed)
        return window_sum(weights, value, back, ahead, training)

    return attend


def _gathered(scorer, params, prepared, value, masks, key_valid, activation, dropout, training):
    back, ahead = combined_reach(masks)
    query, key = prepared.query, prepared.key
    steps_q = ops.shape(query)[1]
    window_scores = _gathered_scores(scorer, params, query, key, back, ahead, activation)
    allowed = _allowed(masks, steps_q, ops.shape(key)[1], back, ahead, key_valid, prepared.valid)
    weights = masked_softmax(window_scores, allowed)
    if dropout is not None:
        weights = dropout(weights)
    return window_sum(weights, value, back, ahead, training)


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


def _allowed(masks, steps_q, steps_k, back: int, ahead: int, key_valid, query_valid):
    """(B or 1, Tq, W): whether query i may see key i - back + o, that key existing."""
    width = back + ahead + 1
    q_idx = ops.reshape(ops.arange(steps_q, dtype="int32"), (1, -1, 1))
    offsets = ops.reshape(ops.arange(width, dtype="int32"), (1, 1, -1))
    k_idx = q_idx - back + offsets
    allowed = ops.logical_and(ops.greater_equal(k_idx, 0), ops.less(k_idx, steps_k))
    for mask in masks:
        allowed = ops.logical_and(allowed, mask.allowed(q_idx, k_idx))
    if key_valid is not None:
        valid = _gather_windows(
            ops.expand_dims(ops.cast(key_valid, "int8"), -1), back, ahead, steps_q
        )
        allowed = ops.logical_and(allowed, ops.greater(valid[..., 0], 0))
    if query_valid is not None:
        allowed = ops.logical_and(allowed, ops.expand_dims(query_valid, -1))
    return allowed


def band_matmul(weights, value, back: int, ahead: int, block: int | None = None):
    """The context of window weights: ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]``, a
    value outside the sequence counting as zero. Weights (B, T, W), values (B, T, Dv).

    Computed as one batched matmul per block of ``block`` queries: block j's band of weights is
    laid out as a dense (block, block + W - 1) matrix (each row shifted by its index: pad,
    flatten, trim, reshape; no scatter) against the block + W - 1 values it reaches. That does
    (block + W - 1) / W times the multiply-adds of W shifted products, in the backend's matmul,
    and its gradient is two matmuls and the inverse reshapes. The W shifted products' gradients
    were the slow part of a banded training step: for W=15 at T=1024, batch 32, 64 features,
    the sum and its gradient took 250-273 ms as shifted products and 29 ms as block matmuls op
    by op, 43-46 against 20-23 ms under XLA (TensorFlow, 2 CPU cores;
    ``python -m benchmarks.profile_band_matmul``, benchmarks/README.md, "Ninth session").

    A block's matmul multiplies each row's zero weights outside its window by the block's other
    values, and 0 * inf is NaN: an infinite or NaN value would reach rows that cannot see it
    (shared/reliability.md, N5). So non-finite entries are summed as zeros, and the rows whose
    window holds one are set to NaN in that feature: every other row, and every other sample,
    is bit for bit what it would be without them."""
    bad = ops.logical_not(ops.isfinite(value))
    context = _blocked(weights, ops.where(bad, ops.zeros_like(value), value), back, ahead, block)
    seen = ops.greater(_window_max(ops.cast(bad, value.dtype), back, ahead), 0)
    return ops.where(seen, ops.full_like(context, float("nan")), context)


def window_sum(weights, value, back: int, ahead: int, training: bool):
    """:func:`band_matmul`'s sum, ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]``, the
    fastest way for this call. Inference inside a compiled computation takes W shifted
    products: XLA fuses them into one loop, 2.1 against 3.7 ms for the block matmuls (batch
    32, T=1024, 64 features, W=15), and a value only ever meets its own window's weights, so
    nothing needs containing. Their gradient is the slow one (a training step of
    additive+local15 took 49-57 against 35 ms), and op by op they are (12.5 against 8.4 ms),
    so training and op-by-op passes take :func:`band_matmul`."""
    if training or not compiling(value):
        return band_matmul(weights, value, back, ahead)
    steps = ops.shape(weights)[1]
    padded = _pad_steps(value, back, ahead)
    context = None
    for o in range(back + ahead + 1):
        term = weights[:, :, o : o + 1] * padded[:, o : o + steps]
        context = term if context is None else context + term
    return context


def _blocked(weights, value, back: int, ahead: int, block: int | None):
    width = back + ahead + 1
    if block is None:
        block = max(16, 1 << (width - 1).bit_length())  # W <= block: at most 2x the work
    batch, steps, features = ops.shape(weights)[0], ops.shape(weights)[1], value.shape[-1]
    count = (steps + block - 1) // block
    extra = count * block - steps
    weights = ops.pad(weights, [[0, 0], [0, extra], [0, 0]])
    value = ops.pad(value, [[0, 0], [back, ahead + extra], [0, 0]])
    reach = block + width - 1
    rows = ops.reshape(
        ops.expand_dims(ops.arange(count, dtype="int32") * block, 1)
        + ops.expand_dims(ops.arange(reach, dtype="int32"), 0),
        (-1,),
    )
    values = ops.reshape(ops.take(value, rows, axis=1), (batch, count, reach, features))
    # Row r padded to W + block entries, flattened and trimmed by `block` entries, reads back
    # in rows of W + block - 1: entry (r, c) is then w[r, c - r], zero off the band.
    dense = ops.pad(ops.reshape(weights, (batch, count, block, width)), [[0, 0]] * 3 + [[0, block]])
    dense = ops.reshape(dense, (batch, count, block * (width + block)))[:, :, : block * reach]
    dense = ops.reshape(dense, (batch, count, block, reach))
    context = ops.reshape(ops.matmul(dense, values), (batch, count * block, features))
    return context[:, :steps]


def _window_max(flags, back: int, ahead: int):
    """(B, T, D) -> the largest of rows i - back .. i + ahead, zero outside, per feature.
    Windows of 1, 2, 4, ... rows, each the larger of two halves, then two overlapping ones:
    about log2(W) elementwise ops, which fuse into one loop under XLA and stay few op by op (a
    running count, ``cumsum``, cost 7-48 ms more per additive+local15 step at T=1024 on
    TensorFlow, where this costs 0-12 ms). Floats, not booleans:
    torch.compile's CPU code generator fails on padded booleans."""
    steps, width = ops.shape(flags)[1], back + ahead + 1
    padded, span = _pad_steps(flags, back, ahead), 1
    while 2 * span <= width:
        padded = ops.maximum(padded[:, :-span], padded[:, span:])
        span *= 2
    return ops.maximum(padded[:, :steps], padded[:, width - span : width - span + steps])


def _pad_steps(tensor, back: int, ahead: int):
    return ops.pad(tensor, [[0, 0], [back, ahead], [0, 0]])


def _gather_windows(tensor, back: int, ahead: int, steps_q):
    """(B, Tk, D) -> (B, Tq, W, D): for query i the rows i-back .. i+ahead (zeros outside)."""
    padded = _pad_steps(tensor, back, ahead)
    width = back + ahead + 1
    return ops.stack([padded[:, o : o + steps_q, :] for o in range(width)], axis=2)
