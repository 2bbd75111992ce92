"""Checks on a component's numbers against a wider computation of the same component: at the
magnitudes real models feed it, under the 16-bit policies, and its gradients against central
finite differences.

The reference is the component's own layer in float64 where Keras computes float64 (TensorFlow,
JAX with ``jax_enable_x64``), else in float32, which is far inside the 16-bit tolerances; the
float32 checks then test finiteness and the path, not the scorer's own rounding.
"""

from __future__ import annotations

import numpy as np

from attnkit.backend import has_float64, value_and_grads
from attnkit.conformance._harness import (
    BATCH,
    FEATURES,
    STEPS,
    CheckFailure,
    Subject,
    copy_weights,
    make_data,
    numpy,
    policy,
    wide_policy,
)
from attnkit.conformance._runs import realistic
from attnkit.conformance.checks_layer import build

__all__ = [
    "check_gradients_match_finite_differences",
    "check_mixed_bfloat16",
    "check_mixed_float16",
    "check_realistic_magnitudes",
]

#: (rtol, atol) of each policy against the wide reference.
TOLERANCE = {
    "float32": (1e-5, 1e-5),
    "mixed_float16": (1e-3, 5e-3),
    "mixed_bfloat16": (1.6e-2, 5e-2),
}


def _cases(subject: Subject) -> list[tuple[str, np.ndarray, np.ndarray, bool]]:
    """(what, x, mask, realistic): the suite's small padded batch (a sample fully padded), and
    the realistic magnitudes over 64 features (unit-normal, three times that, about an
    offset)."""
    x, mask = make_data()
    mask[0] = False  # a fully masked sample must stay zeros in 16 bits too
    cases = [("inputs in [-1.5, 1.5]", x, mask, False)]
    if not subject.fixed_length:
        for kind in ("unit", "wide", "offset"):
            wide = realistic(kind, STEPS, seed=2)
            cases.append((f"{kind} inputs over {wide.shape[-1]} features", wide, mask, True))
    return cases


def _against_wide(subject: Subject, policy_name: str) -> None:
    rtol, atol = TOLERANCE[policy_name]
    for what, x, mask, scaled in _cases(subject):
        features = x.shape[-1]
        reference = build(subject, features=features)
        with policy(wide_policy()):
            wide = build(subject, features=features)
        with policy(policy_name):
            narrow = build(subject, features=features)
        copy_weights(reference, wide)
        copy_weights(reference, narrow)
        x = numpy(_representable(x, narrow.compute_dtype))  # both see the same inputs
        expected = numpy(wide(x.astype(wide_policy()), mask=mask))
        got = numpy(narrow(x, mask=mask)).astype("float64")
        where = f"under {policy_name}, for {what}"
        if not np.isfinite(got).all():
            raise CheckFailure(f"{subject.label}: non-finite outputs {where}")
        if (got[0] != 0).any():
            raise CheckFailure(f"{subject.label}: a fully masked sample is not zero {where}")
        # Rounding large scores costs their magnitude times the dtype's epsilon, which the
        # softmax passes on: at realistic magnitudes the tolerance scales with the largest.
        scale = max(1.0, _score_scale(wide, x)) if scaled else 1.0
        error = np.abs(got - expected) - (atol + rtol * scale * np.abs(expected))
        if (error > 0).any():
            raise CheckFailure(
                f"{subject.label}: {where} the output differs from the {wide_policy()} "
                f"reference by up to {np.abs(got - expected).max():.3g} (rtol {rtol} x "
                f"{scale:.3g}, the largest score; atol {atol})"
            )


def _representable(x, dtype: str):
    from keras import ops

    return ops.cast(ops.cast(x, dtype), "float32")


def _score_scale(layer, x) -> float:
    """The largest |score| the layer's scorer gives these inputs (queries against keys)."""
    from keras import ops

    resolved = layer.resolved
    query = ops.convert_to_tensor(x.astype(layer.compute_dtype))
    prepared = resolved.pooling.prepare(layer._pooling_params, query, query, None)
    try:
        scores = resolved.scorer.score(layer._scorer_params, prepared.query, prepared.key)
    except Exception:  # a scorer that cannot score these as pairs (positional): no scaling
        return 1.0
    return float(np.nanmax(np.abs(numpy(scores)), initial=0.0))


