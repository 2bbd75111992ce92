"""Pictures of attention weights: heat maps, bar charts, panels side by side, a training callback.

    >>> weights = attnkit.attention_weights(model, "attention", x[:1])  # (1, Tq, Tk)
    >>> attnkit.viz.heatmap(weights[0], key_labels=tokens, query_labels=tokens, path="a.png")

matplotlib is optional (``pip install "attnkit[viz]"``) and imported only when something is
drawn. Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: no display,
no global figure list to close, safe on servers and in threads.
"""

from __future__ import annotations

from attnkit.viz._heads import heads
from attnkit.viz._history import AttentionHistory
from attnkit.viz._plots import SUFFIXES, compare, heatmap, save, vector

__all__ = ["SUFFIXES", "AttentionHistory", "compare", "heads", "heatmap", "save", "vector"]
