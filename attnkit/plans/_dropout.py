"""Dropout on the attention weights: ``w -> w * m / (1 - rate)``, ``m ~ Bernoulli(1 - rate)``.

The dense and banded plans drop a whole weight tensor at once, drawing from the layer's
``keras.random.SeedGenerator``. The chunked plan's blocks cannot. A block that runs inside a
loop (``keras.ops.map``) cannot advance a generator, and a block that is recomputed in the
backward pass (:func:`attnkit.backend.remat`) would drop other weights there than in the
forward pass: the gradient would belong to a different function. So the chunked plan draws one
seed per call, outside its blocks (:meth:`WeightDropout.per_block`), and each block folds its
first query index into that seed. The draw is stateless: a recomputed block drops exactly what
its forward pass dropped, and no two blocks of a call share a mask.

The backends' stateless generators take their seeds in different forms:
:func:`attnkit.backend.stateless_dropout` draws.
"""

from __future__ import annotations

from typing import Any

import keras

from attnkit.backend import stateless_dropout

__all__ = ["BlockDropout", "WeightDropout"]


class WeightDropout:
    """The layer's dropout: ``rate`` of the weights zeroed, the rest scaled by 1 / (1 - rate),
    each call drawing a new mask from ``seeds`` (a ``keras.random.SeedGenerator``)."""

    # A plain class, not attrs: torch.compile (dynamo) fails to trace a frozen attrs
    # __init__ ("'BlockDropout' object has no attribute 'rate'").
    def __init__(self, rate: float, seeds: Any):
        self.rate, self.seeds = rate, seeds

    def __call__(self, weights):
        """Weights (B, Tq, Tk) with dropout applied: one draw from the generator."""
        return keras.random.dropout(weights, self.rate, seed=self.seeds)

    def per_block(self) -> BlockDropout:
        """A :class:`BlockDropout` for this call: its seed is the generator's next one."""
        return BlockDropout(self.rate, self.seeds.next())


class BlockDropout:
    """Dropout for the blocks of one call: block ``salt`` (its first query index) draws its
    mask from ``fold_in(seed, salt)``, the same every time the block is computed. ``seed``: a
    (2,) integer tensor, ``SeedGenerator.next()``."""

    def __init__(self, rate: float, seed: Any):
        self.rate, self.seed = rate, seed

    def __call__(self, weights, salt):
        """Weights (B, block, span) with dropout applied; ``salt`` an int32 scalar tensor."""
        return stateless_dropout(weights, self.rate, self.seed, salt)
