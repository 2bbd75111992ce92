"""One sample's attention per head, one panel per head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnkit.errors import PlotError
from attnkit.viz._plots import _as_array, compare

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["heads"]


def heads(
    weights: Any,
    *,
    query_labels: Sequence | None = None,
    key_labels: Sequence | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    cols: int | None = None,
) -> Figure:
    """Draw a multi-head layer's weights for one sample, one panel per head, on one scale.

    Example::

        weights = attnkit.attention_weights(model, "encoder", x[:1])  # (1, H, Tq, Tk)
        attnkit.viz.heads(weights[0], query_labels=words, key_labels=words, path="heads.png")

    Args:
        weights: (H, Tq, Tk) heat maps or (H, Tk) bars (many-to-one poolings); (1, H, Tq, Tk)
            is taken as one sample too.
        query_labels, key_labels, title, path, cols: as for :func:`compare` (``cols`` defaults
            to min(H, 4)).

    Returns:
        A new figure with panels ``head 0`` ... ``head H-1``.
    """
    array = _as_array(weights, "heads")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3):
        raise PlotError(
            "heads draws one sample's weights per head, (H, Tq, Tk) or (H, Tk); received "
            f"weights of shape {array.shape}. Pick one sample (weights[i])"
        )
    panels = {f"head {h}": array[h] for h in range(array.shape[0])}
    cols = min(len(panels), 4) if cols is None else cols
    return compare(
        panels, query_labels=query_labels, key_labels=key_labels, title=title, path=path, cols=cols
    )
