"""Backend-specific compilation of the plans' inference passes (chunked blocks, banded offsets).

A block's pairwise work (``tanh(W q_i + U k_j)`` for additive scorers, the mask and the
softmax for every scorer) is elementwise over B x block x Tk (x units) values; run op by op,
each intermediate is written to memory and read back. Under JAX the whole step is already one
XLA computation, so those ops fuse. TensorFlow runs a graph op by op on CPU unless asked, so
there a block's inference pass is compiled with XLA. Training keeps TensorFlow's own kernels
under ``keras.remat``: XLA's gradients of these fusions measured slower, and a custom
gradient that recomputed op by op lost the bounded memory (benchmarks/README.md).

Inside a computation that is compiled as a whole (any JAX step Keras jits; a TensorFlow
function with ``jit_compile=True``, Keras' default for TensorFlow on a GPU), nothing is
compiled again: the outer compilation fuses the ops already, and on TensorFlow a compiled
function's gradient taken inside another measured 6.0-6.6 s per training step instead of
0.05 s (additive+local15 at T=1024, benchmarks/README.md, fifth session).
This module, :mod:`attnkit.debug` and :mod:`attnkit.dropout` are the only ones in attnkit that
import a backend.
"""

from __future__ import annotations

import functools

import keras

__all__ = ["compiling", "fused", "jax_on_accelerator"]


def fused(make, *key):
    """``make(*key)``, compiled into fused kernels where the backend would otherwise run it op
    by op. On TensorFlow the compiled function is kept per ``key``: a new one per call would be
    traced and compiled again on every eager call (0.12 s instead of 0.007 s at T=256)."""
    if keras.backend.backend() != "tensorflow" or compiling():
        return make(*key)
    try:
        return _compiled(make, key)
    except TypeError:  # an unhashable (non-frozen) third-party component in the key
        return _compile(make(*key))


def compiling(tensor=None) -> bool:
    """Whether the ops being built now become one compiled computation, fused as a whole: on
    JAX (Keras jits every training and inference step), on TensorFlow inside a function
    compiled with XLA. False on PyTorch. Given a ``tensor`` the computation works on, JAX
    answers for it: False for a concrete array (an eager call, op by op), True for a tracer
    (inside ``jit``, or a gradient being traced)."""
    backend = keras.backend.backend()
    if backend == "jax":
        if tensor is None:
            return True
        import jax

        return isinstance(tensor, jax.core.Tracer)
    if backend != "tensorflow":
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util  # no public equivalent

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def jax_on_accelerator() -> bool:
    """Whether JAX computes on a GPU or TPU here (its default device is not the CPU); False on
    any other backend."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu"


@functools.lru_cache(maxsize=64)
def _compiled(make, key):
    return _compile(make(*key))


def _compile(fn):
    import tensorflow as tf

    return tf.function(fn, jit_compile=True, autograph=False)
