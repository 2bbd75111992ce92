"""Backend-specific compilation of the chunked plan's block function for inference.

A block's pairwise work (``tanh(W q_i + U k_j)`` for additive scorers, the mask and the
softmax for every scorer) is elementwise over B x block x Tk (x units) values; run op by op,
each intermediate is written to memory and read back. Under JAX the whole step is already one
XLA computation, so those ops fuse. TensorFlow runs a graph op by op on CPU unless asked, so
there a block's inference pass is compiled with XLA. Training keeps TensorFlow's own kernels
under ``keras.remat``: XLA's gradients of these fusions measured slower, and a custom
gradient that recomputed op by op lost the bounded memory (benchmarks/README.md).
This module and :mod:`attnkit.debug` are the only ones in attnkit that import a backend.
"""

from __future__ import annotations

import functools

import keras

__all__ = ["fused"]


def fused(make, *key):
    """``make(*key)``, compiled into fused kernels where the backend would otherwise run it op
    by op. On TensorFlow the compiled function is kept per ``key``: a new one per call would be
    traced and compiled again on every eager call (0.12 s instead of 0.007 s at T=256)."""
    if keras.backend.backend() != "tensorflow":
        return make(*key)
    try:
        return _compiled(make, key)
    except TypeError:  # an unhashable (non-frozen) third-party component in the key
        return _compile(make(*key))


@functools.lru_cache(maxsize=64)
def _compiled(make, key):
    return _compile(make(*key))


def _compile(fn):
    import tensorflow as tf

    return tf.function(fn, jit_compile=True, autograph=False)
