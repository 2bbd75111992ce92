"""Training attnkit layers across two CPU devices; each scenario runs in a fresh process.

    python tests/support/distributed_scenarios.py mirrored      # tf.distribute.MirroredStrategy
    python tests/support/distributed_scenarios.py jax           # keras.distribution.DataParallel
    python tests/support/distributed_scenarios.py load FILE.keras INPUTS.npz EXPECTED.npz

Devices must be configured before the runtime starts, hence a script and not a test body. Each
scenario prints one JSON line; ``tests/test_distributed.py`` runs them and asserts on it.
"""

from __future__ import annotations

import json
import os
import sys

SPECS = [
    "dot",
    "general(use_bias=true)",
    "additive+local3",
    "bahdanau",
    "gaussian+causal",
    "dot+weighted",
    "cosine",  # a third-party scorer: the attnkit-cosine plugin
    "additive+causal heads=2",  # multi-head: per-head scorer weights and projections
]
#: The spec whose uneven batches are compared with plain Keras' (Keras decides those).
UNEVEN = "additive+local3"
STEPS, FEATURES = 8, 6


def _data(batch=4):
    import numpy as np

    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (batch, STEPS, FEATURES)).astype("float32")
    y = rng.uniform(-1, 1, (batch, 1)).astype("float32")
    return x, y


def _model(spec):
    import keras

    import attnkit

    spec, _, heads = spec.partition(" heads=")
    options = {"num_heads": int(heads), "key_dim": 3} if heads else {}
    inputs = keras.Input((STEPS, FEATURES))
    hidden = keras.layers.Dense(FEATURES)(inputs)
    out = attnkit.AttentionLayer(spec, **options)(hidden)
    if len(out.shape) == 3:
        out = keras.layers.GlobalAveragePooling1D()(out)
    return keras.Model(inputs, keras.layers.Dense(1)(out))


def _one_step(model, initial, x, y):
    import keras
    import numpy as np

    model.set_weights(initial)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    # fit, not train_on_batch: under a strategy train_on_batch hands every replica the whole
    # batch, so only fit's distributed dataset really splits the batch between replicas.
    history = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return float(np.asarray(history.history["loss"][-1])), model.get_weights()


def _max_diff(a, b):
    import numpy as np

    return max(float(np.max(np.abs(p - q))) for p, q in zip(a, b, strict=True))


def _plain_model():
    import keras

    inputs = keras.Input((STEPS, FEATURES))
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(FEATURES)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def _uneven(strategy, build, x, y, batch):
    """A global batch that does not split evenly over 2 replicas (1: one replica is empty):
    "ok", "nan", or the error's type."""
    import keras

    with strategy.scope():
        model = build()
        model.compile(keras.optimizers.SGD(0.1), "mse")
    try:
        loss = model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0).history["loss"][-1]
    except Exception as error:  # noqa: BLE001 - reported, compared with plain Keras
        return type(error).__name__
    return "ok" if loss == loss else "nan"


def mirrored(folder):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    import numpy as np

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = _data()
    report = {"replicas": strategy.num_replicas_in_sync, "specs": {}}
    for spec in SPECS:
        keras.utils.set_random_seed(0)
        single = _model(spec)
        initial = single.get_weights()
        loss_1, weights_1 = _one_step(single, initial, x, y)
        with strategy.scope():
            model = _model(spec)
            mirrored_vars = all(
                isinstance(v.value, tf.distribute.DistributedValues) for v in model.weights
            )
        loss_2, weights_2 = _one_step(model, initial, x, y)
        report["specs"][spec] = {
            "mirrored": mirrored_vars,
            "loss_single": loss_1,
            "loss_mirrored": loss_2,
            "weights_diff": _max_diff(weights_1, weights_2),
        }
    report["uneven"] = _uneven(strategy, lambda: _model(UNEVEN), x, y, 3)
    report["empty_replica"] = _uneven(strategy, lambda: _model(UNEVEN), x, y, 1)
    report["uneven_plain_keras"] = _uneven(strategy, _plain_model, x, y, 3)
    report["empty_replica_plain_keras"] = _uneven(strategy, _plain_model, x, y, 1)
    # mixed_float16 with loss scaling (Keras wraps the optimizer in a LossScaleOptimizer).
    keras.config.set_dtype_policy("mixed_float16")
    with strategy.scope():
        model = _model("additive+local3")
        model.compile(keras.optimizers.SGD(0.1), "mse")
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    report["mixed_float16"] = {
        "loss_scaled": type(model.optimizer).__name__,
        "losses": [float(v) for v in history.history["loss"]],
        "finite_weights": all(np.isfinite(w).all() for w in model.get_weights()),
    }
    keras.config.set_dtype_policy("float32")
    # Save inside the strategy; the test loads the file in a fresh process without one.
    with strategy.scope():
        model = _model("general+causal")
        model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(os.path.join(folder, "mirrored.keras"))
    np.savez(os.path.join(folder, "inputs.npz"), x=x)
    np.savez(os.path.join(folder, "expected.npz"), y=model.predict(x, verbose=0))
    print(json.dumps(report))


def jax_data_parallel(folder):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()
    import keras

    devices = keras.distribution.list_devices("cpu")
    x, y = _data()
    report = {"devices": len(devices), "specs": {}}
    for spec in SPECS:
        keras.distribution.set_distribution(None)
        keras.utils.set_random_seed(0)
        single = _model(spec)
        initial = single.get_weights()
        loss_1, weights_1 = _one_step(single, initial, x, y)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        model = _model(spec)
        loss_2, weights_2 = _one_step(model, initial, x, y)
        report["specs"][spec] = {
            "loss_single": loss_1,
            "loss_parallel": loss_2,
            "weights_diff": _max_diff(weights_1, weights_2),
        }
    print(json.dumps(report))


def load(path, inputs, expected):
    import keras
    import numpy as np

    import attnkit  # noqa: F401  (registers AttentionLayer)

    model = keras.models.load_model(path, safe_mode=True)
    got = model.predict(np.load(inputs)["x"], verbose=0)
    print(json.dumps({"max_diff": float(np.max(np.abs(got - np.load(expected)["y"])))}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "mirrored":
        mirrored(sys.argv[2])
    elif command == "jax":
        jax_data_parallel(sys.argv[2])
    else:
        load(*sys.argv[2:5])
