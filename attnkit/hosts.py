"""What a component's ``build`` gets as ``layer``: a host that creates weights on the layer.

Components make their weights with ``layer.add_weight(name, shape, initializer)``; the host
decides what that creates: a variable of the layer, with the component's prefix
(``scorer_w_q``); with heads, one such weight per head stacked on a leading axis (H, *shape),
each head's slice initialised as the component asked; or, for ``attnkit explain``, nothing but
a record of the name, shape and dtype.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["Recorder", "Weights"]


class Weights:
    """The host layer, with prefixed weight names and, with ``heads``, a leading head axis.

    Weights default to ``autocast=False`` so that under mixed precision the components read
    them in float32, the dtype scores are computed in.
    """

    def __init__(self, layer: keras.layers.Layer, prefix: str, heads: int | None = None) -> None:
        self._layer, self._prefix, self._heads = layer, prefix, heads
        #: the weights made here, in order: with heads, the ones that hold a head axis.
        self.made: list = []

    def add_weight(self, name: str, shape=(), initializer="glorot_uniform", **kwargs):
        kwargs.setdefault("autocast", False)
        if self._heads is not None:
            shape = (self._heads, *tuple(shape))
            initializer = PerHead(initializer)
        weight = self._layer.add_weight(
            name=self._prefix + name, shape=shape, initializer=initializer, **kwargs
        )
        self.made.append(weight)
        return weight

    def __getattr__(self, item: str) -> Any:
        return getattr(self._layer, item)


class PerHead:
    """An initializer for a (H, *shape) weight: each head's (*shape) slice drawn on its own by
    ``initializer``, so a head's weight has the fans, and the scale, of a single head's.

    A Keras initializer draws the same values at every call (its seed is fixed when it is
    made), so each head draws from a fresh copy: unseeded, a new seed per head; seeded with
    an integer s, the seed s + h for head h, so that seeded layers stay reproducible.
    """

    def __init__(self, initializer: Any) -> None:
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        from keras import ops

        head_shape = tuple(shape[1:])
        return ops.stack([self._for_head(h)(head_shape, dtype) for h in range(shape[0])])

    def _for_head(self, head: int):
        initializer = self.initializer
        if not isinstance(initializer, keras.initializers.Initializer):
            return initializer  # a plain callable: called once per head as it is
        config = initializer.get_config()
        if isinstance(config.get("seed"), int):
            config["seed"] += head
        return type(initializer).from_config(config)


class Recorder:
    """A stand-in for the host in ``build``: records each weight's name, shape and dtype in
    ``found`` and returns a symbolic tensor instead of allocating a variable."""

    def __init__(self, prefix: str, layer: keras.layers.Layer, found: list, heads=None) -> None:
        self._prefix, self._layer, self._found, self._heads = prefix, layer, found, heads
        self.made: list = []

    def add_weight(self, name: str, shape=(), initializer=None, dtype=None, **kwargs):
        dtype = keras.backend.standardize_dtype(dtype or self._layer.variable_dtype)
        shape = tuple(int(d) for d in shape)
        if self._heads is not None:
            shape = (self._heads, *shape)
        self._found.append({"name": self._prefix + name, "shape": list(shape), "dtype": dtype})
        weight = keras.KerasTensor(shape, dtype=dtype)
        self.made.append(weight)
        return weight

    def __getattr__(self, item: str) -> Any:
        return getattr(self._layer, item)
