"""Which plan runs a call, and why: :func:`choose` takes a :class:`Request` and returns a
:class:`Choice` holding the plan and the reason in words (what ``attnkit explain`` prints).

The choice reads the masks' declared structure (:meth:`Mask.reach`, :meth:`Mask.kernel_form`),
the scorer's pair width and the size of the work, never a component's name.
"""

from __future__ import annotations

import math

import attrs

from attnkit.plans import _limits
from attnkit.plans._checks import splits
from attnkit.plans._kernel import kernel_by_default, kernel_form
from attnkit.plans._visibility import combined_reach

__all__ = ["PLANS", "Choice", "Request", "choose"]

#: What ``AttentionLayer(plan=...)`` accepts.
PLANS = ("auto", "dense", "banded", "chunked", "kernel")


@attrs.define  # not frozen: the layer builds it inside calls torch.compile may trace
class Request:
    """One call of a layer, as far as the choice of plan depends on it.

    Attributes:
        scorer, masks, pooling: the spec's components.
        query_dim, key_dim: Dq and Dk of the queries and keys the scorer sees.
        steps_q, steps_k: Tq and Tk when known when the graph is built, else None.
        same_length: queries and keys are the same steps (self-attention, or Tq == Tk).
        requested: the layer's ``plan`` argument.
        training: a training step.
        needs_weights: the weights themselves are wanted (returned, regularised, captured).
        activation: an attention activation is applied to the scores.
        dropout: dropout is applied to the weights in this call.
    """

    scorer: object
    masks: tuple
    pooling: object
    query_dim: int
    key_dim: int
    steps_q: int | None
    steps_k: int | None
    same_length: bool = True
    requested: str = "auto"
    training: bool = False
    needs_weights: bool = False
    activation: bool = False
    dropout: bool = False

    @property
    def pair_width(self) -> int:
        return self.scorer.pair_width(self.query_dim, self.key_dim)

    @property
    def kernel_exact(self) -> bool:
        """Whether the kernel plan computes this call exactly: :func:`kernel_form` accepts the
        spec, and no activation or dropout changes the weights."""
        form = kernel_form(self.scorer, self.masks, self.pooling, self.same_length)
        return form is not None and not self.activation and not self.dropout


@attrs.define  # not frozen, as Request
class Choice:
    """The plan that runs (``dense``, ``banded``, ``chunked`` or ``kernel``) and why."""

    plan: str
    reason: str


def choose(request: Request) -> Choice:
    """The plan for ``request``.

    ``dense`` whenever the weights are wanted, for many-to-one poolings and for poolings that
    read weights rather than a context. ``kernel`` where it computes the call exactly and was
    asked for, or ``auto`` takes it on this backend; a ``kernel`` asked for where it cannot run
    falls back to what ``auto`` picks. ``banded`` for masks with a bounded reach once windows
    pay off, ``chunked`` for long fixed lengths, else ``dense``.
    """
    pooling, requested = request.pooling, request.requested
    if requested == "dense":
        return Choice("dense", "plan='dense' was asked for")
    if request.needs_weights:
        return Choice("dense", "the weights are wanted (returned, regularised or captured)")
    if pooling.many_to_one:
        return Choice(
            "dense", f"pooling '{pooling.name}' asks with one query and reads its weights"
        )
    if not pooling.uses_context:
        return Choice(
            "dense", f"pooling '{pooling.name}' uses the weights themselves, not a context"
        )
    if request.scorer.positional:
        return Choice(
            "dense",
            f"scorer '{request.scorer.name}' scores key positions from its weights: every "
            "position at once",
        )
    if request.kernel_exact and (
        requested == "kernel" or (requested == "auto" and kernel_by_default())
    ):
        form = "causal" if any(m.kernel_form() == "causal" for m in request.masks) else "full"
        return Choice(
            "kernel",
            f"a scaled dot product under a {form} mask: the backend's fused "
            "dot_product_attention computes it exactly",
        )
    if requested == "banded":
        return _banded_asked(request)
    if requested == "chunked":
        if request.steps_q is None or request.steps_k is None:
            return Choice("dense", "plan='chunked' needs lengths known when the graph is built")
        return Choice("chunked", "plan='chunked' was asked for")
    choice = _automatic(request)
    if requested == "kernel":
        choice.reason = f"the kernel plan cannot compute this call exactly; {choice.reason}"
    return choice


def _bounded(request: Request) -> tuple[int, int] | None:
    back, ahead = combined_reach(request.masks)
    if back is None or ahead is None or not request.same_length:
        return None
    return back, ahead


def _banded_asked(request: Request) -> Choice:
    if _bounded(request) is None:
        return Choice(
            "dense",
            "plan='banded' needs masks of bounded reach over queries and keys of one length",
        )
    return Choice("banded", "plan='banded' was asked for")


def _automatic(request: Request) -> Choice:
    tq, tk, width = request.steps_q, request.steps_k, request.pair_width
    pairs = None if tq is None or tk is None else tq * tk * width
    sizes = "" if pairs is None else f"Tq x Tk x pair width = {tq} x {tk} x {width} = {pairs:,}"
    bounded = _bounded(request)
    floor = _limits.BANDED_TRAIN_ABOVE if request.training else _limits.BANDED_ABOVE
    small = pairs is not None and pairs < floor
    if bounded is not None and not small:
        back, ahead = bounded
        window = back + ahead + 1
        if tk is None or tk > 2 * window:
            return _windowed(request, back, ahead)
    if pairs is not None and pairs >= _limits.CHUNK_ABOVE:
        skip = ", skipping key blocks the masks hide" if request.masks else ""
        return Choice(
            "chunked",
            f"{sizes} >= {_power(_limits.CHUNK_ABOVE)}: query blocks, each against the keys "
            f"it may see{skip}; memory O(block x T)",
        )
    if bounded is not None and tk is not None and tk <= 2 * (sum(bounded) + 1):
        return Choice(
            "dense",
            f"T={tk} is at most twice the window ({sum(bounded) + 1} keys): scoring every "
            "pair costs about the same",
        )
    if bounded is not None:
        return Choice("dense", f"{sizes} < {_power(floor)}: every pair at once is faster")
    if pairs is None:
        return Choice("dense", "a length unknown when the graph is built: every pair at once")
    return Choice("dense", f"{sizes} < {_power(_limits.CHUNK_ABOVE)}: every pair fits at once")


def _windowed(request: Request, back: int, ahead: int) -> Choice:
    """Banded, unless its windows would hold more than ``BANDED_MAX`` floats per sample.

    Gathered windows, and a training step's per-window intermediates, cost about
    T x W x (Dq + Dk + pair width) floats per sample; past ``BANDED_MAX`` that memory is better
    spent one rematerialised block at a time. For inference, a scorer that splits
    (:meth:`Scorer.project`) projects each key once and gathers nothing, at any length.
    """
    window = back + ahead + 1
    tq, tk = request.steps_q, request.steps_k
    gathered = window * (request.query_dim + request.key_dim + request.pair_width)
    gathers = request.training or not splits(request.scorer)
    if gathers and tq is not None and tk is not None and tq * gathered > _limits.BANDED_MAX:
        return Choice(
            "chunked",
            f"the windows would hold more than {_power(_limits.BANDED_MAX)} floats per "
            "sample: query blocks instead",
        )
    return Choice(
        "banded",
        f"masks reach {back} back, {ahead} ahead: each query scores its {window} keys, "
        f"O(T x {window})",
    )


def _power(value: int) -> str:
    exponent = math.log2(value)
    return f"2^{int(exponent)}" if exponent.is_integer() else f"{value:,}"
