"""Execution plans: how a layer computes attention, chosen from the masks' declared structure.

- ``dense``: scores for every (query, key) pair, (B, Tq, Tk); fastest for short sequences.
- ``banded`` (:mod:`attnkit.banded`): when the masks bound how far back and ahead a query sees
  (``local<w>``, ``causal<w>``, any mask whose ``reach()`` is finite), each query scores only
  its window of W = back + 1 + ahead keys: time and memory O(B T W), linear in T.
- ``kernel``: the backend's fused ``keras.ops.dot_product_attention`` (flash or memory-efficient
  kernels on GPU, torch's fused CPU kernel), for specs it can express exactly: a scorer that is a
  scaled dot product (:meth:`Scorer.dot_scale`), masks that are ``full`` or ``causal``
  (:meth:`Mask.kernel_form`), the ``seq`` pooling, no returned weights, no attention
  activation, no dropout while training. Chosen automatically on torch and on JAX with a GPU
  (:func:`kernel_by_default`).
- ``chunked``: query blocks, each scored against only the keys the masks can allow (``causal``
  skips the future: about half the work) and rematerialised in the backward pass, so memory is
  O(B block Tk) instead of O(B Tq Tk), times the scorer's ``pair_width`` (``units`` for additive);
  a plain product's blocks are kept instead while they score at most ``REMAT_ABOVE`` pairs
  per sample (:func:`rematerialises`).
  For inference with a pairwise scorer (``pair_width`` > 1) each block runs as one fused kernel
  where the backend can fuse (:mod:`attnkit.fusion`); training rematerialises instead. Inside a
  computation compiled as a whole (JAX, ``jit_compile=True``) the blocks run as loops
  (:mod:`attnkit.looped`): unrolled, XLA merges them back into one computation over every pair.
  Dropout on the weights changes none of this: each block draws its mask statelessly from one
  seed per call (:mod:`attnkit.dropout`), the same again when it is recomputed.

A scorer needs no code for any plan: the banded plan scores each query as its own batch row
against its window, which the conformance suite's batch-independence check guarantees is the
same formula (a scorer that splits into :meth:`Scorer.project` and :meth:`Scorer.pair` gets
a faster banded pass). All plans give the dense plan's numbers within float tolerance.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from attnkit.banded import banded
from attnkit.components import Scorer
from attnkit.fusion import compiling, fused, jax_on_accelerator
from attnkit.looped import block_call, looped, unrolled
from attnkit.ops import hide_unseen, masked_softmax
from attnkit.scoring import check_scores, checked_scores, combined_reach, splits

__all__ = [
    "PLANS",
    "banded",
    "check_scores",
    "choose",
    "chunked",
    "combined_reach",
    "kernel",
    "kernel_form",
]

PLANS = ("auto", "dense", "banded", "chunked", "kernel")
#: Backends whose dot_product_attention is a fused kernel. TensorFlow's is the same ops the
#: dense plan runs, so there the kernel plan is only taken when asked for.
KERNEL_BACKENDS = ("jax", "torch")


def kernel_by_default() -> bool:
    """Whether ``auto`` takes the kernel plan on this backend and device: on torch (a fused
    kernel on CPU and GPU; 3-5x faster than the dense plan on a CPU) and on JAX with a GPU
    (cuDNN's flash attention). JAX's CPU ``dot_product_attention`` is XLA ops in a
    (B, T, heads, D) layout, slower than the dense plan there (benchmarks/README.md,
    "Eighth session")."""
    backend = keras.backend.backend()
    if backend == "jax":
        return jax_on_accelerator()
    return backend in KERNEL_BACKENDS


#: Pairs x pair width per sample above which the automatic choice stops materialising
#: every (query, key) pair at once.
CHUNK_ABOVE = 2**22
#: Target pairs x pair width per sample in one chunk.
CHUNK_TARGET = 2**21
#: Pairs per sample that a plain product's blocks (pair width 1) may keep for the backward pass
#: instead of recomputing them (:func:`rematerialises`).
REMAT_ABOVE = 2**24
#: Floats per sample the banded plan may gather before bounded masks switch to chunks.
BANDED_MAX = 2**26
#: Pairs x pair width per sample from which a bounded mask runs banded rather than dense, for
#: inference and for a training step. Below them scoring every pair at once is as fast or
#: faster: dot+local15 (pair width 1) trains faster dense up to T=256 (7.6 vs 12.7 ms per step;
#: 23.1 vs 21.4 ms at 512) and infers faster dense up to T=128 (1.6 vs 7.0 ms at 64);
#: additive+local15 (width 32) is faster banded from T=64 (benchmarks/README.md, "Fourth
#: session").
BANDED_ABOVE = 2**14
BANDED_TRAIN_ABOVE = 2**17


def choose(
    plan: str,
    masks,
    pooling,
    scorer,
    query_dim: int,
    key_dim: int,
    tq,
    tk,
    needs_weights: bool,
    same_length: bool,
    kernel_ok: bool = False,
    training: bool = False,
) -> str:
    """The plan to run. ``needs_weights`` (weights returned, the regulariser, a pooling that
    reads them) and many-to-one poolings keep the dense plan; so does an unknown length for
    ``chunked``, whose blocks are laid out when the graph is built, and queries and keys of
    different lengths for ``banded``. ``kernel_ok``: :func:`kernel_form` accepted the spec and
    the call (no activation, no dropout); then ``auto`` takes ``kernel`` where
    :func:`kernel_by_default`, and
    ``kernel`` asked for where it cannot run falls back to what ``auto`` would pick.
    ``training``: a training step keeps the banded plan's per-window intermediates for its
    backward pass, about what gathered windows hold, so past ``BANDED_MAX`` it takes query
    blocks; for inference a scorer that :func:`splits` projects each key once, at any
    length."""
    if plan == "dense" or needs_weights or pooling.many_to_one or not pooling.uses_context:
        return "dense"
    if kernel_ok and (plan == "kernel" or (plan == "auto" and kernel_by_default())):
        return "kernel"
    if plan == "kernel":
        plan = "auto"
    back, ahead = combined_reach(masks)
    bounded = back is not None and ahead is not None and same_length
    if plan == "banded":
        return "banded" if bounded else "dense"
    if plan == "chunked":
        return "chunked" if tq is not None and tk is not None else "dense"
    pair_width = scorer.pair_width(query_dim, key_dim)
    pairs = None if tq is None or tk is None else tq * tk * pair_width
    small = pairs is not None and pairs < (BANDED_TRAIN_ABOVE if training else BANDED_ABOVE)
    if bounded and not small and (tk is None or tk > 2 * (back + ahead + 1)):
        # Gathered windows, and a training step's per-window intermediates, cost about
        # T x W x (Dq + Dk + pair width) floats per sample; past BANDED_MAX that memory is
        # better spent one rematerialised block at a time.
        gathered = (back + ahead + 1) * (query_dim + key_dim + pair_width)
        gathers = training or not splits(scorer)
        if gathers and tq is not None and tk is not None and tq * gathered > BANDED_MAX:
            return "chunked"
        return "banded"
    if pairs is not None and pairs >= CHUNK_ABOVE:
        return "chunked"
    return "dense"


def _block_size(steps_k: int, pair_width: int, reach: int | None = None) -> int:
    """The largest power-of-two query block whose key span x pair width fits CHUNK_TARGET.

    With a bounded reach a block of b queries sees at most b + reach keys, so long sequences
    under ``local<w>`` stay linear in T."""
    block = 16
    while True:
        span = steps_k if reach is None else min(steps_k, 2 * block + reach)
        # A pairwise scorer keeps several (block, span, units) intermediates alive at once
        # (the sum, its tanh and, in training, their gradients): a quarter of the target
        # bounds them (2.96 -> 0.64 GiB for additive at T=1024) at the same speed, while a
        # plain product keeps its big blocks (smaller ones measured ~10% slower at T=4096).
        target = CHUNK_TARGET if pair_width == 1 else CHUNK_TARGET // 4
        if 2 * block * span * pair_width > target:
            return block
        block *= 2


def rematerialises(spans, pair_width: int) -> bool:
    """Whether a training step recomputes the chunked plan's blocks in its backward pass
    rather than keeping what they computed: always for a pairwise scorer (it would keep several
    floats per pair and unit: 12.5 GiB for keras-self-attention's additive at T=1024), and for
    a plain product once its blocks score more than ``REMAT_ABOVE`` pairs per sample.

    Below that, what the blocks keep is a fraction of what the dense plan or Keras keeps, and
    recomputing costs a forward pass: dot+causal at T=4096 (batch 32, TensorFlow op by op)
    trained in 1998 ms and 2.4 GiB keeping them, 2388 ms and 1.6 GiB recomputing them, and
    3702 ms and 6.5 GiB for ``keras.layers.Attention(use_causal_mask=True)``
    (benchmarks/README.md, "Eighth session")."""
    pairs = sum((stop - start) * (hi - lo) for start, stop, lo, hi in spans)
    return pair_width > 1 or pairs > REMAT_ABOVE


def rows_see_a_key(masks, key_valid, query_valid) -> bool:
    """Whether every query is sure to see a key: each mask is exactly full or causal (causal
    query i >= 0 sees key 0 whatever the lengths) and nothing is padded. The masked softmax
    then needs no zeroing pass (:func:`attnkit.ops.masked_softmax`)."""
    if key_valid is not None or query_valid is not None:
        return False
    return all(mask.kernel_form() is not None for mask in masks)


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
        allowed = None
        for mask in masks:
            visible = mask.allowed(q_idx, k_idx)
            allowed = visible if allowed is None else ops.logical_and(allowed, visible)
        for extra in valid:
            allowed = extra if allowed is None else ops.logical_and(allowed, extra)
        if hide and allowed is not None:
            k, v = hide_unseen(allowed, k, v)
        scores = checked_scores(scorer, block_params, q, k, activation, "chunked")
        weights = masked_softmax(scores, allowed, rows_see_a_key=seen)
        if dropout is not None:  # a BlockDropout: the block's mask from its first query
            weights = dropout(weights, first[0])
        return ops.matmul(weights, v)

    return one_block


def chunked(
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
    """Context (B, Tq, Dv) one query block at a time, each against the keys its masks allow."""
    query, key = prepared.query, prepared.key
    steps_q, steps_k = int(query.shape[1]), int(key.shape[1])
    back, ahead = combined_reach(masks)
    reach = None if back is None or ahead is None else back + ahead
    block = min(_block_size(steps_k, pair_width, reach), steps_q)
    while -(-steps_q // block) > 256:  # keep the unrolled graph small
        block *= 2
    names = tuple(sorted(params))
    n_extra = (key_valid is not None) + (prepared.valid is not None)
    # A block's keys are those its masks can allow. Masks that are exactly full or causal
    # (kernel_form) let the block's last query see every one of them, so no key needs hiding
    # (padded keys are zeroed by the layer); a padded query may leave keys unseen. Skipping
    # the two wheres saved 8% of dot+causal's time at T=4096.
    hide = prepared.valid is not None or not rows_see_a_key(masks, None, None)
    seen = rows_see_a_key(masks, key_valid, prepared.valid)
    spans = []
    for start in range(0, steps_q, block):
        stop = min(start + block, steps_q)
        lo = 0 if back is None else max(0, start - back)
        hi = steps_k if ahead is None else min(steps_k, stop - 1 + ahead + 1)
        spans.append((start, stop, lo, hi))
    weights = [params[name] for name in names]
    shape = (scorer, tuple(masks), activation, names, n_extra)

    # One seed per call, drawn here: a block in a loop or recomputed for the backward pass
    # cannot advance the layer's generator (attnkit.dropout).
    per_block = None if dropout is None else dropout.per_block()

    def block_function(hide_keys):
        return _block_function(*shape, hide_keys, seen, per_block)

    tensors = (query, key, value, key_valid, prepared.valid, weights)
    remat = training and rematerialises(spans, pair_width)
    if compiling(query):
        # Unrolled, XLA merges the blocks back into one (B, Tq, Tk, ...) computation or keeps
        # every block's buffers alive at once; in loops it runs one at a time (attnkit.looped).
        return looped(block_function, n_extra, hide, *tensors, spans, block, remat)
    elif training:
        compute = block_call(block_function(hide), n_extra, remat=remat)
    elif pair_width > 1:
        # Pairwise elementwise work (additive scorers) dominates: fuse it. A plain product's
        # time is its matmuls, which the backend's own kernels do best.
        compute = fused(_block_function, *shape, hide, seen)
    else:
        compute = block_function(hide)
    return unrolled(compute, *tensors, spans)


def kernel_form(scorer, masks, pooling, same_length: bool) -> str | None:
    """``"full"`` or ``"causal"`` when ``dot_product_attention`` computes this spec exactly,
    else None. Causal needs queries and keys of one length: kernels align a causal mask
    differently when they differ."""
    if not pooling.aligned or type(scorer).dot_scale is Scorer.dot_scale:
        return None
    forms = {mask.kernel_form() for mask in masks}
    if None in forms or not forms <= {"full", "causal"}:
        return None
    if "causal" in forms:
        return "causal" if same_length else None
    return "full"


def kernel(scale, prepared, value, causal: bool, key_valid):
    """Context (B, Tq, Dv) by ``keras.ops.dot_product_attention``.

    ``softmax(scale * q k^T, masked) v`` with one head. Kernels give a row that sees no key a
    uniform average (torch, JAX) rather than zeros, and padding plus a causal mask can hide
    every key from the first rows, so rows with nothing visible (and padded queries) are
    zeroed afterwards; their zero cotangent keeps them out of the gradient too.
    """
    query = prepared.query
    if not (isinstance(scale, float) and scale == 1.0):
        query = query * ops.cast(scale, query.dtype)
    key, width = prepared.key, value.shape[-1]
    # Kernels want one head size for q, k and v; zero features change no score and no output.
    if query.shape[-1] < width:
        query, key = (_pad_features(t, width) for t in (query, key))
    elif width < query.shape[-1]:
        value = _pad_features(value, query.shape[-1])
    q, k, v = (ops.expand_dims(t, 2) for t in (query, key, value))
    mask = keep = None
    if key_valid is not None:
        visible = ops.expand_dims(key_valid, 1)  # (B, 1, Tk)
        if causal:
            rows = ops.expand_dims(ops.arange(ops.shape(query)[1], dtype="int32"), -1)
            cols = ops.expand_dims(ops.arange(ops.shape(value)[1], dtype="int32"), 0)
            visible = ops.logical_and(visible, ops.expand_dims(cols <= rows, 0))
        keep = ops.any(visible, axis=-1)  # (B, Tq or 1)
        mask, causal = ops.expand_dims(visible, 1), False
    if prepared.valid is not None:
        keep = prepared.valid if keep is None else ops.logical_and(keep, prepared.valid)
    # On torch, Keras' flash probe (SDPAParams) breaks torch.compile; with the probe off Keras
    # calls scaled_dot_product_attention, which still dispatches to flash where it can.
    flash = False if keras.backend.backend() == "torch" else None
    context = ops.dot_product_attention(
        q, k, v, mask=mask, scale=1.0, is_causal=causal, flash_attention=flash
    )
    context = context[:, :, 0, :width]
    if keep is None:
        return context
    return ops.where(ops.expand_dims(keep, -1), context, ops.zeros_like(context))


def _pad_features(tensor, width: int):
    return ops.pad(tensor, [(0, 0), (0, 0), (0, width - tensor.shape[-1])])


def run(plan: str, *args, pair_width: int = 1, training: bool = False) -> Any:
    """Context (B, Tq, Dv) by the banded or chunked plan; ``args`` as :func:`chunked` takes
    them (scorer, params, prepared, value, masks, key_valid, activation, dropout)."""
    if plan == "banded":
        return banded(*args, pair_width=pair_width, training=training)
    return chunked(*args, pair_width=pair_width, training=training)
