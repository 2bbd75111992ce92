"""Built-in masks: full, local<w>, causal, causal<w>. Pure predicates over index grids.

Causal alignment is top-left (query i sees keys j <= i), as in ``keras.layers.Attention`` and
``torch``'s ``is_causal``; many-to-one poolings place their query at the last valid step.
"""

from __future__ import annotations

import attrs
from keras import ops

from attnkit.components import Mask, param
from attnkit.hookspecs import hookimpl

__all__ = ["Causal", "Full", "Local"]


def _width(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{attribute.name}' must be a whole number of keys >= 1 (got {value!r})")


@attrs.frozen
class Full(Mask):
    """Every key: ``allowed(i, j) = True``. The identity of the AND; the default."""

    name = "full"

    def allowed(self, q_idx, k_idx):
        return ops.greater_equal(q_idx * 0 + k_idx * 0, 0)

    def kernel_form(self):
        return "full"


@attrs.frozen
class Local(Mask):
    """A window of ``width`` keys: ``i - floor(w/2) <= j <= i + ceil(w/2) - 1``, clipped at edges.

    Odd widths are centred (w=3: i-1..i+1); even widths lean one step to the past
    (w=4: i-2..i+1). This is keras-self-attention's ``attention_width=w``.
    """

    name = "local"
    shorthand = "width"
    width: int = param(doc="number of keys in the window", validator=_width)

    @classmethod
    def examples(cls):
        return [cls(3), cls(4)]

    def allowed(self, q_idx, k_idx):
        back, ahead = self.reach()
        offset = k_idx - q_idx
        return ops.logical_and(ops.greater_equal(offset, -back), ops.less_equal(offset, ahead))

    def reach(self):
        return (self.width // 2, (self.width - 1) // 2)


@attrs.frozen
class Causal(Mask):
    """History only: ``j <= i``; with a width w (``causal15``) the last w keys, ``i-w+1 <= j <= i``.

    keras-self-attention's ``history_only=True`` (with ``attention_width=w``),
    ``keras.layers.Attention(use_causal_mask=True)``.
    """

    name = "causal"
    shorthand = "width"
    width: int | None = param(
        None,
        doc="number of past keys, self included; none = unbounded",
        validator=attrs.validators.optional(_width),
    )

    @classmethod
    def examples(cls):
        return [cls(), cls(3)]

    def allowed(self, q_idx, k_idx):
        offset = k_idx - q_idx
        past = ops.less_equal(offset, 0)
        if self.width is None:
            return past
        return ops.logical_and(past, ops.greater(offset, -self.width))

    def reach(self):
        return (None if self.width is None else self.width - 1, 0)

    def kernel_form(self):
        return "causal" if self.width is None else None


@hookimpl
def attnkit_add_components():
    return [Full, Local, Causal]
