"""Checks on what a component does inside an AttentionLayer: weights that sum to one, masked
and padded keys at zero, no future leak, windows respected, padding invariance, symbolic
lengths, weights made in build()."""

from __future__ import annotations

import numpy as np

from attnkit.components import Mask
from attnkit.conformance._harness import (
    FEATURES,
    STEPS,
    CheckFailure,
    SkipCheck,
    Subject,
    layer_for,
    make_data,
    numpy,
    variables_made,
)
from attnkit.conformance._runs import LONG, runs, small_blocks
from attnkit.resolution import Resolved

__all__ = [
    "build",
    "check_fully_masked_row_zero",
    "check_masked_keys_zero",
    "check_no_future_leak",
    "check_padding_invariance",
    "check_symbolic_length",
    "check_weights_only_in_build",
    "check_weights_sum_to_one",
    "check_window_respected",
]


def build(subject: Subject, resolved: Resolved | None = None, features: int = FEATURES, **options):
    """A layer on the dense plan unless asked: the checks judge what the predicates say;
    check_plans_agree then holds every other plan to the dense one."""
    options.setdefault("plan", "dense")
    steps = STEPS if subject.fixed_length else None
    return layer_for(resolved or subject.base, steps=steps, features=features, **options)


def _attend(layer, x, mask):
    attended = layer.attend(x, mask=mask)
    allowed = attended.allowed
    weights = numpy(attended.weights)
    allowed = np.ones(weights.shape, bool) if allowed is None else numpy(allowed)
    return numpy(attended.output), np.broadcast_to(allowed, weights.shape), weights


def check_weights_sum_to_one(subject: Subject, device: str) -> None:
    """Every query that sees a key has weights summing to 1."""
    x, mask = make_data()
    _, allowed, weights = _attend(build(subject), x, mask)
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
    layer = build(subject, return_attention=True)
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
    output, _, weights = _attend(build(subject), x, mask)
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


def _steps(subject: Subject) -> int:
    return STEPS if subject.fixed_length else LONG


def check_no_future_leak(subject: Subject, device: str) -> None:
    """Under a causal mask, changing future steps leaves past outputs unchanged, to the bit, on
    every plan that applies (several chunked blocks), op by op and compiled."""
    component = subject.component
    if isinstance(component, Mask) and component.reach()[1] == 0:
        resolved = subject.base  # the mask itself claims to see no future
    elif subject.causal is not None:
        resolved = subject.causal
    else:
        raise SkipCheck(f"'{subject.label}' is not used under a causal mask")
    _per_step(subject)
    steps = _steps(subject)
    x, _ = make_data(steps=steps, pad=False)
    # Either side of the chunked plan's first block boundary (16), and both ends.
    cuts = sorted({0, 15, 16, steps - 2} & set(range(steps - 1)))
    rng = np.random.RandomState(1)
    changed = {}
    for t in cuts:
        changed[t] = x.copy()
        changed[t][:, t + 1 :] = rng.uniform(-3, 3, changed[t][:, t + 1 :].shape)
    with small_blocks():
        for run in runs(resolved, steps):
            before = run.call(x)
            for t in cuts:
                after = run.call(changed[t])
                if not np.array_equal(after[:, : t + 1], before[:, : t + 1]):
                    raise CheckFailure(
                        f"{subject.label} in '{resolved}' on {run.label}: changing steps after "
                        f"{t} changed the output at steps <= {t} by up to "
                        f"{np.abs(after[:, : t + 1] - before[:, : t + 1]).max():.3g}"
                    )


def check_window_respected(subject: Subject, device: str) -> None:
    """Under a bounded mask, changing steps outside a query's window leaves its output unchanged,
    to the bit, on every plan that applies, op by op and compiled.

    A many-to-one pooling's output may depend on the windows of every query it asks with: the
    positions its ``prepare`` returns (the last valid step for ``last``, every step for a
    pooling that averages them); only steps outside all of those windows are changed.
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
    steps = _steps(subject)
    x, _ = make_data(steps=steps, pad=False)
    if subject.base.pooling.many_to_one:
        asked = _asked_positions(resolved, x)
        cases = {f"queries {sorted(asked)}": asked}
    else:
        cases = {f"query {i}": {i} for i in sorted({0, 15, 16, steps - 1} & set(range(steps)))}
    rng = np.random.RandomState(2)
    changed = {}
    for name, positions in cases.items():
        seen = {j for i in positions for j in range(i - back, i + ahead + 1)}
        outside = [j for j in range(steps) if j not in seen]
        if outside:
            changed[name, min(positions), max(positions)] = moved = x.copy()
            moved[:, outside] = rng.uniform(-3, 3, moved[:, outside].shape)
    with small_blocks():
        for run in runs(resolved, steps):
            before = run.call(x)
            for (name, first, last), moved in changed.items():
                after = run.call(moved)
                one = slice(None) if subject.base.pooling.many_to_one else first
                where = "its window" if first == last else "their windows"
                if not np.array_equal(after[:, one], before[:, one]):
                    raise CheckFailure(
                        f"{subject.label} in '{resolved}' on {run.label}: the output for {name} "
                        f"changed when only steps outside {where} [{first - back}, "
                        f"{last + ahead}] changed"
                    )


def _asked_positions(resolved: Resolved, x: np.ndarray) -> set[int]:
    """The query positions a many-to-one pooling asks with on ``x``, from its ``prepare``."""
    layer = layer_for(resolved, x.shape[1])
    prepared = resolved.pooling.prepare(layer._built.pooling, x, x, None)
    return {int(p) for p in numpy(prepared.positions).ravel()}


def check_padding_invariance(subject: Subject, device: str) -> None:
    """Padding a batch longer (with garbage in the padding) leaves the valid outputs unchanged."""
    if subject.fixed_length:
        raise SkipCheck(f"'{subject.label}' needs a fixed number of steps")
    layer = build(subject)
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


def check_symbolic_length(subject: Subject, device: str) -> None:
    """A model built on ``keras.Input((None, D))`` runs on sequences of several lengths."""
    import keras

    if subject.fixed_length:
        raise SkipCheck(f"'{subject.label}' needs a fixed number of steps")
    inputs = keras.Input((None, FEATURES))
    try:
        model = keras.Model(inputs, build(subject)(inputs))
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
    """The layer's weights all exist after build(); calls add none and make no variable."""
    layer = build(subject)
    names = [w.path for w in layer.weights]
    x, mask = make_data()
    with variables_made() as made:
        layer(x, mask=mask)
        layer(x, mask=mask)
    if [w.path for w in layer.weights] != names:
        raise CheckFailure(
            f"{subject.label}: weights after build {names}, after calls "
            f"{[w.path for w in layer.weights]}"
        )
    if made:
        raise CheckFailure(
            f"{subject.label}: calling the layer created keras.Variable {made[0]!r} "
            f"({len(made)} in two calls); a variable made outside build() is neither trained "
            "nor saved. Create every weight in build() with layer.add_weight(...)"
        )
