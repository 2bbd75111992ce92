"""One measurement of ``benchmarks/compare.py``, in its own process, on any Keras backend.

    python -m benchmarks.worker JOB      # JOB: JSON; the last stdout line is the JSON result

The model is ``Input((T, D)) -> Dense(D) -> layer -> (GlobalAveragePooling1D) -> Dense(1)``:
the projection below the layer makes a training step differentiate the layer with respect to
its inputs, as in any real model (without it a layer with no weights, ``dot``, would have no
backward pass at all, and a scored layer no gradient along its values). The batch is
put on the device once, so a step's time is the model's, not a copy from host memory (on a GPU
that copy costs as much as a short step). Modes:

- ``fwd``: inference, compiled the backend's usual way: a ``tf.function`` on TensorFlow,
  ``jax.jit`` of ``model.stateless_call`` on JAX, eager under ``torch.no_grad`` on PyTorch;
- ``train``: one SGD step on a mean squared error. TensorFlow: ``train_on_batch`` as Keras
  compiles it by default (op by op on a CPU, XLA on a GPU). JAX: ``jax.jit`` of the loss's
  ``value_and_grad`` and the update, what Keras' own JAX step does. PyTorch: eager
  ``backward()`` and the update, what Keras' own torch step does;
- ``xla``: TensorFlow's ``train_on_batch`` with ``jit_compile=True`` (on JAX ``train`` is
  already compiled as a whole; PyTorch has no such mode here).

Memory: on a GPU, the device's peak allocation; on a CPU, the process's peak RSS. compare.py
subtracts a baseline process that builds a model with no attention layer.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LEARNING_RATE = 1e-3


def _model(job):
    import keras

    from benchmarks.peers import build

    if job.get("dtype", "float32") != "float32":
        keras.config.set_dtype_policy(job["dtype"])
    inputs = keras.Input((job["steps"], job["features"]))
    hidden = keras.layers.Dense(job["features"])(inputs)
    if job["layer"] == "baseline":
        out = keras.layers.GlobalAveragePooling1D()(hidden)
    else:
        out = build(job["layer"])(hidden)
        if len(out.shape) == 3:
            out = keras.layers.GlobalAveragePooling1D()(out)
    return keras.Model(inputs, keras.layers.Dense(1)(out))


def _data(job):
    import numpy as np

    x = np.random.RandomState(0).randn(job["batch"], job["steps"], job["features"])
    return x.astype("float32"), np.zeros((job["batch"], 1), "float32")


def _tensorflow_step(model, x, y, mode):
    import tensorflow as tf

    if mode == "fwd":
        forward = tf.function(lambda t: model(t, training=False))
        x = tf.constant(x)
        return lambda: forward(x).numpy()
    import keras

    model.compile(
        keras.optimizers.SGD(LEARNING_RATE), "mse", jit_compile=True if mode == "xla" else "auto"
    )
    x, y = tf.constant(x), tf.constant(y)
    return lambda: model.train_on_batch(x, y)


def _jax_step(model, x, y, mode):
    import jax
    import jax.numpy as jnp

    if mode == "xla":
        raise NotImplementedError("n/a on jax: 'train' is already one compiled step")
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]
    x, y = jax.device_put(x), jax.device_put(y)
    if mode == "fwd":
        forward = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
        return lambda: forward(trainable, frozen, x).block_until_ready()

    def loss(t, n, x, y):
        out, n = model.stateless_call(t, n, x, training=True)
        return jnp.mean(jnp.square(out.astype("float32") - y)), n

    @jax.jit
    def train(t, n, x, y):
        (value, n), grads = jax.value_and_grad(loss, has_aux=True)(t, n, x, y)
        return value, [w - LEARNING_RATE * g for w, g in zip(t, grads, strict=True)], n

    state = [trainable, frozen]

    def step():
        value, state[0], state[1] = train(*state, x, y)
        value.block_until_ready()

    return step


def _torch_step(model, x, y, mode):
    import torch

    if mode == "xla":
        raise NotImplementedError("n/a on torch: no whole-step compilation in this benchmark")
    device = model.trainable_variables[0].value.device
    x, y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if mode == "fwd":

        def step():
            with torch.no_grad():
                model(x, training=False)
            sync()

        return step
    weights = [v.value for v in model.trainable_variables]

    def step():
        loss = torch.mean(torch.square(model(x, training=True).float() - y))
        loss.backward()
        with torch.no_grad():
            for w in weights:
                w -= LEARNING_RATE * w.grad
                w.grad = None
        sync()

    return step


def device_kind() -> str:
    """``gpu`` when the Keras backend sees a GPU (and so computes on it), else ``cpu``."""
    from attnkit.backend import gpu_available

    return "cpu" if gpu_available() else "gpu"


def peak_memory() -> tuple[int, str]:
    """(bytes, what): the GPU's peak allocation where the backend computes on one, else the
    process's peak resident set size."""
    import keras

    if device_kind() == "gpu":
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            return jax.devices()[0].memory_stats()["peak_bytes_in_use"], "gpu"
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated(), "gpu"
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"], "gpu"
    from attnkit.bench import peak_rss

    return peak_rss(), "rss"


def measure(job: dict) -> dict:
    import keras

    from attnkit.bench import median_time

    model = _model(job)
    x, y = _data(job)
    backend = keras.backend.backend()
    make = {"tensorflow": _tensorflow_step, "jax": _jax_step, "torch": _torch_step}[backend]
    seconds = median_time(make(model, x, y, job["mode"]), job["warmup"], job["repeats"])
    memory, kind = peak_memory()
    return {"seconds": seconds, "memory": memory, "memory_kind": kind, "backend": backend}


def matmul_peak() -> dict:
    """GFLOP/s of a (4096, 4096) float32 matmul on the backend's device (the roofline of dot
    attention), and which device that is."""
    import time

    import numpy as np
    from keras import ops

    kind = device_kind()
    a = ops.convert_to_tensor(np.random.RandomState(0).randn(4096, 4096).astype("float32"))
    repeats = 50 if kind == "gpu" else 5
    ops.convert_to_numpy(ops.matmul(a, a)[0, 0])
    start = time.perf_counter()
    for _ in range(repeats):
        c = ops.matmul(a, a)
    ops.convert_to_numpy(c[0, 0])  # one stream: waits for every matmul
    return {"gflops": repeats * 2 * 4096**3 / (time.perf_counter() - start) / 1e9, "device": kind}


def main(argv: list[str]) -> int:
    from attnkit.bench import worker_result

    job = json.loads(argv[0])
    return worker_result(
        lambda job: matmul_peak() if job["layer"] == "matmul" else measure(job), job
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
