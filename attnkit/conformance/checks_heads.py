"""The check that a component works under heads: a multi-head layer is the spec run per head.

With ``num_heads=H`` the layer projects query, key and value into heads and runs the spec per
head, with that head's slice of every weight the component made, then projects the heads back
(:mod:`attnkit.heads`). This check builds that reference from the single-head layer, which the
other checks have already judged: for each head it projects the inputs with NumPy, runs a
single-head layer holding the head's weights, and sums the heads through the output projection.
A component that is right alone but wrong under heads (a pooling whose ``output_size()`` does
not say what ``pool()`` returns, a component that reads a weight's shape as its own, a mask
that does not broadcast over a batch of B x H rows) fails here.
"""

from __future__ import annotations

import numpy as np

from attnkit.conformance._harness import (
    CheckFailure,
    Subject,
    copy_weights,
    make_data,
    numpy,
)
from attnkit.conformance._runs import plans_for, small_blocks
from attnkit.conformance.checks_layer import build
from attnkit.errors import AttnkitError, ComponentError

__all__ = ["check_heads"]

#: (query heads, key and value heads): one head, three, and four in two groups sharing a key
#: and value head each (grouped-query).
LAYOUTS = ((1, 1), (3, 3), (4, 2))
#: Each head's key and value sizes; they differ, so a value size taken for a key size shows.
HEAD_DIM, VALUE_DIM = 3, 2


def check_heads(subject: Subject, device: str) -> None:
    """With H = 1, 3, and 4 heads over 2 key and value heads (grouped-query), the layer's
    output and weights (B, H, Tq, Tk) are the spec's per head, within 1e-5; every plan that
    applies gives the same output. A spec with nothing to project per head (a pooling that
    weighs the input itself, a scorer of positions) is refused at construction with a
    ComponentError."""
    x, mask = make_data()
    for resolved in (subject.base, subject.causal):
        if resolved is None:
            continue
        if not resolved.pooling.uses_context or resolved.scorer.positional:
            _refused(subject, resolved)
            continue
        for heads, kv_heads in LAYOUTS:
            options = {
                "num_heads": heads,
                "key_dim": HEAD_DIM,
                "value_dim": VALUE_DIM,
                "num_key_value_heads": kv_heads,
            }
            layer = _built(subject, resolved, return_attention=True, **options)
            _randomize_biases(layer)
            label = f"{subject.label} in '{resolved}' with {heads} heads over {kv_heads}"
            output, weights = (numpy(t) for t in layer(x, mask=mask))
            expected, expected_weights = _per_head(subject, resolved, layer, x, mask)
            _compare(label, "the output", output, expected)
            _compare(label, "the weights", weights, expected_weights)
            if (heads, kv_heads) == LAYOUTS[-1]:
                _plans_agree(subject, resolved, layer, options, x, mask, expected, label)


def _built(subject: Subject, resolved, **options):
    try:
        return build(subject, resolved, **options)
    except AttnkitError as error:
        raise CheckFailure(
            f"{subject.label} in '{resolved}' could not take heads: {error}"
        ) from error


def _refused(subject: Subject, resolved) -> None:
    try:
        build(subject, resolved, num_heads=2, key_dim=HEAD_DIM)
    except ComponentError:
        return
    raise CheckFailure(
        f"{subject.label} in '{resolved}': a spec with nothing to project per head was not "
        "refused with heads"
    )


def _compare(label: str, what: str, got, want) -> None:
    if np.shape(got) != np.shape(want):
        raise CheckFailure(f"{label}: {what} has shape {np.shape(got)}, expected {np.shape(want)}")
    if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        raise CheckFailure(
            f"{label}: {what} differs from the spec run per head by up to "
            f"{np.abs(got - want).max():.3g}"
        )


def _randomize_biases(layer) -> None:
    """The projections' biases to values of about 0.3 (they start at zero, and would then show
    nothing)."""
    rng = np.random.default_rng(7)
    for weight in layer.weights:
        if weight.path.endswith("_bias") and weight.path.rsplit("/", 1)[-1] in _PROJECTION_BIASES:
            weight.assign((0.3 * rng.standard_normal(weight.shape)).astype(weight.dtype))


_PROJECTION_BIASES = {f"{role}_bias" for role in ("query", "key", "value", "output")}


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.path.rsplit("/", 1)[-1]: numpy(w).astype("float64") for w in layer.weights}


def _project(x, weights, role: str):
    out = np.einsum("btd,dhk->bthk", x.astype("float64"), weights[f"{role}_kernel"])
    return out + weights.get(f"{role}_bias", 0.0)


def _per_head(subject: Subject, resolved, layer, x, mask):
    """(output, weights (B, H, ...)) of the spec run per head by single-head layers."""
    weights, heads = _weights(layer), layer.heads
    k, v = (_project(x, weights, role) for role in ("key", "value"))
    # A pooling that asks with its own query reads only the query's shape and padding.
    q = _project(x, weights, "query") if "query_kernel" in weights else k
    per_head = layer._built.per_head  # the weights holding a head axis
    outputs, attention = [], []
    single = _single_head(resolved, return_attention=True, plan="dense")
    for h in range(heads.num_heads):
        g = h // heads.group
        query = q[:, :, h] if "query_kernel" in weights else k[:, :, g]
        inputs = [t.astype("float32") for t in (query, v[:, :, g], k[:, :, g])]
        if not single.built:
            single.build([t.shape for t in inputs])
        for weight in single.weights:  # one layer, holding each head's weights in turn
            name = weight.path.rsplit("/", 1)[-1]
            value = weights[name][h] if name in per_head else weights[name]
            weight.assign(value.astype(weight.dtype))
        output, reported = single(inputs, mask=[mask, mask])
        outputs.append(numpy(output).astype("float64"))
        attention.append(numpy(reported))
    stacked = np.stack(outputs, axis=1)  # (B, H, Tq, p) or (B, H, p)
    equation = "bhtp,hpo->bto" if stacked.ndim == 4 else "bhp,hpo->bo"
    out = np.einsum(equation, stacked, weights["output_kernel"])
    out = out + weights.get("output_bias", 0.0)
    if resolved.pooling.aligned:
        out = np.where(mask[:, :, None], out, 0.0)
    return out, np.stack(attention, axis=1)


def _single_head(resolved, **options):
    from attnkit.layer import AttentionLayer

    return AttentionLayer(resolved, **options)


def _plans_agree(subject: Subject, resolved, layer, options, x, mask, expected, label) -> None:
    with small_blocks():
        for plan in plans_for(resolved)[1:]:
            planned = _built(subject, resolved, plan=plan, **options)
            copy_weights(layer, planned)
            _compare(label, f"the {plan} plan's output", numpy(planned(x, mask=mask)), expected)
