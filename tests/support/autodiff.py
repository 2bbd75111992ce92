"""Gradients on any Keras backend, for tests: attnkit's own (:mod:`attnkit.backend`), with the
default linear loss ``sum(out * linspace(-1, 1))`` over the output's last axis."""

from __future__ import annotations

from attnkit.backend import layer_grads as _layer_grads
from attnkit.backend import value_and_grads

__all__ = ["compiled_layer_grads", "layer_grads", "value_and_grads"]


def layer_grads(layer, inputs, mask, training=None):
    """The layer's output and the gradients (inputs, then trainable weights), op by op."""
    return _layer_grads(layer, inputs, mask, training=training)


def compiled_layer_grads(layer, inputs, mask):
    """:func:`layer_grads` of the training call inside one compiled computation: XLA on
    TensorFlow, ``jax.jit``; op by op on PyTorch, which has none."""
    if not layer.built:  # stateless_call needs the variables
        layer.build([t.shape for t in inputs] if len(inputs) > 1 else inputs[0].shape)
    return _layer_grads(layer, inputs, mask, training=True, compiled=True)
