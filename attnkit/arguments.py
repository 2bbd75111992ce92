"""The checks on ``AttentionLayer``'s own arguments (the spec has its own, in
:mod:`attnkit.resolution`): each bad value is refused with an :class:`ArgumentError` naming it
and its valid range."""

from __future__ import annotations

from attnkit.errors import ArgumentError

__all__ = ["UNCOVERED", "check_arguments"]

#: MultiHeadAttention's arguments attnkit does not take, and why.
UNCOVERED = {
    "attention_axes": "attention over several axes is not covered: attnkit attends over the "
    "steps (axis 1); reshape other axes into the batch",
    "use_gate": "MultiHeadAttention's gated output is not covered",
    "sliding_window": "write the window in the spec: sliding_window=w is 'local<2w-1>', with "
    "use_causal_mask 'causal<w>'",
    "flash_attention": "attnkit picks the fused kernel itself (plan='kernel' asks for it)",
}


def check_arguments(kwargs: dict, dropout, regularizer_weight, plan, plans: tuple) -> None:
    """Refuse an argument of MultiHeadAttention's that attnkit does not take (in ``kwargs``),
    a dropout rate outside [0, 1), a negative regulariser weight, or an unknown plan."""
    for name, why in UNCOVERED.items():
        if name in kwargs:
            raise ArgumentError(
                f"AttentionLayer does not take {name}: {why}. Received: {name}={kwargs[name]!r}"
            )
    if not 0.0 <= float(dropout) < 1.0:
        raise ArgumentError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if float(regularizer_weight) < 0.0:
        raise ArgumentError(
            "attention_regularizer_weight must be >= 0. "
            f"Received: attention_regularizer_weight={regularizer_weight!r}"
        )
    if plan not in plans:
        raise ArgumentError(f"plan must be one of {', '.join(plans)}. Received: plan={plan!r}")
