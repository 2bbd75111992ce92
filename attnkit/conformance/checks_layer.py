"""Checks on a component inside an AttentionLayer: weights, masks, causality, windows,
padding, serialization, XLA, mixed precision, training, and CPU-vs-GPU agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from attnkit.components import Mask
from attnkit.conformance._harness import (
    FEATURES,
    STEPS,
    CheckFailure,
    SkipCheck,
    Subject,
    copy_weights,
    layer_for,
    make_data,
    numpy,
    on_device,
    policy,
)
from attnkit.errors import UnknownComponentError
from attnkit.resolution import Resolved

__all__ = [
    "check_config_round_trip",
    "check_device_agreement",
    "check_fully_masked_row_zero",
    "check_gradients",
    "check_jit_equals_eager",
    "check_masked_keys_zero",
    "check_mixed_bfloat16",
    "check_mixed_float16",
    "check_no_future_leak",
    "check_padding_invariance",
    "check_plans_agree",
    "check_save_load_fresh_process",
    "check_symbolic_length",
    "check_training_lowers_loss",
    "check_weights_only_in_build",
    "check_weights_sum_to_one",
    "check_window_respected",
]


def _build(subject: Subject, resolved: Resolved | None = None, **options):
    """A layer on the dense plan unless asked: the checks judge what the predicates say;
    check_plans_agree then holds every other plan to the dense one."""
    options.setdefault("plan", "dense")
    steps = STEPS if subject.fixed_length else None
    return layer_for(resolved or subject.base, steps=steps, **options)


def _attend(layer, x, mask):
    attended = layer.attend(x, mask=mask)
    allowed = attended.allowed
    weights = numpy(attended.weights)
    allowed = np.ones(weights.shape, bool) if allowed is None else numpy(allowed)
    return numpy(attended.output), np.broadcast_to(allowed, weights.shape), weights


def check_weights_sum_to_one(subject: Subject, device: str) -> None:
    """Every query that sees a key has weights summing to 1."""
    x, mask = make_data()
    _, allowed, weights = _attend(_build(subject), x, mask)
    rows = allowed.any(-1)
    sums = weights.sum(-1)
    worst = np.abs(np.where(rows, sums, 1.0) - 1.0).max()
    if not np.isfinite(sums).all() or worst > 1e-5:
        raise CheckFailure(f"{subject.label}: weight rows sum to 1 +- {worst:.3g} (limit 1e-5)")


def _visible(resolved: Resolved, mask: np.ndarray) -> np.ndarray | None:
    """Which keys each query may see, worked out here from the mask predicates and the padding
    (not taken from the layer): (B, Tq', Tk), or None where queries are not time steps."""
    from keras import ops

    pooling = resolved.pooling
    steps = mask.shape[1]
    if not pooling.accepts_masks:
        return None
    if pooling.many_to_one:  # the contract: one query, at the last valid step
        last = np.where(mask, np.arange(steps), -1).max(axis=1, keepdims=True)
        positions, query_valid = np.maximum(last, 0), last >= 0
    else:
        positions = np.broadcast_to(np.arange(steps), mask.shape)
        query_valid = mask
    visible = mask[:, None, :] & query_valid[:, :, None]
    q_idx = ops.convert_to_tensor(positions[:, :, None].astype("int32"))
    k_idx = ops.convert_to_tensor(np.arange(steps, dtype="int32")[None, None, :])
    for structural in resolved.masks:
        visible = visible & numpy(structural.allowed(q_idx, k_idx)).astype(bool)
    return visible


def check_masked_keys_zero(subject: Subject, device: str) -> None:
    """Padded keys and keys a mask forbids get exactly zero weight, in the weights the layer
    uses and in the weights it returns (``return_attention=True``)."""
    x, mask = make_data()
    layer = _build(subject, return_attention=True)
    attended = layer.attend(x, mask=mask)
    weights, reported = numpy(attended.weights), numpy(attended.reported)
    visible = _visible(subject.base, mask)
    if visible is None:  # queries are features (gate): only the padded keys are known
        visible = np.broadcast_to(mask[:, None, :], weights.shape)
    hidden = ~np.broadcast_to(visible, weights.shape)
    if (weights[hidden] != 0).any():
        raise CheckFailure(
            f"{subject.label}: {(weights[hidden] != 0).sum()} masked or padded "
            f"keys have nonzero weight (up to {np.abs(weights[hidden]).max():.3g})"
        )
    if reported.shape == weights.shape:
        shown = reported[hidden]
    elif reported.shape == weights.shape[:1] + weights.shape[2:]:  # many-to-one: (B, Tk)
        shown = reported[hidden[:, 0]]
    else:
        return  # the pooling reports another layout (gate: per feature over time)
    if (shown != 0).any():
        raise CheckFailure(
            f"{subject.label}: the weights returned by return_attention put up "
            f"to {np.abs(shown).max():.3g} on masked or padded keys"
        )


def check_fully_masked_row_zero(subject: Subject, device: str) -> None:
    """A sample with every key padded gets zero weights and a zero output, never NaN."""
    x, mask = make_data()
    mask[0] = False
    output, _, weights = _attend(_build(subject), x, mask)
    if not (np.isfinite(output).all() and np.isfinite(weights).all()):
        raise CheckFailure(
            f"{subject.label}: non-finite output or weights with a fully masked sample"
        )
    if (weights[0] != 0).any() or (output[0] != 0).any():
        raise CheckFailure(
            f"{subject.label}: a fully masked sample gives weights up to "
            f"{np.abs(weights[0]).max():.3g} and output up to "
            f"{np.abs(output[0]).max():.3g}, expected exact zeros"
        )


def _per_step(subject: Subject) -> None:
    pooling = subject.base.pooling
    if pooling.many_to_one:
        raise SkipCheck(f"pooling '{pooling.name}' has one output, not one per step")


def check_no_future_leak(subject: Subject, device: str) -> None:
    """Under a causal mask, changing future steps leaves past outputs unchanged, to the bit."""
    component = subject.component
    if isinstance(component, Mask) and component.reach()[1] == 0:
        resolved = subject.base  # the mask itself claims to see no future
    elif subject.causal is not None:
        resolved = subject.causal
    else:
        raise SkipCheck(f"'{subject.label}' is not used under a causal mask")
    _per_step(subject)
    layer = _build(subject, resolved)
    x, _ = make_data(pad=False)
    before = numpy(layer(x))
    rng = np.random.RandomState(1)
    for t in range(STEPS - 1):
        changed = x.copy()
        changed[:, t + 1 :] = rng.uniform(-3, 3, changed[:, t + 1 :].shape)
        after = numpy(layer(changed))
        if not np.array_equal(after[:, : t + 1], before[:, : t + 1]):
            raise CheckFailure(
                f"{subject.label} in '{resolved}': changing steps after {t} changed the output "
                f"at steps <= {t} by up to "
                f"{np.abs(after[:, : t + 1] - before[:, : t + 1]).max():.3g}"
            )


def check_window_respected(subject: Subject, device: str) -> None:
    """Under a bounded mask, changing steps outside a query's window leaves its output unchanged.

    A many-to-one pooling asks with one query at the last valid step (the contract of
    ``Pooling.prepare``), so its output may depend only on that step's window.
    """
    component = subject.component
    if isinstance(component, Mask):
        back, ahead = component.reach()
        if back is None or ahead is None:
            raise SkipCheck(f"'{subject.label}' declares no bounded window")
        resolved = subject.base
    elif subject.local is not None:
        resolved, (back, ahead) = subject.local, (1, 1)
    else:
        raise SkipCheck(f"'{subject.label}' is not used under a local window")
    layer = _build(subject, resolved)
    x, _ = make_data(pad=False)
    before = numpy(layer(x))
    rng = np.random.RandomState(2)
    positions = [STEPS - 1] if subject.base.pooling.many_to_one else range(STEPS)
    for i in positions:
        outside = [j for j in range(STEPS) if j < i - back or j > i + ahead]
        if not outside:
            continue
        changed = x.copy()
        changed[:, outside] = rng.uniform(-3, 3, changed[:, outside].shape)
        after = numpy(layer(changed))
        same = after if subject.base.pooling.many_to_one else after[:, i]
        then = before if subject.base.pooling.many_to_one else before[:, i]
        if not np.array_equal(same, then):
            raise CheckFailure(
                f"{subject.label} in '{resolved}': the output for query {i} changed when only "
                f"steps outside its window [{i - back}, {i + ahead}] changed"
            )


def check_padding_invariance(subject: Subject, device: str) -> None:
    """Padding a batch longer (with garbage in the padding) leaves the valid outputs unchanged."""
    if subject.fixed_length:
        raise SkipCheck(f"'{subject.label}' needs a fixed number of steps")
    layer = _build(subject)
    x, mask = make_data()
    rng = np.random.RandomState(3)
    longer = np.concatenate([x, rng.uniform(-9, 9, (x.shape[0], 3, FEATURES))], 1)
    longer_mask = np.concatenate([mask, np.zeros((x.shape[0], 3), bool)], 1)
    short = numpy(layer(x, mask=mask))
    long = numpy(layer(longer.astype("float32"), mask=longer_mask))
    if not subject.base.pooling.many_to_one:
        short, long = short[mask], long[:, :STEPS][mask]
    if not np.allclose(long, short, rtol=1e-6, atol=1e-6):
        raise CheckFailure(
            f"{subject.label}: padding 3 more steps changed valid outputs by up to "
            f"{np.abs(long - short).max():.3g}"
        )


def check_plans_agree(subject: Subject, device: str) -> None:
    """The banded and chunked execution plans give the dense plan's outputs (atol 1e-5).

    The banded plan only looks inside the window the masks declare with ``reach()``, so a
    mask whose predicate allows more than it declares fails here.
    """
    from attnkit import plans

    tried = 0
    for resolved in (subject.base, subject.causal, subject.local):
        if resolved is None or resolved.pooling.many_to_one or not resolved.pooling.uses_context:
            continue
        reference = _build(subject, resolved)
        x, mask = make_data(steps=STEPS)
        expected = numpy(reference(x, mask=mask))
        for plan in ("banded", "chunked"):
            layer = _build(subject, resolved, plan=plan)
            copy_weights(reference, layer)
            back, ahead = plans.combined_reach(resolved.masks)
            if plan == "banded" and (back is None or ahead is None):
                continue
            tried += 1
            saved = plans.CHUNK_TARGET
            plans.CHUNK_TARGET = 1  # several small blocks even at this length
            try:
                got = numpy(layer(x, mask=mask))
            finally:
                plans.CHUNK_TARGET = saved
            if not np.allclose(got, expected, rtol=1e-5, atol=1e-5):
                raise CheckFailure(
                    f"{subject.label} in '{resolved}': the {plan} plan differs from the dense "
                    f"plan by up to {np.abs(got - expected).max():.3g}"
                )
    if not tried:
        raise SkipCheck(f"'{subject.label}' runs on the dense plan only")


def check_symbolic_length(subject: Subject, device: str) -> None:
    """A model built on ``keras.Input((None, D))`` runs on sequences of several lengths."""
    import keras

    if subject.fixed_length:
        raise SkipCheck(f"'{subject.label}' needs a fixed number of steps")
    inputs = keras.Input((None, FEATURES))
    try:
        model = keras.Model(inputs, _build(subject)(inputs))
        outputs = [model.predict(make_data(steps=steps)[0], verbose=0) for steps in (3, 11)]
    except Exception as error:
        raise CheckFailure(
            f"{subject.label}: fails with a symbolic length (Input((None, "
            f"{FEATURES}))): {type(error).__name__}: {error}"
        ) from error
    for steps, output in zip((3, 11), outputs, strict=True):
        if not np.isfinite(output).all():
            raise CheckFailure(f"{subject.label}: non-finite output for {steps} steps")


def check_weights_only_in_build(subject: Subject, device: str) -> None:
    """The layer's weights all exist after build(); calls add none."""
    layer = _build(subject)
    names = [w.path for w in layer.weights]
    x, mask = make_data()
    layer(x, mask=mask)
    layer(x, mask=mask)
    if [w.path for w in layer.weights] != names:
        raise CheckFailure(
            f"{subject.label}: weights after build {names}, after calls "
            f"{[w.path for w in layer.weights]}"
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
    model = keras.Model(inputs, _build(subject)(inputs))
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

    layer = _build(subject)
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


def _wide() -> str:
    """The reference policy: float64, or float32 where the backend has no float64 (JAX without
    jax_enable_x64 truncates it, with a warning); both are far inside the 16-bit tolerances."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


def _against_float64(subject: Subject, policy_name: str, rtol: float, atol: float) -> None:
    reference = _build(subject)
    with policy(_wide()):
        wide = _build(subject)
    with policy(policy_name):
        narrow = _build(subject)
    copy_weights(reference, wide)
    copy_weights(reference, narrow)
    x, mask = make_data()
    mask[0] = False  # a fully masked sample must stay zeros in 16 bits too
    expected = numpy(wide(x.astype(_wide()), mask=mask))
    got = numpy(narrow(x, mask=mask)).astype("float64")
    if not np.isfinite(got).all():
        raise CheckFailure(f"{subject.label}: non-finite outputs under {policy_name}")
    if (got[0] != 0).any():
        raise CheckFailure(
            f"{subject.label}: a fully masked sample is not zero under {policy_name}"
        )
    error = np.abs(got - expected) - (atol + rtol * np.abs(expected))
    if (error > 0).any():
        raise CheckFailure(
            f"{subject.label}: under {policy_name} the output differs from the "
            f"float64 reference by up to {np.abs(got - expected).max():.3g} "
            f"(rtol {rtol}, atol {atol})"
        )


def check_mixed_float16(subject: Subject, device: str) -> None:
    """Under mixed_float16: finite, zeros stay zeros, within fp16 tolerance of float64."""
    _against_float64(subject, "mixed_float16", 1e-3, 5e-3)


def check_mixed_bfloat16(subject: Subject, device: str) -> None:
    """Under mixed_bfloat16: finite, zeros stay zeros, within bf16 tolerance of float64."""
    _against_float64(subject, "mixed_bfloat16", 1.6e-2, 5e-2)


def _tiny_model(subject: Subject, **options):
    import keras

    steps = STEPS if subject.fixed_length else None
    inputs = keras.Input((steps, FEATURES))
    masked = keras.layers.Masking(0.0)(inputs)  # all-zero steps are padding
    hidden = keras.layers.Dense(FEATURES, name="project")(masked)
    attended = _build(subject, **options)(hidden)
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
        gpu = _build(subject)
    with on_device("cpu"):
        cpu = _build(subject)
        copy_weights(gpu, cpu)
        with policy(_wide()):
            wide = _build(subject)
        copy_weights(gpu, wide)
        x, mask = make_data()
        # Fully masked rows are where kernels and devices have disagreed (NaN, a uniform row).
        mask[2] = False
        reference = numpy(wide(x.astype(_wide()), mask=mask))
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
