"""What a plan computes over (:class:`Work`) and what it hands back (:class:`Outcome`)."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["Outcome", "Work"]


# Neither class is frozen: torch.compile (dynamo) cannot trace a frozen attrs __init__
# (object.__setattr__). They are values all the same: change one with attrs.evolve.
@attrs.define
class Work:
    """The tensors and parameters one call of the layer attends with.

    Attributes:
        scorer: the spec's scorer.
        masks: its structural masks (ANDed; empty means every key).
        pooling: its pooling.
        params: the scorer's weights, in the scoring dtype.
        query: (B, Tq, Dq) the queries the pooling asks with, in the scoring dtype.
        key: (B, Tk, Dk) in the scoring dtype.
        value: (B, Tk, Dv) in the scoring dtype.
        positions: integer (B or 1, Tq), where each query stands, for the masks.
        query_valid: boolean (B, Tq) of queries that are not padding, or None.
        key_valid: boolean (B, Tk) of keys that are not padding, or None.
        activation: applied to the raw scores before the softmax, or None.
        dropout: a :class:`attnkit.plans.WeightDropout` while training with dropout, else None.
        training: a training step (the plans keep or recompute intermediates by it).
        owner: names the layer in messages, e.g. ``"layer 'att' ('dot+causal')"``.
        heads: how many heads are folded into the batch axis (B = samples x heads,
            sample-major); the kernel plan hands them to the backend as its heads axis.
    """

    scorer: Any
    masks: tuple
    pooling: Any
    params: dict
    query: Any
    key: Any
    value: Any
    positions: Any
    query_valid: Any = None
    key_valid: Any = None
    activation: Any = None
    dropout: Any = None
    training: bool = False
    owner: str = "attention"
    heads: int = 1

    @property
    def pair_width(self) -> int:
        """Floats the scorer holds per (query, key) pair (:meth:`Scorer.pair_width`)."""
        return self.scorer.pair_width(self.query.shape[-1], self.key.shape[-1])


@attrs.define
class Outcome:
    """What a plan computed, for the pooling.

    Attributes:
        context: (B, Tq, Dv) ``sum_j a_ij v_j``, or None when the pooling reads no context.
        weights: (B, Tq, Tk) the attention after dropout, as the pooling reports it; None on
            every plan but dense, which alone holds every pair's weight at once.
        softmax: the same weights before dropout (the regulariser's input), or None.
        allowed: boolean (B or 1, Tq, Tk) of visible pairs, or None when all were visible
            (dense plan only).
        query_valid: boolean (B, Tq), the queries whose output counts, or None for all: on
            the dense plan a query that sees no key counts as padding from here on.
    """

    context: Any
    weights: Any = None
    softmax: Any = None
    allowed: Any = None
    query_valid: Any = None
