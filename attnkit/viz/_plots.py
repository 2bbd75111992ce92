"""Drawing attention weights with matplotlib: heat maps, bar charts, panels side by side.

    >>> weights = attnkit.attention_weights(model, "attention", x[:1])  # (1, Tq, Tk)
    >>> attnkit.viz.heatmap(weights[0], key_labels=tokens, query_labels=tokens, path="a.png")

matplotlib is optional (``pip install "attnkit[viz]"``) and imported only when something is
drawn. Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: no display,
no global figure list to close, safe on servers and in threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from attnkit.errors import MissingDependencyError, PlotError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SUFFIXES", "compare", "heatmap", "save", "vector"]

#: The file types :func:`save` writes, chosen by the path's suffix.
SUFFIXES = (".png", ".svg")
#: How to get matplotlib (and Pillow, which comes with it).
INSTALL = 'pip install "attnkit[viz]"'


def heatmap(
    weights: Any,
    *,
    query_labels: Sequence | None = None,
    key_labels: Sequence | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    cmap: str = "viridis",
    path: str | Path | None = None,
) -> Figure:
    """Draw a (Tq, Tk) attention matrix: query steps down the y axis, key steps along the x axis.

    Cell (i, j) shows a_ij, the weight query step i gives key step j (each row of a ``seq``
    layer sums to 1 over the keys it may see). The colour scale starts at 0.

    Example::

        weights = attnkit.attention_weights(model, "attention", x[:1])[0]    # (Tq, Tk)
        attnkit.viz.heatmap(weights, query_labels=words, key_labels=words, path="map.svg")

    Args:
        weights: (Tq, Tk), or (1, Tq, Tk) for a batch of one.
        query_labels: Tq tick labels for the rows (e.g. the tokens).
        key_labels: Tk tick labels for the columns.
        title: drawn above the map.
        ax: draw into these axes (with the colour bar beside them) instead of a new figure.
        cmap: a matplotlib colour map name.
        path: also write the figure there (``.png`` or ``.svg``, see :func:`save`).

    Returns:
        The figure (the one ``ax`` belongs to, when given).
    """
    matrix = _matrix(weights, "heatmap")
    _check_labels(query_labels, matrix.shape[0], "query_labels", "query steps (rows)")
    _check_labels(key_labels, matrix.shape[1], "key_labels", "key steps (columns)")
    figure, ax = _canvas(ax, _matrix_size(matrix.shape))
    image = _draw_matrix(ax, matrix, query_labels, key_labels, cmap, _limits([matrix]))
    figure.colorbar(image, ax=ax, label="weight")
    if title is not None:
        ax.set_title(title)
    return _finish(figure, path)


def vector(
    weights: Any,
    *,
    labels: Sequence | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Draw a 1-D attention vector as one bar per position.

    For a many-to-one layer (``last``, ``weighted``) the positions are the input steps and
    the bars sum to 1; for the ``gate`` pooling on 2-D inputs they are the input features.

    Example::

        weights = attnkit.attention_weights(model, "attention", x[:1])       # (1, T)
        attnkit.viz.vector(weights, labels=words, title="what the last step reads")

    Args:
        weights: (T,), or (1, T) for a batch of one.
        labels: T tick labels.
        title: drawn above the bars.
        ax: draw into these axes instead of a new figure.
        path: also write the figure there (``.png`` or ``.svg``, see :func:`save`).

    Returns:
        The figure (the one ``ax`` belongs to, when given).
    """
    values = _vector(weights)
    _check_labels(labels, values.shape[0], "labels", "positions")
    figure, ax = _canvas(ax, (_clamp(1.5 + 0.3 * values.shape[0], 4, 12), 3))
    _draw_vector(ax, values, labels, _limits([values]))
    if title is not None:
        ax.set_title(title)
    return _finish(figure, path)


