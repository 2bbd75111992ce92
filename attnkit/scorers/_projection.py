"""Per-step projections ``x @ w + b`` whose gradient XLA cannot split into copies.

Differentiated by the backend, a 3-D ``matmul`` with a broadcast bias gives its cotangent three
consumers of different shapes (a batched matmul for the weight, a 2-D one for the inputs, a
reduction for the bias). Inside a compiled computation XLA then fuses the cotangent's own
computation into a copy for each consumer; for the banded plan's window energy that is the
tanh of every offset, written out three times. Under compilation the gradient here is written
by hand, every part of it a dot over one (B T, units) buffer; op by op the backend's own is as
fast and is kept.
"""

from __future__ import annotations

from keras import ops

from attnkit.backend import compiling

__all__ = ["project"]


def project(x, w, bias=None):
    """``y[b, t] = x[b, t] @ w + bias`` for x (B, T, D), w (D, U), bias (U,) or None.

    Under compilation (:func:`attnkit.backend.compiling`) its gradient is
    ``dx = g w^T``, ``dw = x^T g`` and ``dbias = 1^T g`` over the flattened (B T, U)
    cotangent g: three dots over one buffer.
    """
    shape = ops.shape(x)
    flat = ops.reshape(x, (-1, x.shape[-1]))
    if bias is None:
        out = ops.matmul(flat, w)
    elif compiling(x):
        # Variables are read into tensors first (ops.copy: tf.identity under TensorFlow, whose
        # convert_to_tensor passes a variable through): a custom gradient tracks tensors only,
        # and TensorFlow's refuses a function that reads variables itself.
        out = _affine(flat, ops.copy(w), ops.copy(bias))
    else:
        out = ops.matmul(flat, w) + bias
    return ops.reshape(out, (shape[0], shape[1], w.shape[-1]))


@ops.custom_gradient
def _affine(flat, w, bias):
    def grad(*args, upstream=None):
        if upstream is None:  # TensorFlow and JAX pass the cotangent alone; torch by name
            (upstream,) = args
        ones = ops.ones((1, ops.shape(flat)[0]), dtype=upstream.dtype)
        d_flat = ops.matmul(upstream, ops.transpose(w))
        d_w = ops.matmul(ops.transpose(flat), upstream)
        d_bias = ops.reshape(ops.matmul(ones, upstream), ops.shape(bias))
        return d_flat, d_w, d_bias

    return ops.matmul(flat, w) + bias, grad
