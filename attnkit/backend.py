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
- :func:`check_finite_in_graph`: a finiteness check that runs inside a traced computation;
- :func:`value_and_grads`, :func:`layer_grads`: gradients on any backend, op by op or compiled
  (the conformance suite's and the tests' autodiff).
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
    "layer_grads",
    "on_accelerator",
    "remat",
    "stateless_dropout",
    "value_and_grads",
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
    """Whether Keras computes float64 in float64 here: not on JAX without ``jax_enable_x64``
    (it truncates to float32 with a warning), nor on PyTorch, where ``keras.ops.matmul`` of
    float64 tensors returns float32."""
    backend = _name()
    if backend == "jax":
        import jax

        return bool(jax.config.jax_enable_x64)
    return backend != "torch"


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


def value_and_grads(fn: Callable, tensors, variables, compiled: bool = False):
    """``fn(*tensors) -> (loss, aux)``: (aux, d loss/d tensors, d loss/d variables) as NumPy
    arrays; a gradient is None where the loss does not depend on that input. ``compiled``:
    inside one compiled computation (XLA on TensorFlow, ``jax.jit``), where attnkit takes its
    compiled paths; PyTorch runs op by op either way."""
    import numpy as np

    backend = _name()
    tensors = [np.asarray(t) for t in tensors]
    if backend == "tensorflow":
        import tensorflow as tf

        def taped(*ts):
            with tf.GradientTape(persistent=True) as tape:
                for t in ts:
                    tape.watch(t)
                loss, aux = fn(*ts)
            watched = [getattr(v, "value", v) for v in variables]  # keras -> tf.Variable
            return aux, tape.gradient(loss, list(ts)), tape.gradient(loss, watched)

        if compiled:
            taped = tf.function(taped, jit_compile=True, autograph=False)
        aux, g_t, g_v = taped(*(tf.constant(t) for t in tensors))
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
                return fn(*ts)

        values = [v.value for v in variables]
        step = jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True)
        (_, aux), (g_v, g_t) = (jax.jit(step) if compiled else step)(
            values, [jax.numpy.asarray(t) for t in tensors]
        )
    else:
        raise NotImplementedError(f"gradients on the {backend} backend")
    return _arrays(aux), _arrays(g_t), _arrays(g_v)


def _arrays(values) -> list:
    """NumPy copies (detached from any gradient tape) of tensors, None kept."""
    return [None if v is None else ops.convert_to_numpy(ops.stop_gradient(v)) for v in values]


def layer_grads(layer, inputs, mask, coefficients=None, *, training=None, compiled=False):
    """The layer's output and the gradients (inputs, then trainable weights) of
    ``sum(output * coefficients)``, coefficients broadcasting against the output (default:
    ``linspace(-1, 1)`` over its last axis). ``compiled``: inside one compiled computation (XLA
    on TensorFlow, ``jax.jit``), where the plans take their compiled paths; PyTorch has none
    and runs op by op."""

    def call(ts, m, train):
        return layer(list(ts) if len(ts) > 1 else ts[0], mask=m, training=train)

    backend = _name()
    if compiled and backend == "tensorflow":
        return _tf_compiled_grads(layer, inputs, mask, coefficients, call)
    if compiled and backend == "jax":
        return _jax_compiled_grads(layer, inputs, mask, coefficients)

    def loss(*ts):
        out = call(ts, mask, training)
        return _weighted_sum(out, coefficients), [out]

    (out,), g_x, g_w = value_and_grads(loss, inputs, layer.trainable_weights)
    return out, [*g_x, *g_w]


def _weighted_sum(out, coefficients):
    """``sum(out * coefficients)`` in float32; None coefficients: linspace(-1, 1) over the last
    axis (known when the computation is traced)."""
    import numpy as np

    if coefficients is None:
        coefficients = np.linspace(-1, 1, int(out.shape[-1]), dtype="float32")
    weights = ops.convert_to_tensor(np.asarray(coefficients, "float32"))
    return ops.sum(ops.cast(out, "float32") * weights)


def _tf_compiled_grads(layer, inputs, mask, coefficients, call):
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)  # no Python control flow to convert
    def step(ts, m):
        with tf.GradientTape() as tape:
            tape.watch(ts)
            out = call(ts, m, True)
            loss = _weighted_sum(out, coefficients)
        return out, tape.gradient(loss, [*ts, *(w.value for w in layer.trainable_weights)])

    out, grads = step([tf.constant(t) for t in inputs], mask)
    return ops.convert_to_numpy(out), _arrays(grads)


def _jax_compiled_grads(layer, inputs, mask, coefficients):
    import jax

    # The non-trainable state (a dropout seed generator's) is read, its update dropped.
    state = [v.value for v in layer.non_trainable_variables]

    def loss(values, ts):
        out, _ = layer.stateless_call(
            values, state, ts if len(ts) > 1 else ts[0], mask=mask, training=True
        )
        return _weighted_sum(out, coefficients), out

    values = [w.value for w in layer.trainable_weights]
    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, out), (g_w, g_x) = run(values, [jax.numpy.asarray(t) for t in inputs])
    return ops.convert_to_numpy(out), _arrays([*g_x, *g_w])
