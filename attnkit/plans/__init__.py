"""Execution plans: how a layer computes attention, chosen from the masks' declared structure.

    choice = plans.choose(request)        # Choice(plan, reason)
    outcome = plans.run(choice, work)     # Outcome(context, weights, ...)

- ``dense``: scores for every (query, key) pair, (B, Tq, Tk); short sequences, and whenever
  the weights themselves are wanted.
- ``banded``: masks that bound how far back and ahead a query sees (``local<w>``,
  ``causal<w>``, any mask whose ``reach()`` is finite): each query scores only its window of
  W = back + 1 + ahead keys, time and memory O(B T W).
- ``chunked``: query blocks, each against only the keys its masks can allow (``causal`` skips
  the future), recomputed in the backward pass: memory O(B x block x Tk x pair width).
- ``kernel``: the backend's fused ``keras.ops.dot_product_attention``, for specs it computes
  exactly.

A scorer needs no code for any plan: the banded plan scores each query as its own batch row
against its window, which the conformance suite's batch-independence check guarantees is the
same formula, and a scorer that splits into :meth:`Scorer.project` and :meth:`Scorer.pair`
gets a faster banded pass. Every plan gives the dense plan's numbers within float tolerance,
values and gradients.
"""

from __future__ import annotations

from attnkit.debug import check_stage
from attnkit.errors import ComponentError
from attnkit.plans._banded import banded
from attnkit.plans._choose import PLANS, Choice, Request, choose
from attnkit.plans._chunked import chunked
from attnkit.plans._dense import dense
from attnkit.plans._dropout import WeightDropout
from attnkit.plans._kernel import KERNEL_BACKENDS, kernel, kernel_by_default, kernel_form
from attnkit.plans._visibility import combined_reach, rows_see_a_key, visible
from attnkit.plans._work import Outcome, Work

__all__ = [
    "KERNEL_BACKENDS",
    "PLANS",
    "Choice",
    "Outcome",
    "Request",
    "WeightDropout",
    "Work",
    "choose",
    "combined_reach",
    "kernel_by_default",
    "kernel_form",
    "rows_see_a_key",
    "run",
    "visible",
]

_RUN = {"dense": dense, "banded": banded, "chunked": chunked, "kernel": kernel}


def run(choice: Choice, work: Work) -> Outcome:
    """Attention over ``work`` by the plan ``choice`` names.

    Raises:
        ComponentError: a scorer misbehaved on this plan; the message names the layer
            (``work.owner``), the scorer with its distribution, the plan and what was expected.
    """
    try:
        outcome = _RUN[choice.plan](work)
    except ComponentError as error:
        raise ComponentError(f"{work.owner}: {error}") from error
    if choice.plan != "dense":  # the dense plan checks its scores and weights itself
        stage = f"the {choice.plan} plan's context"
        outcome.context = check_stage(outcome.context, work.owner, stage, work.scorer)
    return outcome