def compare(
    panels: Mapping[str, Any],
    *,
    query_labels: Sequence | None = None,
    key_labels: Sequence | None = None,
    title: str | None = None,
    path: str | Path | None = None,
    cols: int | None = None,
) -> Figure:
    """Draw several attention maps side by side, one panel per entry, to compare specs or heads.

    2-D entries become heat maps sharing one colour scale (and one colour bar), so equal colours
    mean equal weights across panels; 1-D entries become bar charts sharing one y scale.

    Example::

        maps = {spec: attnkit.attention_weights(models[spec], "attention", x[:1])[0]
                for spec in ("dot+causal", "additive+local5")}
        attnkit.viz.compare(maps, key_labels=words, query_labels=words, path="specs.png")

    Args:
        panels: panel title -> weights, each (Tq, Tk) or (1, Tq, Tk) for a heat map, (T,) for
            bars; drawn in the mapping's order.
        query_labels: row labels of every heat map.
        key_labels: column labels of every heat map and bar labels of every vector.
        title: drawn above all panels.
        path: also write the figure there (``.png`` or ``.svg``, see :func:`save`).
        cols: panels per row; default min(count, 3).

    Returns:
        A new figure with one axes per panel, plus one colour bar when there are heat maps.
    """
    if not isinstance(panels, Mapping) or not panels:
        raise PlotError(
            "compare takes a non-empty mapping panel name -> weights; "
            f"received {type(panels).__name__} {panels!r:.80}"
        )
    arrays = {name: _panel(name, weights) for name, weights in panels.items()}
    for name, array in arrays.items():
        where = f" of panel {name!r}"
        if array.ndim == 2:
            _check_labels(query_labels, array.shape[0], "query_labels", "query steps" + where)
        _check_labels(key_labels, array.shape[-1], "key_labels", "key steps" + where)
    if cols is None:
        cols = min(len(arrays), 3)
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise PlotError(f"cols must be a positive integer or None; received {cols!r}")
    cols = min(cols, len(arrays))
    rows = math.ceil(len(arrays) / cols)
    longest = max(array.shape[-1] for array in arrays.values())
    tallest = max(array.shape[0] if array.ndim == 2 else 8 for array in arrays.values())
    width, height = _clamp(1.5 + 0.25 * longest, 3, 6), _clamp(1.5 + 0.25 * tallest, 2.5, 5)
    figure = figure_class()(figsize=(width * cols + 1, height * rows + 0.5), layout="constrained")
    matrices = [array for array in arrays.values() if array.ndim == 2]
    vectors = [array for array in arrays.values() if array.ndim == 1]
    heat_axes, image = [], None
    for index, (name, array) in enumerate(arrays.items()):
        ax = figure.add_subplot(rows, cols, index + 1)
        if array.ndim == 2:
            image = _draw_matrix(ax, array, query_labels, key_labels, "viridis", _limits(matrices))
            heat_axes.append(ax)
        else:
            _draw_vector(ax, array, key_labels, _limits(vectors))
        ax.set_title(str(name))
    if image is not None:
        figure.colorbar(image, ax=heat_axes, label="weight")
    if title is not None:
        figure.suptitle(title)
    return _finish(figure, path)


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as PNG or SVG, chosen by the suffix; parent folders are made.

    Example::

        figure = attnkit.viz.heatmap(weights)
        attnkit.viz.save(figure, "plots/attention.svg")

    Returns:
        The path written, as a :class:`pathlib.Path`.

    Raises:
        PlotError: the suffix is not one of :data:`SUFFIXES`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PlotError(
            f"cannot save a figure to '{path}': the suffix must be one of "
            f"{', '.join(SUFFIXES)}; received {path.suffix or 'no suffix'!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=suffix[1:])
    return path


# -- helpers ------------------------------------------------------------------------------------
def figure_class():
    """matplotlib's Figure class, or MissingDependencyError naming the extra to install."""
    try:
        # `import matplotlib.figure` checks the package itself too, so a blocked or removed
        # matplotlib is noticed even when the submodule is still cached in sys.modules.
        import matplotlib.figure
    except ImportError as error:
        raise MissingDependencyError(
            f"attnkit.viz draws with matplotlib, which is not installed here: {INSTALL}"
        ) from error
    return matplotlib.figure.Figure


def _canvas(ax, size: tuple[float, float]):
    """(figure, axes): the given axes and their figure, or a new figure of ``size`` inches."""
    if ax is not None:
        figure_class()
        try:
            return ax.get_figure(root=True), ax  # matplotlib >= 3.10: past any subfigure
        except TypeError:
            return ax.figure, ax
    figure = figure_class()(figsize=size, layout="constrained")
    return figure, figure.add_subplot()


def _finish(figure, path):
    if path is not None:
        save(figure, path)
    return figure


def _draw_matrix(ax, matrix, query_labels, key_labels, cmap, limits):
    image = ax.imshow(
        matrix,
        cmap=cmap,
        vmin=limits[0],
        vmax=limits[1],
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    _ticks(ax.xaxis, key_labels, vertical=True)
    _ticks(ax.yaxis, query_labels, vertical=False)
    return image


def _draw_vector(ax, values, labels, limits):
    ax.bar(np.arange(values.shape[0]), values, width=0.8, color="C0")
    ax.set_xlim(-0.5, values.shape[0] - 0.5)
    ax.set_ylim(limits[0], limits[1] * 1.05)
    ax.set_xlabel("position")
    ax.set_ylabel("weight")
    _ticks(ax.xaxis, labels, vertical=True)


def _ticks(axis, labels, vertical: bool) -> None:
    """One tick per label; without labels, integer positions only (steps are whole numbers)."""
    if labels is None:
        from matplotlib.ticker import MaxNLocator

        axis.set_major_locator(MaxNLocator(integer=True))
        return
    texts = [str(label) for label in labels]
    # Turn x labels upright only when they would collide side by side.
    rotate = vertical and (len(texts) > 12 or max(map(len, texts), default=0) > 3)
    style = {"rotation": 90 if rotate else 0}
    if len(texts) > 30:
        style["fontsize"] = "small"
    axis.set_ticks(range(len(texts)), labels=texts, **style)


def _limits(arrays) -> tuple[float, float]:
    """A colour (or y) range covering every array, starting at 0 for non-negative weights."""
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return 0.0, 1.0
    low = min(0.0, *(float(a.min()) for a in finite))
    high = max(float(a.max()) for a in finite)
    return (low, high) if high > low else (low, low + 1.0)


def _as_array(weights: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(weights)
    except (TypeError, RuntimeError, ValueError):
        # A torch tensor that requires grad or lives on a GPU; keras knows how to fetch it.
        array = np.asarray(keras.ops.convert_to_numpy(weights))
    try:
        array = array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise PlotError(f"{what}: weights must be numbers; received dtype {array.dtype}") from error
    if array.size == 0:
        raise PlotError(f"{what}: weights are empty (shape {array.shape})")
    return array


def _matrix(weights: Any, what: str) -> np.ndarray:
    array = _as_array(weights, what)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise PlotError(
            f"{what} draws a (Tq, Tk) matrix or (1, Tq, Tk); received weights of shape "
            f"{array.shape}. Pick one sample (weights[i]); draw a 1-D vector with vector()"
        )
    return array


def _vector(weights: Any) -> np.ndarray:
    array = _as_array(weights, "vector")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise PlotError(
            f"vector draws a (T,) vector or (1, T); received weights of shape {array.shape}. "
            "Pick one sample (weights[i]); draw a 2-D matrix with heatmap()"
        )
    return array


def _panel(name: Any, weights: Any) -> np.ndarray:
    array = _as_array(weights, f"compare, panel {name!r}")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (1, 2):
        raise PlotError(
            f"compare, panel {name!r}: weights must be (Tq, Tk) or (1, Tq, Tk) for a heat map "
            f"or (T,) for bars; received shape {array.shape}"
        )
    return array


def _check_labels(labels, expected: int, argument: str, what: str) -> None:
    if labels is None:
        return
    try:
        received = len(labels)
    except TypeError:
        raise PlotError(
            f"{argument} must be a sequence of {expected} labels; received {labels!r:.80}"
        ) from None
    if received != expected:
        raise PlotError(
            f"{argument} has {received} labels, but the weights have {expected} {what}; "
            "give one label per step"
        )


def _matrix_size(shape: tuple[int, int]) -> tuple[float, float]:
    rows, columns = shape
    return _clamp(2.5 + 0.3 * columns, 4, 12), _clamp(1.5 + 0.3 * rows, 3, 10)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
