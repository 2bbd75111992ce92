"""attnkit-dilated: a dilated (strided) local window mask for attnkit, found through an entry point.

After ``pip install attnkit-dilated`` the spec ``"dot+dilated5"`` (or
``"additive+dilated4(dilation=3)"``) works in :class:`attnkit.AttentionLayer`; nothing in
attnkit changes. The module is the plugin: attnkit reads
``[project.entry-points.attnkit] dilated = "attnkit_dilated"`` and calls
:func:`attnkit_add_components`.
"""

from __future__ import annotations

import attrs
from keras import ops

import attnkit

__all__ = ["Dilated", "attnkit_add_components"]


def _at_least_one(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{attribute.name}' must be a whole number >= 1 (got {value!r})")


@attrs.frozen
class Dilated(attnkit.Mask):
    """``width`` keys spaced ``dilation`` apart, centred on the query like ``local<w>``.

    Query i sees key j iff ``(j - i) % dilation == 0`` and
    ``-(width // 2) * dilation <= j - i <= ((width - 1) // 2) * dilation``, clipped at the edges.
    Odd widths are centred (``dilated3``, dilation 2: i-2, i, i+2); even widths lean one step
    to the past (``dilated4(dilation=3)``: i-6, i-3, i, i+3). ``dilation=1`` is ``local<w>``.
    """

    name = "dilated"
    shorthand = "width"
    width: int = attnkit.param(doc="number of keys in the window", validator=_at_least_one)
    dilation: int = attnkit.param(
        2, doc="distance between neighbouring keys (1 = local)", validator=_at_least_one
    )

    @classmethod
    def examples(cls):
        return [cls(3), cls(4, dilation=3)]

    def allowed(self, q_idx, k_idx):
        back, ahead = self.reach()
        offset = k_idx - q_idx
        inside = ops.logical_and(ops.greater_equal(offset, -back), ops.less_equal(offset, ahead))
        if self.dilation == 1:
            return inside
        # Only "divisible or not" is asked, which floor and truncated modulo answer alike for
        # negative offsets (keras.ops.mod is NumPy's floor modulo; tests/test_dilated.py checks).
        on_grid = ops.equal(ops.mod(offset, self.dilation), 0)
        return ops.logical_and(inside, on_grid)

    def reach(self):
        return (self.dilation * (self.width // 2), self.dilation * ((self.width - 1) // 2))


@attnkit.hookimpl
def attnkit_add_components():
    return [Dilated]
