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
