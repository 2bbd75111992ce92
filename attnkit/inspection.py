"""Reading the attention weights of an ``AttentionLayer`` inside a trained model.

    >>> weights = attnkit.attention_weights(model, "attention", x_test[:8])  # (8, Tq, Tk)

The model is not rebuilt: it is called eagerly on the inputs, batch by batch, while
:func:`attnkit.capture.capture` records what the named layer computed.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from attnkit.capture import capture
from attnkit.errors import CaptureError, InputShapeError, LayerNotFoundError, did_you_mean
from attnkit.layer import AttentionLayer

__all__ = ["attention_weights", "find_attention_layer", "sample_count"]


def attention_weights(
    model: keras.layers.Layer, layer_name: str, inputs: Any, *, batch_size: int = 32
) -> np.ndarray:
    """The attention weights of the ``AttentionLayer`` named ``layer_name`` on ``inputs``.

    What the layer would return with ``return_attention=True``, without rebuilding the model:
    (N, Tq, Tk) for a ``seq`` layer (row i is query step i's distribution over the keys),
    (N, Tk) for a many-to-one layer (``last``, ``weighted``), the gate's shape for ``gate``.
    Padded keys get exactly 0; a padded query row is all zeros. The model runs in inference
    mode (``training=False``, no dropout), one eager call per batch; the layer uses its dense
    plan meanwhile, so the numbers match the dense plan's, and the model's outputs are unchanged.

    Example::

        model.fit(x, y)
        weights = attnkit.attention_weights(model, "attention", x_test[:4])
        attnkit.viz.heatmap(weights[0], path="attention.png")

    Args:
        model: a Keras model (functional, Sequential or subclassed) or layer holding the layer,
            at any depth (nested models and layers are searched).
        layer_name: the ``name`` of the ``AttentionLayer``.
        inputs: what ``model`` takes: one array, a list/tuple of arrays (multi-input models) or
            a dict of arrays, each with the same number N of samples on axis 0.
        batch_size: samples per call of the model.

    Returns:
        A NumPy array with N rows on axis 0, in the layer's compute dtype.

    Raises:
        LayerNotFoundError: no ``AttentionLayer`` of that name, with the names that exist.
        InputShapeError: the inputs hold no samples or disagree on how many.
        CaptureError: the layer did not run once per call (not reached by these inputs, a
            compiled ``call``, or a layer shared between several calls).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size!r}")
    layer = find_attention_layer(model, layer_name)
    count = sample_count(inputs)
    batches = []
    with capture(layer.name) as found:
        for start in range(0, count, batch_size):
            batch = keras.tree.map_structure(
                lambda array, start=start: array[start : start + batch_size], inputs
            )
            model(batch, training=False)
            calls = found[layer.name]
            if len(calls) != 1:
                raise _calls_error(model, layer, len(calls))
            batches.append(calls.pop())
    return np.concatenate(batches, axis=0)


def find_attention_layer(model: keras.layers.Layer, layer_name: str) -> AttentionLayer:
    """The one ``AttentionLayer`` called ``layer_name`` in ``model``, searched at any depth.

    Raises:
        LayerNotFoundError: no layer of that name, a layer of that name that is not an
            ``AttentionLayer``, or several ``AttentionLayer`` s sharing it (capture records by
            name, so it could not tell them apart).
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model must be a Keras model or layer. Received: {type(model).__name__}")
    if not isinstance(layer_name, str):
        raise TypeError(f"layer_name must be a string. Received: {layer_name!r}")
    # _flatten_layers is what Model.layers and get_layer use; it also reaches layers held by
    # subclassed models and wrappers, which a walk over .layers misses.
    layers = model._flatten_layers(include_self=True, recursive=True)
    attention = [layer for layer in layers if isinstance(layer, AttentionLayer)]
    hits = [layer for layer in attention if layer.name == layer_name]
    if len(hits) == 1:
        return hits[0]
    names = sorted({layer.name for layer in attention})
    held = (
        f"its AttentionLayers are: {', '.join(repr(n) for n in names)}"
        if names
        else "it holds no AttentionLayer"
    )
    where = f"model '{model.name}'"
    if hits:
        raise LayerNotFoundError(
            f"{where} holds {len(hits)} AttentionLayers named '{layer_name}'; the weights are "
            "recorded by name, so give each a distinct name= when building the model"
        )
    others = [layer for layer in layers if layer.name == layer_name]
    if others:
        reason = (
            f"layer '{layer_name}' of {where} is a {type(others[0]).__name__}, "
            "not an attnkit AttentionLayer"
        )
    else:
        reason = f"{where} has no layer named '{layer_name}'"
    close = did_you_mean(layer_name, names)
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    raise LayerNotFoundError(f"{reason}{hint} ({held})")


def sample_count(inputs: Any) -> int:
    """N, the length of axis 0 that every input array shares."""
    leaves = keras.tree.flatten(inputs)
    counts = {int(leaf.shape[0]) if len(getattr(leaf, "shape", ())) else None for leaf in leaves}
    if not leaves or None in counts:
        raise InputShapeError(
            "inputs must be an array, a list/tuple or a dict of arrays with the samples on "
            f"axis 0; received {_describe(inputs)}"
        )
    if len(counts) != 1:
        raise InputShapeError(
            f"the input arrays disagree on the number of samples; received {_describe(inputs)}"
        )
    count = counts.pop()
    if count == 0:
        raise InputShapeError(f"the inputs hold no samples; received {_describe(inputs)}")
    return count


def _describe(inputs: Any) -> str:
    """The structure of ``inputs`` with shapes in place of arrays."""
    shapes = keras.tree.map_structure(
        lambda leaf: tuple(getattr(leaf, "shape", ())) or type(leaf).__name__, inputs
    )
    return f"shapes {shapes}"


def _calls_error(model, layer: AttentionLayer, calls: int) -> CaptureError:
    if calls == 0:
        reason = (
            f"layer '{layer.name}' did not run eagerly when model '{model.name}' was called: "
            "the inputs do not reach it, or the model's call is compiled (tf.function, "
            "jax.jit); call attention_weights on the plain model"
        )
    else:
        reason = (
            f"layer '{layer.name}' ran {calls} times in one call of model '{model.name}' "
            "(a shared layer); attention_weights reads a layer that runs once per call"
        )
    return CaptureError(reason)
