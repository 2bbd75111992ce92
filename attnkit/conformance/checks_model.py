"""Checks on a component's layer inside a Keras model: every plan against the dense plan,
gradients and training, XLA, saving and loading, and CPU-vs-GPU agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from attnkit.backend import layer_grads
from attnkit.conformance._harness import (
    FEATURES,
    STEPS,
    CheckFailure,
    SkipCheck,
    Subject,
    copy_weights,
    make_data,
    numpy,
    on_device,
    policy,
    wide_policy,
)
from attnkit.conformance._runs import LONG, gradient_modes, plans_for, small_blocks
from attnkit.conformance.checks_layer import build
from attnkit.errors import UnknownComponentError
from attnkit.plans._checks import splits

__all__ = [
    "check_config_round_trip",
    "check_device_agreement",
    "check_gradients",
    "check_jit_equals_eager",
    "check_plans_agree",
    "check_save_load_fresh_process",
    "check_training_lowers_loss",
]


def check_plans_agree(subject: Subject, device: str) -> None:
    """Every plan gives the dense plan's outputs and gradients (inputs and weights, in a
    training call) on a padded batch long enough for several chunked blocks: banded (its
    offset pass, and gathered windows for a scorer that declines the split), chunked
    (skipping the keys a causal mask hides, recomputed in the backward pass) and the fused
    kernel (forced, where its form applies), each op by op and compiled where compiling
    changes the path.

    The banded plan only looks inside the window the masks declare with ``reach()``, so a
    mask whose predicate allows more than it declares fails here; the kernel plan trusts
    ``dot_scale()`` and ``kernel_form()``, so a wrong declaration fails here too.
    """
    tried = 0
    for resolved in (subject.base, subject.causal, subject.local):
        if resolved is None or plans_for(resolved) == ["dense"]:
            continue
        steps = STEPS if subject.fixed_length else LONG
        x, mask = make_data(steps=steps)
        reference = build(subject, resolved)
        modes = gradient_modes()
        expected = layer_grads(reference, [x], mask, training=True, compiled=modes[-1])
        with small_blocks():
            for plan, layer in _plan_layers(subject, resolved, reference):
                tried += 1
                for compiled in modes:
                    got = layer_grads(layer, [x], mask, training=True, compiled=compiled)
                    how = f"the {plan} plan{' compiled' if compiled else ''}"
                    _compare_to_dense(subject, resolved, how, got, expected)
    if not tried:
        raise SkipCheck(f"'{subject.label}' runs on the dense plan only")


def _plan_layers(subject: Subject, resolved, reference):
    """(plan, layer) for every plan but dense, the weights copied from ``reference``; banded a
    second time through a scorer that offers no project()/pair() split (gathered windows)."""
    import attrs

    for plan in plans_for(resolved)[1:]:
        variants = [(plan, resolved)]
        if plan == "banded" and splits(resolved.scorer):
            gathering = attrs.evolve(resolved, scorer=_without_split(resolved.scorer))
            variants.append(("banded (gathered windows)", gathering))
        for label, spec in variants:
            layer = build(subject, spec, plan=plan)
            copy_weights(reference, layer)
            yield label, layer


def _without_split(scorer):
    """A scorer computing ``scorer``'s scores with its weights, without its project()/pair()
    split: the banded plan then scores gathered windows."""
    import attrs

    from attnkit.components import Scorer

    @attrs.frozen
    class Whole(Scorer):
        inner: Scorer
        name = scorer.name

        @property
        def token(self):
            return self.inner.token

        def build(self, layer, query_dim, key_dim):
            return self.inner.build(layer, query_dim, key_dim)

        def pair_width(self, query_dim, key_dim):
            return self.inner.pair_width(query_dim, key_dim)

        def score(self, params, query, key):
            return self.inner.score(params, query, key)

    return Whole(scorer)


def _compare_to_dense(subject: Subject, resolved, how: str, got, expected) -> None:
    (out, grads), (want, want_grads) = got, expected
    if not np.allclose(out, want, rtol=1e-5, atol=1e-5):
        raise CheckFailure(
            f"{subject.label} in '{resolved}': {how} differs from the dense plan by up to "
            f"{np.abs(out - want).max():.3g}"
        )
    names = ["the input"] + [f"weight {i}" for i in range(len(grads) - 1)]
    for name, g, w in zip(names, grads, want_grads, strict=True):
        g = np.zeros(np.shape(w)) if g is None else g
        w = np.zeros(np.shape(g)) if w is None else w
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        if not np.allclose(g, w, rtol=1e-4, atol=1e-5 * scale):
            raise CheckFailure(
                f"{subject.label} in '{resolved}': {how} gives the gradient of {name} up to "
                f"{np.abs(g - w).max():.3g} away from the dense plan's"
            )


def _resolvable(subject: Subject) -> None:
    from attnkit.registry import registry

    try:
        again = registry().resolve(subject.base.canonical)
    except UnknownComponentError as error:
        raise CheckFailure(
            f"{subject.label}: '{subject.base.canonical}' does not resolve through the registry "
            f"(is its distribution installed, with an 'attnkit' entry point?): {error.reason}"
        ) from error
    if again != subject.base:
        raise CheckFailure(
            f"{subject.label}: '{subject.base.canonical}' resolves to {again}, "
            "not to the component checked"
        )


def check_config_round_trip(subject: Subject, device: str) -> None:
    """get_config() is JSON data naming the canonical spec; from_config() rebuilds the layer."""
    from attnkit.layer import AttentionLayer

    _resolvable(subject)
    layer = AttentionLayer(subject.base, return_attention=True)
    config = json.loads(json.dumps(layer.get_config()))
    clone = AttentionLayer.from_config(config)
    if clone.resolved != layer.resolved or clone.get_config() != config:
        raise CheckFailure(f"{subject.label}: from_config(get_config()) gave '{clone.spec}'")


def check_save_load_fresh_process(subject: Subject, device: str) -> None:
    """A .keras file loads in a new process (import attnkit, safe_mode) with identical outputs."""
    import keras

    _resolvable(subject)
    steps = STEPS if subject.fixed_length else None
    inputs = keras.Input((steps, FEATURES))
    model = keras.Model(inputs, build(subject)(inputs))
    x, _ = make_data(pad=False)
    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "m.keras"))
        np.save(os.path.join(folder, "x.npy"), x)
        np.save(os.path.join(folder, "y.npy"), model.predict(x, verbose=0))
        script = textwrap.dedent(f"""
            import os
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            import numpy as np, keras, attnkit
            folder = {folder!r}
            model = keras.models.load_model(folder + "/m.keras", safe_mode=True)
            y = model.predict(np.load(folder + "/x.npy"), verbose=0)
            print("IDENTICAL" if np.array_equal(y, np.load(folder + "/y.npy")) else "DIFFERENT")
        """)
        done = subprocess.run(  # noqa: S603 - our own interpreter and a script we wrote
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    if done.returncode != 0 or "IDENTICAL" not in done.stdout:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CheckFailure(
            f"{subject.label}: loading in a fresh process failed or differed: " + " | ".join(tail)
        )


def check_jit_equals_eager(subject: Subject, device: str) -> None:
    """A model compiled with jit_compile=True predicts what the eager layer computes."""
    import keras

    layer = build(subject)
    steps = STEPS if subject.fixed_length else None
    inputs = keras.Input((steps, FEATURES))
    model = keras.Model(inputs, layer(inputs))
    model.compile(jit_compile=True)
    x, _ = make_data(pad=False)
    eager, jitted = numpy(layer(x)), model.predict(x, verbose=0)
    if not np.allclose(jitted, eager, rtol=1e-5, atol=1e-5):
        raise CheckFailure(
            f"{subject.label}: jit_compile=True differs from eager by up to "
            f"{np.abs(jitted - eager).max():.3g}"
        )


def _tiny_model(subject: Subject, **options):
    import keras

    steps = STEPS if subject.fixed_length else None
    inputs = keras.Input((steps, FEATURES))
    masked = keras.layers.Masking(0.0)(inputs)  # all-zero steps are padding
    hidden = keras.layers.Dense(FEATURES, name="project")(masked)
    attended = build(subject, **options)(hidden)
    if len(attended.shape) == 3:
        attended = keras.layers.GlobalAveragePooling1D()(attended)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(attended))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def _padded_batch() -> np.ndarray:
    """make_data()'s batch with its padded steps set to zero, which Masking(0.0) reads as padding:
    gradients must stay finite through padding too."""
    x, mask = make_data()
    return np.where(mask[..., None], x, 0.0).astype("float32")


def check_gradients(subject: Subject, device: str) -> None:
    """One SGD step on a padded batch moves every attention weight and leaves them finite.

    The scores pass through a sigmoid here: a bias that shifts all scores equally cancels in a
    plain softmax and rightly gets no gradient.
    """
    model = _tiny_model(subject, attention_activation="sigmoid")
    attention = [
        w for w in model.trainable_weights if "/scorer_" in w.path or "/pooling_" in w.path
    ]
    before = [numpy(w).copy() for w in attention]
    x = _padded_batch()
    y = np.random.RandomState(4).normal(size=(x.shape[0], 1)).astype("float32")
    model.train_on_batch(x, y)
    for weight, old in zip(attention, before, strict=True):
        new = numpy(weight)
        if not np.isfinite(new).all():
            raise CheckFailure(
                f"{subject.label}: weight {weight.path} is not finite after one training step"
            )
        if np.array_equal(new, old):
            raise CheckFailure(f"{subject.label}: weight {weight.path} got no gradient")


def check_training_lowers_loss(subject: Subject, device: str) -> None:
    """One training step on a tiny regression task (a padded batch) lowers its loss."""
    model = _tiny_model(subject)
    x = _padded_batch()
    y = np.random.RandomState(5).normal(size=(x.shape[0], 1)).astype("float32")
    before = float(model.evaluate(x, y, verbose=0))
    model.train_on_batch(x, y)
    after = float(model.evaluate(x, y, verbose=0))
    if not (np.isfinite(after) and after < before):
        raise CheckFailure(
            f"{subject.label}: one training step took the loss from {before:.6g} to {after:.6g}"
        )


def check_device_agreement(subject: Subject, device: str) -> None:
    """CPU and GPU agree: the GPU's error against float64 is at most 5x the CPU's (floor 1e-5),
    non-finite values sit at the same places, and a fully masked sample that is exactly 0 on
    the CPU is exactly 0 on the GPU."""
    if device != "gpu":
        raise SkipCheck("compares the GPU with the CPU; runs in the gpu case")
    with on_device("gpu"):
        gpu = build(subject)
    with on_device("cpu"):
        cpu = build(subject)
        copy_weights(gpu, cpu)
        with policy(wide_policy()):
            wide = build(subject)
        copy_weights(gpu, wide)
        x, mask = make_data()
        # Fully masked rows are where kernels and devices have disagreed (NaN, a uniform row).
        mask[2] = False
        reference = numpy(wide(x.astype(wide_policy()), mask=mask))
        on_cpu = numpy(cpu(x, mask=mask))
    with on_device("gpu"):
        on_gpu = numpy(gpu(x, mask=mask))
    if not np.array_equal(np.isfinite(on_cpu), np.isfinite(on_gpu)):
        raise CheckFailure(f"{subject.label}: NaN or inf at different places on CPU and GPU")
    if (on_cpu[2] == 0).all() and (on_gpu[2] != 0).any():
        raise CheckFailure(
            f"{subject.label}: a fully masked sample is 0 on the CPU but up to "
            f"{np.abs(on_gpu[2]).max():.3g} on the GPU"
        )
    cpu_error = np.abs(on_cpu - reference).max()
    gpu_error = np.abs(on_gpu - reference).max()
    if not np.isfinite(on_gpu).all() or gpu_error > 5 * max(cpu_error, 1e-5):
        raise CheckFailure(
            f"{subject.label}: GPU error {gpu_error:.3g} vs CPU error "
            f"{cpu_error:.3g} against float64 (limit 5x, floor 1e-5)"
        )
