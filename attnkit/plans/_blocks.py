"""How the chunked plan runs its query blocks: one call each (:func:`unrolled`), or in loops
(:func:`looped`) inside a computation that is compiled as a whole.

Unrolled, the query blocks do not stay blocks under XLA. For inference it merges them back into
one computation over every (query, key) pair, the whole (B, Tq, Tk, units) tensor of an
additive scorer; for training it keeps the buffers of every rematerialised block alive at once.
In a loop (``keras.ops.map``) XLA runs one block at a time, and a rematerialised body leaves
only its inputs for the backward pass. Op by op (TensorFlow's CPU default, PyTorch) the blocks
stay unrolled: there the executor frees each block's buffers itself, and loops are slower.

A loop wants one shape per iteration. Queries come in blocks of one size (a shorter last block
runs on its own). Keys do not: under ``causal`` block i sees the i + 1 first key blocks. So
blocks are grouped, at most ``GROUPS`` runs of consecutive blocks, and every block of a
group takes the group's widest key span, shifted to stay inside the sequence. The masks still
decide which keys a query sees; the extra keys are hidden from the block (zeroed, as the
masked softmax needs), so causal does about (GROUPS + 1) / GROUPS of the work it needs
unrolled. Windows (``local<w>``) and ``full`` have one span: one loop.

:func:`unrolled` runs the blocks one call each, on exactly their keys, where nothing is
compiled as a whole.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from attnkit.backend import remat as backend_remat
from attnkit.plans import _limits

__all__ = ["block_call", "groups", "looped", "unrolled"]


def groups(spans, block: int) -> list[tuple[list, int]]:
    """The blocks ``(start, stop, lo, hi)`` in consecutive groups, each with the key span its
    blocks share: the widest of the group. Blocks of ``block`` queries that see a key are
    grouped, at most ``GROUPS`` (:mod:`attnkit.plans._limits`) groups per run of them; any
    other block (the shorter last one, one that sees no key: span 0) is a group of its own."""
    out: list[tuple[list, int]] = []
    run: list = []

    def close_run():
        if not run:
            return
        merged: list[tuple[list, int]] = []
        for part in np.array_split(np.arange(len(run)), min(_limits.GROUPS, len(run))):
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


def looped(
    block_of,
    n_extra,
    hide,
    query,
    key,
    value,
    key_valid,
    query_valid,
    weights,
    spans,
    block,
    remat: bool = True,
):
    """Context (B, Tq, Dv), one group of blocks per loop (:func:`groups`), each block
    rematerialised when ``remat``. ``block_of(hide_keys)``: the block function ``f(q, k, v,
    first, *valid, *weights)`` (``n_extra`` valid masks); ``hide``: whether blocks must zero the
    keys none of their queries may see even when they get exactly their own keys."""
    outputs, steps_k = [], int(key.shape[1])
    tensors = (query, key, value, key_valid, query_valid, weights)
    for members, width in groups(spans, block):
        start, stop = members[0][:2]
        if width == 0:
            outputs.append(_zeros(value, stop - start))
            continue
        padded = any(hi - lo < width for _, _, lo, hi in members)
        function = block_of(hide or padded)
        firsts = np.array([[s, min(lo, steps_k - width)] for s, _, lo, _ in members], "int32")
        if len(members) == 1:
            compute = block_call(function, n_extra, remat=remat)
            outputs.append(_one(compute, *tensors, start, stop, int(firsts[0, 1]), width))
            continue
        compute = block_call(function, n_extra, width, remat=remat)
        outputs.append(_loop(compute, firsts, width, block, *tensors))
    return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)


def unrolled(compute, query, key, value, key_valid, query_valid, weights, spans):
    """Context (B, Tq, Dv), each block ``(start, stop, lo, hi)`` its own call of ``compute``
    (``f(q, k, v, first, *valid, *weights)``) on exactly its keys: op by op, where nothing
    merges the blocks."""
    tensors = (query, key, value, key_valid, query_valid, weights)
    outputs = []
    for start, stop, lo, hi in spans:
        if hi <= lo:
            outputs.append(_zeros(value, stop - start))
        else:
            outputs.append(_one(compute, *tensors, start, stop, lo, hi - lo))
    return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)


def _one(compute, query, key, value, key_valid, query_valid, weights, start, stop, lo, width):
    """One block: queries ``start:stop`` against keys ``lo:lo + width``."""
    extras = []
    if key_valid is not None:
        extras.append(ops.expand_dims(key_valid[:, lo : lo + width], 1))
    if query_valid is not None:
        extras.append(ops.expand_dims(query_valid[:, start:stop], -1))
    first = ops.convert_to_tensor(np.array([start, lo], dtype="int32"))
    k, v = key[:, lo : lo + width], value[:, lo : lo + width]
    return compute(query[:, start:stop], k, v, first, *extras, *weights)


def _zeros(value, rows: int):
    """The context of a block no key is visible to: zeros, as for a fully masked row."""
    return ops.zeros((ops.shape(value)[0], rows, value.shape[-1]), value.dtype)


def block_call(block, n_extra: int, width: int | None = None, remat: bool = True):
    """``block`` as ``f(q, k, v, first, *valid, *weights)``, recomputed in the backward pass
    (:func:`attnkit.backend.remat`) when ``remat``.

    Only the floating arguments pass through the rematerialised function: TensorFlow's
    recompute_grad watches each argument and warns for integer and boolean ones (the block's
    first indices, the padding masks), which have no gradient anyway. With ``width`` the
    function takes the whole key and value and slices the block's ``width`` keys from
    ``first[1]`` itself: in a loop, a slice taken outside would be kept for the backward pass
    once per iteration (B x Tk x D floats each), the whole tensor is kept once."""

    def call(q, k, v, first, *rest):
        valid, weights = rest[:n_extra], rest[n_extra:]

        def differentiable(q, k, v, *weights):
            if width is not None and width != k.shape[1]:
                k, v = _window(k, first[1], width), _window(v, first[1], width)
            return block(q, k, v, first, *valid, *weights)

        return (backend_remat(differentiable) if remat else differentiable)(q, k, v, *weights)

    return call


def _loop(compute, firsts, width, block, query, key, value, key_valid, query_valid, weights):
    """The blocks starting at ``firsts`` (query, key) in one ``keras.ops.map``."""
    count, start = len(firsts), int(firsts[0, 0])
    stop = start + count * block
    xs = [_blocks(query[:, start:stop], count, block), ops.convert_to_tensor(firsts)]
    if query_valid is not None:
        xs.append(_blocks(query_valid[:, start:stop], count, block))

    def body(x):
        q, first = x[0], x[1]
        extras = []
        if key_valid is not None:
            extras.append(ops.expand_dims(_window(key_valid, first[1], width), 1))
        if query_valid is not None:
            extras.append(ops.expand_dims(x[2], -1))
        return compute(q, key, value, first, *extras, *weights)

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
