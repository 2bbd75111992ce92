"""The dilated mask: key by key on index grids, against local<w>, inside a layer, its parameters,
and discovery through the ``attnkit`` entry point of the installed distribution."""

from __future__ import annotations

import importlib.metadata
import os

import attrs
import numpy as np
import pytest
from attnkit_dilated import Dilated
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

import attnkit
from attnkit.masks import Local


def to_numpy(tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(tensor))


def grid(mask, tq: int, tk: int) -> np.ndarray:
    """mask.allowed on (Tq, 1) x (1, Tk) int32 index grids, as NumPy booleans (Tq, Tk)."""
    q_idx = ops.reshape(ops.arange(tq, dtype="int32"), (-1, 1))
    k_idx = ops.reshape(ops.arange(tk, dtype="int32"), (1, -1))
    return to_numpy(mask.allowed(q_idx, k_idx))


def reference(tq: int, tk: int, width: int, dilation: int) -> np.ndarray:
    """The definition, pair by pair, with Python's (floor) modulo."""
    lo, hi = -(width // 2) * dilation, ((width - 1) // 2) * dilation
    allowed = np.zeros((tq, tk), bool)
    for i in range(tq):
        for j in range(tk):
            allowed[i, j] = (j - i) % dilation == 0 and lo <= j - i <= hi
    return allowed


# -- key by key -----------------------------------------------------------------------------------
#: dilated5 with dilation 2 sees offsets -4, -2, 0, +2, +4. On T=11, counted by hand:
#:   i=0: 0 2 4        i=1: 1 3 5        i=2: 0 2 4 6      i=3: 1 3 5 7
#:   i=4: 0 2 4 6 8    i=5: 1 3 5 7 9    i=6: 2 4 6 8 10   i=7: 3 5 7 9
#:   i=8: 4 6 8 10     i=9: 5 7 9        i=10: 6 8 10
DILATED5_T11 = [3, 3, 4, 4, 5, 5, 5, 4, 4, 3, 3]
#: dilated4(dilation=3) sees offsets -6, -3, 0, +3 (even widths lean to the past). On T=8:
#:   i=0: 0 3   i=1: 1 4   i=2: 2 5   i=3: 0 3 6   i=4: 1 4 7   i=5: 2 5   i=6: 0 3 6   i=7: 1 4 7
DILATED4_3_T8 = [2, 2, 2, 3, 3, 2, 3, 3]


def test_dilated5_on_eleven_steps_key_by_key():
    allowed = grid(Dilated(5, dilation=2), 11, 11)
    assert allowed.dtype == np.bool_ and allowed.shape == (11, 11)
    assert allowed.sum(-1).tolist() == DILATED5_T11
    for i in range(11):
        seen = [j for j in range(11) if allowed[i, j]]
        assert seen == [j for j in (i - 4, i - 2, i, i + 2, i + 4) if 0 <= j < 11], i
    np.testing.assert_array_equal(allowed, reference(11, 11, 5, 2))


def test_dilated4_dilation3_on_eight_steps_key_by_key():
    allowed = grid(Dilated(4, dilation=3), 8, 8)
    assert allowed.sum(-1).tolist() == DILATED4_3_T8
    for i in range(8):
        seen = [j for j in range(8) if allowed[i, j]]
        assert seen == [j for j in (i - 6, i - 3, i, i + 3) if 0 <= j < 8], i


def test_every_row_sees_itself():
    for width in range(1, 7):
        for dilation in range(1, 5):
            assert np.diag(grid(Dilated(width, dilation=dilation), 9, 9)).all()


@settings(max_examples=60, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(
    width=st.integers(1, 9),
    dilation=st.integers(1, 6),
    tq=st.integers(1, 14),
    tk=st.integers(1, 14),
)
def test_matches_the_reference_on_any_grid(width, dilation, tq, tk):
    mask = Dilated(width, dilation=dilation)
    np.testing.assert_array_equal(grid(mask, tq, tk), reference(tq, tk, width, dilation))


@pytest.mark.parametrize("width", range(1, 9))
def test_dilation_one_is_local(width):
    dilated, local = Dilated(width, dilation=1), Local(width)
    assert dilated.reach() == local.reach()
    np.testing.assert_array_equal(grid(dilated, 12, 12), grid(local, 12, 12))
    np.testing.assert_array_equal(grid(dilated, 5, 9), grid(local, 5, 9))


@pytest.mark.parametrize("width", range(1, 8))
@pytest.mark.parametrize("dilation", range(1, 5))
def test_reach_is_exactly_the_extreme_offsets(width, dilation):
    mask = Dilated(width, dilation=dilation)
    back, ahead = mask.reach()
    assert (back, ahead) == (dilation * (width // 2), dilation * ((width - 1) // 2))
    size = 2 * (back + ahead) + 1
    allowed = grid(mask, size, size)
    offsets = [j - i for i, j in zip(*np.nonzero(allowed), strict=True)]
    assert (min(offsets), max(offsets)) == (-back, ahead)  # tight, not only an upper bound
    assert sorted(set(offsets)) == list(range(-back, ahead + 1, dilation))
    assert len(set(offsets)) == width


def test_keras_mod_is_numpy_floor_modulo_on_negative_ints():
    """keras.ops.mod follows NumPy (the result takes the divisor's sign): -3 % 2 == 1, not -1.
    The mask only asks "divisible or not", which either convention answers alike."""
    offsets = np.arange(-9, 10, dtype="int32")
    for dilation in (2, 3, 4):
        got = to_numpy(ops.mod(ops.convert_to_tensor(offsets), dilation))
        np.testing.assert_array_equal(got, np.mod(offsets, dilation))
        assert (got >= 0).all()
    assert int(to_numpy(ops.mod(ops.convert_to_tensor(np.int32(-3)), 2))) == 1


def test_flat_pairs_and_broadcast_grids_agree():
    mask = Dilated(5)
    qs, ks = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    flat = to_numpy(mask.allowed(qs.reshape(-1).astype("int32"), ks.reshape(-1).astype("int32")))
    np.testing.assert_array_equal(flat.reshape(10, 10), grid(mask, 10, 10))


# -- inside a layer -------------------------------------------------------------------------------
def test_layer_weights_follow_the_mask():
    """dot+dilated5 on T=11: weights are the softmax of q.k over exactly the allowed keys."""
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (2, 11, 4)).astype("float32")
    layer = attnkit.AttentionLayer("dot+dilated5", return_attention=True)
    _, weights = layer(x)
    weights = to_numpy(weights)
    allowed = reference(11, 11, 5, 2)
    assert (weights[:, ~allowed] == 0).all()
    assert ((weights > 0) == allowed[None]).all()
    assert (weights > 0).sum(-1).tolist() == [DILATED5_T11, DILATED5_T11]
    x64 = x.astype("float64")
    scores = np.where(allowed, x64 @ np.swapaxes(x64, -1, -2), -np.inf)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)


def test_layer_with_padding_and_causal():
    """dilated5+causal keeps offsets -4, -2, 0; padded keys (sample 1 from step 6) get zero."""
    rng = np.random.RandomState(1)
    x = rng.uniform(-1, 1, (2, 11, 4)).astype("float32")
    mask = np.ones((2, 11), bool)
    mask[1, 6:] = False
    layer = attnkit.AttentionLayer("causal+dilated5+dot", return_attention=True)
    assert layer.spec == "dot+causal+dilated5"
    output, weights = (to_numpy(t) for t in layer(x, mask=mask))
    visible = (weights > 0).sum(-1)
    assert visible[0].tolist() == [1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3]
    assert visible[1].tolist() == [1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 0]
    assert (output[1, 6:] == 0).all()


# -- parameters -----------------------------------------------------------------------------------
def test_tokens_and_shorthand():
    assert str(Dilated(5)) == "dilated5"
    assert str(Dilated(4, dilation=3)) == "dilated4(dilation=3)"
    assert [str(m) for m in Dilated.examples()] == ["dilated3", "dilated4(dilation=3)"]
    assert attnkit.resolve("dot+dilated5").masks == (Dilated(5, dilation=2),)
    assert attnkit.resolve("dot+dilated(width=5, dilation=2)").canonical == "dot+dilated5"
    assert attnkit.resolve("dot+dilated7(dilation=1)").canonical == "dot+dilated7(dilation=1)"
    assert all(f.metadata["doc"] for f in attrs.fields(Dilated))


@pytest.mark.parametrize(
    "kwargs", [{"width": 0}, {"width": -1}, {"width": 2.0}, {"width": True}, {"width": "3"}]
)
def test_bad_width_is_refused(kwargs):
    with pytest.raises(ValueError, match="width"):
        Dilated(**kwargs)


@pytest.mark.parametrize("dilation", [0, -2, 1.5, False, None, "2"])
def test_bad_dilation_is_refused(dilation):
    with pytest.raises(ValueError, match="dilation"):
        Dilated(3, dilation=dilation)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("dot+dilated", "needs 'width'"),
        ("dot+dilated0", "width"),
        ("dot+dilated3(dilation=0)", "dilation"),
        ("dot+dilated3(width=3)", "given twice"),
        ("dot+dilated3(stride=2)", "no parameter 'stride'"),
    ],
)
def test_bad_specs_are_spec_errors(spec, message):
    with pytest.raises(attnkit.SpecParameterError, match=message):
        attnkit.registry().resolve(spec)


# -- discovery ------------------------------------------------------------------------------------
def test_the_entry_point_is_discovered():
    """Resolving through the process-wide registry finds the installed distribution."""
    resolved = attnkit.registry().resolve("dilated5(dilation=2) + dot")
    assert resolved.masks == (Dilated(5),)
    assert type(resolved.masks[0]) is Dilated
    assert resolved.canonical == "dot+dilated5"
    version = importlib.metadata.version("attnkit-dilated")
    assert resolved.plugins == {"dilated": f"attnkit-dilated=={version}"}

    info = attnkit.registry().get("dilated")
    assert info.cls is Dilated
    assert info.kind == "mask"
    assert info.distribution == "attnkit-dilated"
    assert info.plugin == "dilated"
    assert info.version == version
    assert not info.builtin

    (plugin,) = [p for p in attnkit.registry().plugins() if p.distribution == "attnkit-dilated"]
    assert (plugin.entry_point, plugin.value) == ("dilated", "attnkit_dilated")
    assert plugin.status == "loaded" and plugin.components == ("dilated",)
