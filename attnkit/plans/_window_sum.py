"""The banded plan's weighted sum, ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]``, two ways.

- :func:`band_matmul`: one batched matmul per block of queries, its band of weights laid out
  as a dense matrix (the skew trick). Its gradient is two matmuls; it is the fast form op by
  op and for training.
- W shifted products (:func:`window_sum` inside a compiled inference pass), which XLA fuses
  into one loop; their gradient is the slow one.
"""

from __future__ import annotations

from keras import ops

from attnkit.backend import compiling

__all__ = ["band_matmul", "pad_steps", "window_sum"]


def band_matmul(weights, value, back: int, ahead: int, block: int | None = None):
    """The context of window weights: ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]``, a
    value outside the sequence counting as zero. Weights (B, T, W), values (B, T, Dv).

    Computed as one batched matmul per block of ``block`` queries: block j's band of weights is
    laid out as a dense (block, block + W - 1) matrix (each row shifted by its index: pad,
    flatten, trim, reshape; no scatter) against the block + W - 1 values it reaches. That does
    (block + W - 1) / W times the multiply-adds of W shifted products, in the backend's matmul,
    and its gradient is two matmuls and the inverse reshapes, where the shifted products'
    gradient is W slices and pad-and-adds (``python -m benchmarks.profile_band_matmul``
    compares the two).

    A block's matmul multiplies each row's zero weights outside its window by the block's other
    values, and 0 * inf is NaN: an infinite or NaN value would reach rows that cannot see it
    (guarantee N5, docs/guarantees.md). So non-finite entries are summed as zeros, and the rows
    whose window holds one are set to NaN in that feature: every other row, and every other
    sample, is bit for bit what it would be without them."""
    bad = ops.logical_not(ops.isfinite(value))
    context = _blocked(weights, ops.where(bad, ops.zeros_like(value), value), back, ahead, block)
    seen = ops.greater(_window_max(ops.cast(bad, value.dtype), back, ahead), 0)
    return ops.where(seen, ops.full_like(context, float("nan")), context)


def window_sum(weights, value, back: int, ahead: int, training: bool):
    """:func:`band_matmul`'s sum, ``c[b, i] = sum_o w[b, i, o] v[b, i - back + o]``, the
    fastest way for this call. Inference inside a compiled computation takes W shifted
    products: XLA fuses them into one loop, which beats the block matmuls, and a value only
    ever meets its own window's weights, so nothing needs containing. Their gradient is the
    slow one, and op by op they are slower too, so training and op-by-op passes take
    :func:`band_matmul`."""
    if training or not compiling(value):
        return band_matmul(weights, value, back, ahead)
    steps = ops.shape(weights)[1]
    padded = pad_steps(value, back, ahead)
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
    about log2(W) elementwise ops, which fuse into one loop under XLA and stay few op by op
    (a running count with ``cumsum`` costs more passes). Floats, not booleans:
    torch.compile's CPU code generator fails on padded booleans."""
    steps, width = ops.shape(flags)[1], back + ahead + 1
    padded, span = pad_steps(flags, back, ahead), 1
    while 2 * span <= width:
        padded = ops.maximum(padded[:, :-span], padded[:, span:])
        span *= 2
    return ops.maximum(padded[:, :steps], padded[:, width - span : width - span + steps])


def pad_steps(tensor, back: int, ahead: int):
    """(B, T, D) -> (B, back + T + ahead, D), zeros before and after."""
    return ops.pad(tensor, [[0, 0], [back, ahead], [0, 0]])
