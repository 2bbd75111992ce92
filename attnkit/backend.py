"""What differs between the Keras backends, each behind one function.

Everything else in attnkit computes with ``keras.ops``; this is the one module of the core
that imports TensorFlow, JAX or PyTorch, and only inside the function that needs it, so that
importing attnkit never imports a backend Keras does not use.

- :func:`compiling`: whether the ops being built become one compiled (XLA) computation;
- :func:`fused`: compile a function's ops into fused kernels where the backend would run
  them one by one (TensorFlow on a CPU);
- :func:`on_accelerator`: whether JAX computes on a GPU or TPU;
- :func:`gpu_available`: why the backend sees no GPU, or None;
- :func:`has_float64`: whether float64 tensors really hold float64;
- :func:`remat`: a function recomputed in the backward pass, differentiable twice;
- :func:`stateless_dropout`: dropout drawn from a seed and a salt, the same on every call;
- :func:`flash_attention_argument`: what to pass ``keras.ops.dot_product_attention``;
- :func:`check_finite_in_graph`: a finiteness check that runs inside a traced computation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

__all__ = [
    "check_finite_in_graph",
    "compiling",
    "flash_attention_argument",
    "fused",
    "gpu_available",
    "has_float64",
    "on_accelerator",
    "remat",
    "stateless_dropout",
]


def _name() -> str:
    return keras.backend.backend()


def compiling(tensor: Any = None) -> bool:
    """Whether the ops being built now become one compiled computation, fused as a whole.

    True on JAX (Keras jits every training and inference step) and on TensorFlow inside a
    function compiled with XLA (``jit_compile=True``); False on PyTorch. Given a ``tensor``
    the computation works on, JAX answers for it: False for a concrete array (an eager call,
    op by op), True for a tracer (inside ``jit``, or a gradient being traced).
    """
    backend = _name()
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


def fused(make: Callable[..., Callable], *key: Any) -> Callable:
    """``make(*key)``, compiled into fused kernels where the backend would run it op by op.

    Pairwise elementwise work (a tanh over every (query, key, unit) value) run op by op
    writes each intermediate to memory and reads it back. On TensorFlow outside an XLA
    computation the function is compiled with ``jit_compile=True`` and kept per ``key``: a new
    one per call would be traced and compiled on every eager call. Elsewhere (JAX, where the
    enclosing step is already compiled; PyTorch; TensorFlow inside a compiled function, where
    a compiled function's gradient taken inside another is far slower) it is ``make(*key)``.
    """
    if _name() != "tensorflow" or compiling():
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


def remat(f: Callable) -> Callable:
    """``f`` (a function of tensors), recomputed in the backward pass instead of keeping its
    intermediates, and differentiable twice (gradient penalties, Hessian-vector products).

    JAX's ``jax.checkpoint`` and PyTorch's non-reentrant checkpoint, which ``keras.remat`` calls,
    differentiate again. TensorFlow's ``tf.recompute_grad`` does not: its gradient is itself a
    custom gradient that raises when differentiated. Here the gradient recomputes ``f`` under
    a tape of its own and takes that tape's gradient; an outer tape records both, so the
    gradient has a gradient.
    """
    if _name() != "tensorflow":
        return keras.remat(f)
    return _tf_remat(f)


def _tf_remat(f: Callable) -> Callable:
    import tensorflow as tf
    from tensorflow.python.eager import record  # no public way to pause the tape

    @tf.custom_gradient
    def wrapped(*args):
        with record.stop_recording():  # keep nothing of the forward pass for the backward
            result = f(*args)

        def grad(*upstream):
            inputs = [tf.identity(a) for a in args]
            if not tf.executing_eagerly():
                # XLA does not respect control dependencies: make the recomputation depend on
                # the cotangent, so it runs in the backward pass and is not merged with the
                # forward one.
                first = tf.reshape(upstream[0], [-1])[:1]
                flag = tf.cast(tf.reduce_max(first), tf.bool)
                nudge = tf.where(tf.equal(flag, flag), 0.0, float("nan"))
                inputs = [x + tf.cast(nudge, x.dtype) for x in inputs]
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                again = f(*inputs)
            several = isinstance(again, (list, tuple))
            return tape.gradient(
                again,
                inputs,
                output_gradients=list(upstream) if several else upstream[0],
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )

        return result, grad

    return wrapped


def on_accelerator() -> bool:
    """Whether JAX computes on a GPU or TPU here (its default device is not the CPU); False on
    any other backend."""
    if _name() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu"


def gpu_available() -> str | None:
    """A reason the backend sees no GPU, or None if it sees one."""
    backend = _name()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            found = bool(tf.config.list_physical_devices("GPU"))
        elif backend == "jax":
            import jax

            found = any(d.platform == "gpu" for d in jax.devices())
        elif backend == "torch":
            import torch

            found = torch.cuda.is_available()
        else:
            found = False
    except Exception as error:  # a backend that cannot even list devices has no usable GPU
        return f"the {backend} backend cannot list GPUs: {error}"
    return None if found else f"no GPU visible to the {backend} backend"


def has_float64() -> bool:
    """Whether a float64 tensor holds float64: not on JAX without ``jax_enable_x64``, which
    truncates it to float32 with a warning."""
    if _name() == "jax":
        import jax

        return bool(jax.config.jax_enable_x64)
    return True


def stateless_dropout(weights: Any, rate: float, seed: Any, salt: Any) -> Any:
    """``weights * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)`` drawn from the stateless
    generator keyed by ``seed`` (a (2,) integer tensor) and ``salt`` (an integer scalar).

    The same mask for the same seed and salt, on every call and inside a traced loop, so a
    block recomputed for the backward pass drops what its forward pass dropped. The backends'
    stateless generators take their seeds in different forms. TensorFlow's draw another mask
    compiled with XLA than op by op; each mode repeats its own.
    """
    keep = 1.0 - rate
    backend = _name()
    if backend == "jax":
        import jax

        key = jax.random.fold_in(ops.cast(seed, "uint32"), ops.cast(salt, "uint32"))
        mask = jax.random.bernoulli(key, keep, tuple(weights.shape))
        return ops.where(mask, weights / ops.cast(keep, weights.dtype), ops.zeros_like(weights))
    if backend == "tensorflow":
        import tensorflow as tf

        # Keras keeps TensorFlow seeds as int64; the stateless ops want int32 under XLA.
        base = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        key = tf.random.experimental.stateless_fold_in(base, tf.cast(salt, tf.int32))
        return tf.nn.experimental.stateless_dropout(weights, rate, seed=key)
    # PyTorch, NumPy: eager, so the seed has a value to seed a generator with.
    first, second = (int(x) for x in ops.convert_to_numpy(seed))
    combined = hash((first, second, int(ops.convert_to_numpy(salt)))) & 0xFFFFFFFF
    return keras.random.dropout(weights, rate, seed=combined)


def flash_attention_argument() -> bool | None:
    """``flash_attention=`` for ``keras.ops.dot_product_attention``: None (let Keras decide)
    except on torch, where Keras' flash probe (``SDPAParams``) breaks ``torch.compile``; with
    the probe off Keras calls ``scaled_dot_product_attention``, which still dispatches to a
    flash kernel where it can."""
    return False if _name() == "torch" else None


def check_finite_in_graph(value: Any, finite: Any, message: str, report: Callable) -> Any:
    """``value``, with ``report(finite, message)`` run when the traced computation runs; None
    when the call is eager (the caller then checks at once).

    TensorFlow graphs get a ``check_numerics`` dependency (which cannot take a mask: it is fed
    zeros where the check does not look) and raise its error with ``message``; JAX tracers get
    a host callback; torch.compile's graph gets nothing (a data-dependent raise would break
    the graph; its eager calls are checked).
    """
    backend = _name()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            checked = tf.where(finite, tf.zeros_like(value), value)
            with tf.control_dependencies([tf.debugging.check_numerics(checked, message)]):
                return tf.identity(value)
    elif backend == "jax":
        import jax

        if isinstance(value, jax.core.Tracer):
            jax.debug.callback(report, finite, message)
            return value
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return value
    return None
