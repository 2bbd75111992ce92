"""Gradients on any Keras backend, for tests: what ``tf.GradientTape`` did under TensorFlow."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def value_and_grads(fn, tensors, variables):
    """``fn(*tensors) -> (loss, aux)``; returns (aux, d loss/d tensors, d loss/d variables).

    A gradient is None where the loss does not depend on that input (tf.GradientTape's rule).
    """
    backend = keras.backend.backend()
    tensors = [np.asarray(t) for t in tensors]
    if backend == "tensorflow":
        import tensorflow as tf

        ts = [tf.constant(t) for t in tensors]
        with tf.GradientTape(persistent=True) as tape:
            for t in ts:
                tape.watch(t)
            loss, aux = fn(*ts)
        g_t = tape.gradient(loss, ts)
        g_v = tape.gradient(loss, variables)
    elif backend == "torch":
        import torch

        ts = [torch.tensor(t, requires_grad=True) for t in tensors]
        loss, aux = fn(*ts)
        leaves = ts + [v.value for v in variables]
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        g_t, g_v = grads[: len(ts)], grads[len(ts) :]
    elif backend == "jax":
        import jax

        def loss_of(values, ts):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                loss, aux = fn(*ts)
            return loss, aux

        values = [v.value for v in variables]
        (_, aux), (g_v, g_t) = jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True)(
            values, [jax.numpy.asarray(t) for t in tensors]
        )
    else:
        raise NotImplementedError(backend)

    def np_or_none(g):
        return None if g is None else np.asarray(ops.convert_to_numpy(g))

    aux = [np.asarray(ops.convert_to_numpy(a)) for a in aux]
    return aux, [np_or_none(g) for g in g_t], [np_or_none(g) for g in g_v]


def _coefficients(out):
    return ops.convert_to_tensor(np.linspace(-1, 1, int(out.shape[-1]), dtype="float32"))


def _call(layer, ts, mask, training):
    return layer(list(ts) if len(ts) > 1 else ts[0], mask=mask, training=training)


def layer_grads(layer, inputs, mask, training=None):
    """The layer's output and the gradients (inputs, then trainable weights) of
    ``sum(out * linspace(-1, 1))``, eager."""

    def loss(*ts):
        out = _call(layer, ts, mask, training)
        return ops.sum(out * _coefficients(out)), [out]

    (out,), g_x, g_w = value_and_grads(loss, inputs, layer.trainable_weights)
    return out, [*g_x, *g_w]


def compiled_layer_grads(layer, inputs, mask):
    """:func:`layer_grads` of the training call, taken inside one compiled computation: XLA
    on TensorFlow, jax.jit; eager on PyTorch, which has none."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(ts, m):
            with tf.GradientTape() as tape:
                tape.watch(ts)
                out = _call(layer, ts, m, True)
                loss = ops.sum(out * _coefficients(out))
            return out, tape.gradient(loss, [*ts, *(w.value for w in layer.trainable_weights)])

        out, grads = step([tf.constant(t) for t in inputs], mask)
    elif backend == "jax":
        import jax

        if not layer.built:  # stateless_call needs the variables
            layer.build([t.shape for t in inputs] if len(inputs) > 1 else inputs[0].shape)
        # The non-trainable state (a dropout seed generator's) is read, its update dropped.
        state = [v.value for v in layer.non_trainable_variables]

        def loss(values, ts):
            out, _ = layer.stateless_call(
                values, state, ts if len(ts) > 1 else ts[0], mask=mask, training=True
            )
            return ops.sum(out * _coefficients(out)), out

        values = [w.value for w in layer.trainable_weights]
        run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
        (_, out), (g_w, g_x) = run(values, [jax.numpy.asarray(t) for t in inputs])
        grads = [*g_x, *g_w]
    else:
        return layer_grads(layer, inputs, mask, training=True)
    return ops.convert_to_numpy(out), [ops.convert_to_numpy(g) for g in grads]