def check_realistic_magnitudes(subject: Subject, device: str) -> None:
    """At the magnitudes real models feed a layer (64 features, unit-normal, three times that,
    about a common offset of 30): finite, zeros stay zeros, within float32's tolerance of the
    wide reference."""
    _against_wide(subject, "float32")


def check_mixed_float16(subject: Subject, device: str) -> None:
    """Under mixed_float16, at the suite's and at realistic magnitudes: finite, zeros stay
    zeros, within fp16 tolerance of the wide reference."""
    _against_wide(subject, "mixed_float16")


def check_mixed_bfloat16(subject: Subject, device: str) -> None:
    """Under mixed_bfloat16, at the suite's and at realistic magnitudes: finite, zeros stay
    zeros, within bf16 tolerance of the wide reference."""
    _against_wide(subject, "mixed_bfloat16")


def check_gradients_match_finite_differences(subject: Subject, device: str) -> None:
    """The gradients with respect to the query, the key, the value and every weight match
    central finite differences along random unit directions: in float64 (step 1e-5, rtol 1e-5)
    where Keras computes float64, else in float32 (step 1e-2, rtol 3e-2). Weightless
    components (masks, ``dot``) are held to their input gradients."""
    dtype = "float64" if has_float64() else "float32"
    step, rtol = (1e-5, 1e-5) if dtype == "float64" else (1e-2, 3e-2)
    with policy(dtype):
        layer = build(subject)
    rng = np.random.default_rng(11)
    x, mask = make_data()
    if subject.fixed_length:
        names, inputs, masks = ["the input"], [x.astype(dtype)], mask
    else:
        names = ["the query", "the value", "the key"]
        inputs = [x.astype(dtype)] + [
            rng.uniform(-1.5, 1.5, (BATCH, STEPS, FEATURES)).astype(dtype) for _ in range(2)
        ]
        masks = [mask, mask]
    listed = len(inputs) > 1
    out = numpy(layer(inputs if listed else inputs[0], mask=masks))
    coefficients = rng.normal(size=out.shape).astype(dtype)

    def loss(*ts):
        result = layer(list(ts) if listed else ts[0], mask=masks)
        from keras import ops

        return ops.sum(result * ops.convert_to_tensor(coefficients)), []

    _, g_in, g_w = value_and_grads(loss, inputs, layer.trainable_weights)
    weights = layer.trainable_weights
    names += [f"weight {w.path.rsplit('/', 1)[-1]}" for w in weights]
    for i, (name, grad) in enumerate(zip(names, [*g_in, *g_w], strict=True)):
        base = inputs[i] if i < len(inputs) else numpy(weights[i - len(inputs)])
        # A unit direction: the step then moves the point by `step` whatever the tensor's
        # size, so the differences' truncation error does not grow with it.
        direction = rng.normal(size=np.shape(base))
        direction = (direction / np.linalg.norm(direction)).astype(dtype)
        analytic = float(np.sum((0.0 if grad is None else grad) * direction))
        numeric = _central_difference(layer, inputs, masks, coefficients, i, direction, step)
        scale = max(abs(analytic), abs(numeric), 1e-3 if dtype == "float64" else 1e-2)
        if abs(analytic - numeric) > rtol * scale:
            raise CheckFailure(
                f"{subject.label}: along a random direction, the gradient of {name} gives "
                f"{analytic:.6g} but central finite differences give {numeric:.6g} "
                f"({dtype}, step {step})"
            )


def _central_difference(layer, inputs, masks, coefficients, index, direction, step) -> float:
    """(L(+step) - L(-step)) / (2 step) along ``direction`` of input or weight ``index``."""
    values = []
    for sign in (1.0, -1.0):
        moved = [t.copy() for t in inputs]
        weights = layer.trainable_weights
        saved = None
        if index < len(inputs):
            moved[index] = moved[index] + sign * step * direction
        else:
            weight = weights[index - len(inputs)]
            saved = numpy(weight)
            weight.assign((saved + sign * step * direction).astype(saved.dtype))
        out = numpy(layer(moved if len(moved) > 1 else moved[0], mask=masks))
        if saved is not None:
            weights[index - len(inputs)].assign(saved)
        values.append(float(np.sum(out.astype("float64") * coefficients)))
    return (values[0] - values[1]) / (2 * step)
