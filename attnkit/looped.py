"""The chunked plan's training blocks as a loop, for a step that is compiled as a whole.

Unrolled, every rematerialised query block is its own stretch of the compiled computation, and
XLA schedules them so that the buffers of all of them are alive at once: a full ``additive``
training step at T=1024, batch 32, peaked at 9.8 GiB under TensorFlow's XLA and 8.7 GiB under
JAX, against 2.6 GiB op by op (benchmarks/README.md, sixth session). In a loop
(``keras.ops.map``) XLA runs one block at a time, and the rematerialised body leaves only its
inputs for the backward pass.

A loop wants one shape per iteration. Queries come in blocks of one size (a shorter last block
runs on its own). Keys do not: under ``causal`` block i sees the i + 1 first key blocks. So
blocks are grouped, at most :data:`GROUPS` runs of consecutive blocks, and every block of a
group takes the group's widest key span, shifted to stay inside the sequence. The masks still
decide which keys a query sees; the extra keys are hidden from the block (zeroed, as the
masked softmax needs), so causal does about (GROUPS + 1) / GROUPS of the work it needs
unrolled. Windows (``local<w>``) and ``full`` have one span: one loop.
"""

from __future__ import annotations

import numpy as np
from keras import ops

__all__ = ["GROUPS", "groups", "looped"]

#: Most loops per layer: causal's key spans padded to the widest of a group cost at most
#: 1 / GROUPS more work than the spans themselves.
GROUPS = 8


def groups(spans, block: int) -> list[tuple[list, int]]:
    """The blocks ``(start, stop, lo, hi)`` in consecutive groups, each with the key span its
    blocks share: the widest of the group. Blocks of ``block`` queries that see a key are
    grouped, at most :data:`GROUPS` groups per run of them; any other block (the shorter last
    one, one that sees no key: span 0) is a group of its own."""
    out: list[tuple[list, int]] = []
    run: list = []

    def close_run():
        if not run:
            return
        merged: list[tuple[list, int]] = []
        for part in np.array_split(np.arange(len(run)), min(GROUPS, len(run))):
            members = [run[i] for i in part]
            width = max(hi - lo for _, _, lo, hi in members)
            if merged and merged[-1][1] == width:  # the previous part's span: one loop
                merged[-1][0].extend(members)
            else:
                merged.append((members, width))
        out.extend(merged)
        run.clear()

    for item in spans:
        start, stop, lo, hi = item
        if stop - start == block and hi > lo:
            run.append(item)
            continue
        close_run()
        out.append(([item], max(hi - lo, 0)))
    close_run()
    return out


def looped(make, hide: bool, query, key, value, key_valid, query_valid, weights, spans, block):
    """Context (B, Tq, Dv) from ``make(hide_keys)``'s block function ``f(q, k, v, first,
    *valid, *weights)``, one group of blocks per loop (:func:`groups`). ``hide``: whether the
    blocks must zero keys no query of theirs may see even when they get exactly their keys."""
    steps_k = int(key.shape[1])
    outputs = []
    for members, width in groups(spans, block):
        if width == 0:
            start, stop = members[0][:2]
            outputs.append(
                ops.zeros((ops.shape(value)[0], stop - start, value.shape[-1]), value.dtype)
            )
            continue
        padded = any(hi - lo < width for _, _, lo, hi in members)
        compute = make(hide or padded)
        firsts = np.array([[start, min(lo, steps_k - width)] for start, _, lo, _ in members])
        if len(members) == 1:
            start, stop = members[0][:2]
            lo = int(firsts[0, 1])
            extras = _valid(key_valid, query_valid, lo, width, start, stop)
            outputs.append(
                compute(
                    query[:, start:stop],
                    key[:, lo : lo + width],
                    value[:, lo : lo + width],
                    ops.convert_to_tensor(firsts[0].astype("int32")),
                    *extras,
                    *weights,
                )
            )
            continue
        outputs.append(
            _loop(compute, query, key, value, key_valid, query_valid, weights, firsts, width, block)
        )
    return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)


def _loop(compute, query, key, value, key_valid, query_valid, weights, firsts, width, block):
    count, start = len(firsts), int(firsts[0, 0])
    stop = start + count * block
    xs = [_blocks(query[:, start:stop], count, block), ops.convert_to_tensor(firsts, "int32")]
    if query_valid is not None:
        xs.append(_blocks(query_valid[:, start:stop], count, block))

    def body(x):
        q, first = x[0], x[1]
        lo = first[1]
        extras = []
        if key_valid is not None:
            extras.append(ops.expand_dims(_window(key_valid, lo, width), 1))
        if query_valid is not None:
            extras.append(ops.expand_dims(x[2], -1))
        k, v = _window(key, lo, width), _window(value, lo, width)
        return compute(q, k, v, first, *extras, *weights)

    out = ops.map(body, tuple(xs))  # (count, B, block, Dv)
    out = ops.transpose(out, (1, 0, 2, 3))
    return ops.reshape(out, (-1, count * block, value.shape[-1]))


def _blocks(tensor, count: int, block: int):
    """(B, count * block, ...) -> (count, B, block, ...): the loop runs over the first axis."""
    rest = tuple(tensor.shape[2:])
    split = ops.reshape(tensor, (-1, count, block, *rest))
    return ops.transpose(split, (1, 0, *range(2, split.ndim)))


def _window(tensor, lo, width: int):
    """``tensor[:, lo:lo + width]`` with ``lo`` a tensor (a loop index)."""
    rest = tuple(tensor.shape[2:])
    starts = [0, lo, *([0] * len(rest))]
    return ops.slice(tensor, starts, [ops.shape(tensor)[0], width, *rest])


def _valid(key_valid, query_valid, lo, width, start, stop) -> list:
    extras = []
    if key_valid is not None:
        extras.append(ops.expand_dims(key_valid[:, lo : lo + width], 1))
    if query_valid is not None:
        extras.append(ops.expand_dims(query_valid[:, start:stop], -1))
    return extras
