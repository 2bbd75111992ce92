"""The sizes at which the automatic plan choice changes, and the chunked plan's block budget.

Counted per sample, in pairs times the scorer's pair width (floats held per (query, key)
pair: 1 for a dot product, ``units`` for an additive tanh layer). Read at call time from this
module, so a test can shrink them; ``benchmarks/README.md`` gives the measurements behind them.
"""

from __future__ import annotations

__all__ = [
    "BANDED_ABOVE",
    "BANDED_MAX",
    "BANDED_TRAIN_ABOVE",
    "CHUNK_ABOVE",
    "CHUNK_TARGET",
    "FUSE_ABOVE",
    "GROUPS",
    "REMAT_ABOVE",
]

#: Pairs x pair width above which the automatic choice stops materialising every
#: (query, key) pair at once and takes query blocks.
CHUNK_ABOVE = 2**22
#: Target pairs x pair width in one query block.
CHUNK_TARGET = 2**21
#: Pairs a plain product's blocks (pair width 1) may keep for the backward pass instead of
#: recomputing them.
REMAT_ABOVE = 2**24
#: Floats the banded plan may gather (windows of keys, a training step's per-window
#: intermediates) before bounded masks take query blocks instead.
BANDED_MAX = 2**26
#: Pairs x pair width from which a bounded mask runs banded rather than dense, for inference
#: and for a training step. Below them scoring every pair at once is as fast or faster.
BANDED_ABOVE = 2**14
BANDED_TRAIN_ABOVE = 2**17
#: Window features, T x W x max(Dk, pair width), from which the banded plan's offset pass is
#: compiled into one fused computation; below it compiling (about a second per length) does
#: not pay for itself.
FUSE_ABOVE = 2**16
#: Most loops per layer when the chunked plan's blocks run inside a computation compiled as a
#: whole: causal's key spans padded to the widest of a group cost at most 1 / GROUPS more work.
GROUPS = 8
