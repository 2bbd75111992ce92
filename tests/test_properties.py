"""Hypothesis properties of masking (docs/guarantees.md, N1 and M6): random boolean masks with
fully masked rows, and padding invariance under random lengths with garbage in the padding.

Shapes are fixed per property (B=3, D=4; T=5 or Tq=4, Tk=6) so each spec traces a handful of
shapes only (JAX compiles every op per shape); the masks, the data and the spec vary. Layers are
built once per spec (module cache). The example count comes from the profiles in conftest.py
(derandomised ``ci`` when CI is set).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from support import reference as R
from support.cases import randomize
from support.compare import numpy

import attnkit

B, D = 3, 4
SCORERS = ["dot", "general(use_bias=true)", "additive(units=4)", "bahdanau(units=4)", "gaussian"]
SCORERS += ["concat"]
MASKS = ["", "+causal", "+local3", "+causal2", "+local4+causal"]
POOLINGS = ["", "+last", "+last(units=3)", "+weighted"]
_LAYERS: dict = {}


def layer_for(spec: str, return_attention: bool = True) -> attnkit.AttentionLayer:
    """One layer per spec, random weights; ``return_attention`` is switched per call."""
    if spec not in _LAYERS:
        layer = attnkit.AttentionLayer(spec, return_attention=True)
        layer.build((None, None, D))
        randomize(layer, seed=len(_LAYERS))
        _LAYERS[spec] = layer
    layer = _LAYERS[spec]
    layer.return_attention = return_attention
    return layer


specs = st.builds(
    lambda s, m, p: s + m + p,
    st.sampled_from(SCORERS),
    st.sampled_from(MASKS),
    st.sampled_from(POOLINGS),
)


@st.composite
def masked_inputs(draw):
    """(inputs, mask, empty sample): self-attention (T=5) or [q, v] (Tq=4, Tk=6); random
    boolean masks, one sample with every step (or every key) masked."""
    cross = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    empty = draw(st.integers(0, B - 1))
    if cross:
        q = rng.uniform(-2, 2, (B, 4, D)).astype("float32")
        v = rng.uniform(-2, 2, (B, 6, D)).astype("float32")
        q_mask = np.array(draw(st.lists(st.booleans(), min_size=B * 4, max_size=B * 4)))
        v_mask = np.array(draw(st.lists(st.booleans(), min_size=B * 6, max_size=B * 6)))
        q_mask, v_mask = q_mask.reshape(B, 4), v_mask.reshape(B, 6)
        v_mask[empty] = False
        return [q, v], [q_mask, v_mask], empty
    x = rng.uniform(-2, 2, (B, 5, D)).astype("float32")
    mask = np.array(draw(st.lists(st.booleans(), min_size=B * 5, max_size=B * 5))).reshape(B, 5)
    mask[empty] = False
    return x, mask, empty


@given(spec=specs, case=masked_inputs())
def test_n1_random_masks_with_fully_masked_rows(spec, case):
    """Weights finite; masked entries exactly 0; rows that see a key sum to 1; rows that see
    none are exactly 0 in weights and output; the output is the same with the weights returned
    or not; and what the fully masked sample holds changes nothing."""
    inputs, mask, empty = case
    layer = layer_for(spec)
    out, weights = (numpy(t) for t in layer(inputs, mask=mask))
    _, _, allowed = R.layer_reference(layer, inputs, mask, return_allowed=True)
    allowed = np.broadcast_to(allowed, weights.shape)
    visible = allowed.any(-1)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    assert (weights[~allowed] == 0).all(), "a masked key got weight"
    np.testing.assert_allclose(weights.sum(-1)[visible], 1.0, rtol=0, atol=1e-5)
    assert (weights[~visible] == 0).all() and (out[~visible] == 0).all()
    assert (out[empty] == 0).all()

    alone = numpy(layer_for(spec, return_attention=False)(inputs, mask=mask))
    np.testing.assert_allclose(alone, out, rtol=1e-5, atol=2e-6)
    assert (alone[~visible] == 0).all()

    # The fully masked sample filled with other values: the rest of the batch must not move.
    # (Dropping it would do too, but each new batch size is a new compilation on JAX; the
    # per-sample runs of test_reliability.py's N5 and D3 cases drop samples.)
    if isinstance(inputs, list):
        other = [t.copy() for t in inputs]
        other[0][empty], other[1][empty] = 1e4, -1e4
    else:
        other = inputs.copy()
        other[empty] = 1e4
    moved = numpy(layer_for(spec, return_attention=False)(other, mask=mask))
    np.testing.assert_array_equal(moved, alone)


GARBAGE = st.sampled_from([0.0, 1e4, -1e4, 1e30, np.inf, -np.inf, np.nan])


@given(
    spec=specs,
    lengths=st.lists(st.integers(0, 5), min_size=B, max_size=B),
    extra=st.sampled_from([1, 3, 8]),  # few shapes: JAX compiles each op per shape
    garbage=GARBAGE,
    seed=st.integers(0, 2**16),
)
def test_m6_padding_invariance_with_random_lengths(spec, lengths, extra, garbage, seed):
    """The same sequences padded to 5 steps and to 5 + extra steps, the padding filled with
    garbage (huge, infinite, NaN, or random): outputs of the valid steps (seq) or the pooled
    vectors agree within 1e-6; padded steps output exactly 0."""
    rng = np.random.default_rng(seed)
    layer = layer_for(spec, return_attention=False)
    x = rng.uniform(-2, 2, (B, 5 + extra, D)).astype("float32")
    mask = np.arange(5 + extra)[None, :] < np.array(lengths)[:, None]
    noise = rng.uniform(-3, 3, x.shape) if garbage == 0.0 else np.full(x.shape, garbage)
    long = np.where(mask[..., None], x, noise).astype("float32")
    short = np.where(mask[:, :5, None], x[:, :5], 0.0).astype("float32")
    out_long = numpy(layer(long, mask=mask))
    out_short = numpy(layer(short, mask=mask[:, :5]))
    assert np.isfinite(out_long).all()
    if layer.resolved.pooling.many_to_one:
        np.testing.assert_allclose(out_long, out_short, rtol=0, atol=1e-6)
        empty = np.array(lengths) == 0
        assert (out_long[empty] == 0).all()
    else:
        np.testing.assert_allclose(out_long[:, :5], out_short, rtol=0, atol=1e-6)
        assert (out_long[~mask] == 0).all()
