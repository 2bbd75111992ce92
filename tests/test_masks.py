"""Mask semantics, key by key, on small grids (guarantee M3).

``local<w>``: w keys, ``i - w//2 <= j <= i + (w-1)//2`` clipped at the edges (even widths lean
back); ``causal``: ``j <= i``; ``causal<w>``: ``i-w+1 <= j <= i``; several masks are ANDed.
Causal alignment is top-left, so on a Tq=4 x Tk=6 grid query i sees keys up to j = i.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support import reference as R

import attnkit
from attnkit.masks import Causal, Full, Local

#: mask spec -> the reference grid built by loops (tests/support/reference.py)
REFERENCE = {
    "full": lambda tq, tk: R.allowed_full(tq, tk),
    "local4": lambda tq, tk: R.allowed_local(tq, tk, 4),
    "local5": lambda tq, tk: R.allowed_local(tq, tk, 5),
    "causal": lambda tq, tk: R.allowed_causal(tq, tk),
    "causal3": lambda tq, tk: R.allowed_causal(tq, tk, 3),
    "local5+causal": lambda tq, tk: R.allowed_local(tq, tk, 5) & R.allowed_causal(tq, tk),
    "local4+causal3": lambda tq, tk: R.allowed_local(tq, tk, 4) & R.allowed_causal(tq, tk, 3),
}

#: visible keys per query row, counted by hand.
#: T=7:   local4 -> j in [i-2, i+1]; local5 -> [i-2, i+2]; causal3 -> [i-2, i];
#:        local5+causal and local4+causal3 -> [i-2, i].
#: Tq=4, Tk=6 (top-left): the same windows, clipped at j <= 5 instead of 6.
COUNTS = {
    (7, 7): {
        "full": [7, 7, 7, 7, 7, 7, 7],
        "local4": [2, 3, 4, 4, 4, 4, 3],
        "local5": [3, 4, 5, 5, 5, 4, 3],
        "causal": [1, 2, 3, 4, 5, 6, 7],
        "causal3": [1, 2, 3, 3, 3, 3, 3],
        "local5+causal": [1, 2, 3, 3, 3, 3, 3],
        "local4+causal3": [1, 2, 3, 3, 3, 3, 3],
    },
    (4, 6): {
        "full": [6, 6, 6, 6],
        "local4": [2, 3, 4, 4],
        "local5": [3, 4, 5, 5],
        "causal": [1, 2, 3, 4],
        "causal3": [1, 2, 3, 3],
        "local5+causal": [1, 2, 3, 3],
        "local4+causal3": [1, 2, 3, 3],
    },
}
GRIDS = [(7, 7), (4, 6)]


def components(mask_spec: str):
    """The resolved mask components of ``dot+<mask_spec>`` (``full`` resolves to none)."""
    return attnkit.resolve(f"dot+{mask_spec}").masks


def allowed_from_components(masks, tq: int, tk: int, rank: int = 2) -> np.ndarray:
    """AND of ``Mask.allowed`` over keras index grids: (tq, 1) x (1, tk), or (1, tq, 1) x (1, 1, tk)
    as the layer passes them."""
    if rank == 2:
        q_idx = ops.reshape(ops.arange(tq, dtype="int32"), (tq, 1))
        k_idx = ops.reshape(ops.arange(tk, dtype="int32"), (1, tk))
    else:
        q_idx = ops.reshape(ops.arange(tq, dtype="int32"), (1, tq, 1))
        k_idx = ops.reshape(ops.arange(tk, dtype="int32"), (1, 1, tk))
    result = np.ones((1,) * (rank - 2) + (tq, tk), dtype=bool)
    for mask in masks or [Full()]:
        out = ops.convert_to_numpy(mask.allowed(q_idx, k_idx))
        assert out.dtype == bool and out.shape == result.shape
        result = result & out
    return result.reshape(tq, tk)


def test_full_resolves_to_no_mask_and_allows_everything():
    assert components("full") == ()
    np.testing.assert_array_equal(allowed_from_components([Full()], 7, 7), np.ones((7, 7), bool))


# -- (a) Mask.allowed equals the loops ---------------------------------------------------------
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("mask_spec", list(REFERENCE))
@pytest.mark.parametrize("rank", [2, 3])
def test_m3_allowed_matches_reference_loops(mask_spec, grid, rank):
    tq, tk = grid
    got = allowed_from_components(components(mask_spec), tq, tk, rank)
    np.testing.assert_array_equal(got, REFERENCE[mask_spec](tq, tk))


# -- (b) visible keys per row, counted by hand ---------------------------------------------------
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("mask_spec", list(REFERENCE))
def test_m3_visible_keys_per_row(mask_spec, grid):
    tq, tk = grid
    expected = COUNTS[grid][mask_spec]
    got = allowed_from_components(components(mask_spec), tq, tk).sum(axis=1)
    assert got.tolist() == expected
    # the loop oracle agrees with the hand count too
    assert REFERENCE[mask_spec](tq, tk).sum(axis=1).tolist() == expected


# -- (c) through the layer: exact zeros where forbidden, positive where allowed -------------------
def _layer_inputs(grid):
    rng = np.random.default_rng(21)
    tq, tk = grid
    if tq == tk:
        return rng.uniform(-1, 1, (3, tq, 5)).astype("float32")
    return [
        rng.uniform(-1, 1, (3, tq, 5)).astype("float32"),
        rng.uniform(-1, 1, (3, tk, 3)).astype("float32"),
        rng.uniform(-1, 1, (3, tk, 5)).astype("float32"),
    ]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("scorer", ["dot", "additive(units=8)"])
@pytest.mark.parametrize("mask_spec", list(REFERENCE))
def test_layer_weights_follow_the_mask(mask_spec, scorer, grid):
    inputs = _layer_inputs(grid)
    layer = attnkit.AttentionLayer(f"{scorer}+{mask_spec}", return_attention=True)
    out, weights = layer(inputs)
    weights = ops.convert_to_numpy(weights)
    allowed = np.broadcast_to(REFERENCE[mask_spec](*grid), weights.shape)
    assert (weights[~allowed] == 0).all(), "a forbidden key got weight"
    assert (weights[allowed] > 0).all(), "an allowed key got no weight"
    assert ((weights > 0).sum(-1) == np.array(COUNTS[grid][mask_spec])).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


# -- (d) declared reach never allows less than allowed() -----------------------------------------
REACH_MASKS = (
    [Full(), Causal()] + [Local(w) for w in range(1, 17)] + [Causal(w) for w in range(1, 12)]
)


@pytest.mark.parametrize("mask", REACH_MASKS, ids=str)
def test_reach_covers_allowed(mask):
    back, ahead = mask.reach()
    assert back is None or (isinstance(back, int) and back >= 0)
    assert ahead is None or (isinstance(ahead, int) and ahead >= 0)
    for tq, tk in [(20, 20), (12, 20), (20, 9)]:
        allowed = allowed_from_components([mask], tq, tk)
        for i, j in zip(*np.nonzero(allowed), strict=False):
            offset = int(j) - int(i)
            assert back is None or offset >= -back, f"({i},{j}) allowed beyond reach back={back}"
            assert ahead is None or offset <= ahead, f"({i},{j}) allowed beyond reach ahead={ahead}"


# -- (e) wide local is full; local1 is the diagonal ---------------------------------------------
@pytest.mark.parametrize("width", [13, 14, 50])
def test_m3_local_at_least_2t_minus_1_is_full(width):
    t = 7
    np.testing.assert_array_equal(
        allowed_from_components([Local(width)], t, t), np.ones((t, t), bool)
    )
    x = _layer_inputs((t, t))
    full_out, full_w = attnkit.AttentionLayer("dot", return_attention=True)(x)
    wide_out, wide_w = attnkit.AttentionLayer(f"dot+local{width}", return_attention=True)(x)
    np.testing.assert_array_equal(ops.convert_to_numpy(wide_out), ops.convert_to_numpy(full_out))
    np.testing.assert_array_equal(ops.convert_to_numpy(wide_w), ops.convert_to_numpy(full_w))


def test_m3_local_2t_minus_2_is_not_full():
    """One narrower than 2T-1 loses exactly the far corner (i=0, j=T-1)."""
    allowed = allowed_from_components([Local(12)], 7, 7)
    assert not allowed[0, 6] and allowed.sum() == 48


def test_m3_local1_is_the_diagonal():
    np.testing.assert_array_equal(allowed_from_components([Local(1)], 7, 7), np.eye(7, dtype=bool))
    np.testing.assert_array_equal(
        allowed_from_components([Local(1)], 4, 6), np.eye(4, 6, dtype=bool)
    )
    x = _layer_inputs((7, 7))
    out, weights = attnkit.AttentionLayer("additive+local1", return_attention=True)(x)
    weights, eye = ops.convert_to_numpy(weights), np.broadcast_to(np.eye(7), (3, 7, 7))
    # Masked keys weigh exactly zero; the one visible key 1 within an ulp, not bit for bit:
    # TensorFlow's CPU softmax multiplies by an approximate reciprocal of the row sum where
    # AVX2 vectorises it (a one-hot row reads 1 - 2**-24 there).
    np.testing.assert_array_equal(weights[eye == 0], 0.0)
    np.testing.assert_allclose(weights, eye, rtol=0, atol=np.finfo(np.float32).eps)
    np.testing.assert_allclose(ops.convert_to_numpy(out), x, rtol=2 * np.finfo(np.float32).eps)


# -- (f) a symbolic time axis ----------------------------------------------------------------------
def test_m5_symbolic_length_model_predicts_any_length():
    inputs = keras.Input(shape=(None, 5))
    layer = attnkit.AttentionLayer("dot+local3", return_attention=True)
    model = keras.Model(inputs, layer(inputs))
    for t in (3, 11):
        x = np.random.default_rng(t).uniform(-1, 1, (2, t, 5)).astype("float32")
        out, weights = model.predict(x, verbose=0)
        assert out.shape == (2, t, 5) and weights.shape == (2, t, t)
        ref_out, ref_weights = R.layer_reference(layer, x)
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-5)
        expected = [2] + [3] * (t - 2) + [2]  # local3: j in [i-1, i+1], clipped
        assert ((weights > 0).sum(-1) == np.array(expected)).all()
        assert (weights[:, ~R.allowed_local(t, t, 3)] == 0).all()


# -- M3: every window width on every length --------------------------------------------------------
def test_m3_local_window_exhaustive():
    """T in 1..40, w in 1..2T+1: each row sees exactly the keys of the loop oracle (w keys,
    w//2 back and (w-1)//2 ahead, clipped at the edges); w >= 2T-1 is full; w = 1 the diagonal.

    The predicate depends on the indices only, so the T x T grid is the top-left corner of the
    40 x 40 one: one call per width (one compiled shape on JAX)."""
    grids = {w: allowed_from_components([Local(w)], 40, 40) for w in range(1, 82)}
    for t in range(1, 41):
        for w in range(1, 2 * t + 2):
            got = grids[w][:t, :t]
            back, ahead = w // 2, (w - 1) // 2
            counts = [min(i + ahead, t - 1) - max(i - back, 0) + 1 for i in range(t)]
            assert got.sum(axis=1).tolist() == counts, (t, w)
            if t <= 12:  # the loop oracle, cell by cell, where it is cheap
                np.testing.assert_array_equal(got, R.allowed_local(t, t, w), err_msg=f"{t} {w}")
            if w >= 2 * t - 1:
                assert got.all(), f"local{w} at T={t} is not full"
        np.testing.assert_array_equal(grids[1][:t, :t], np.eye(t, dtype=bool))


@pytest.mark.parametrize("t", [1, 2, 5, 9])
def test_m3_local_and_causal_against_the_oracle(t):
    for w in range(1, 2 * t + 2):
        for causal in (None, 1, 2, 3):
            masks = [Local(w), Causal(causal)]
            expected = R.allowed_local(t, t, w) & R.allowed_causal(t, t, causal)
            np.testing.assert_array_equal(allowed_from_components(masks, t, t), expected)


@pytest.mark.parametrize("spec", ["dot+local3", "dot+local4+causal", "additive+causal2", "dot"])
def test_m3_an_all_true_padding_mask_changes_nothing(spec):
    """The window applies whether or not a padding mask is given (jax#32357 dropped the window
    when the mask was None)."""
    x = _layer_inputs((7, 7))
    layer = attnkit.AttentionLayer(spec, return_attention=True)
    plain = [ops.convert_to_numpy(t) for t in layer(x)]
    masked = [ops.convert_to_numpy(t) for t in layer(x, mask=np.ones((3, 7), bool))]
    np.testing.assert_array_equal(masked[0], plain[0])
    np.testing.assert_array_equal(masked[1], plain[1])
    if "+" in spec:
        allowed = R.allowed_spec(layer.resolved.masks, 7, 7)
        assert (plain[1][:, ~allowed] == 0).all()


# -- M4: causal with Tq != Tk ----------------------------------------------------------------------
#: (Tq, Tk) -> the visible keys: upper-left alignment, query i sees keys j <= i
CAUSAL_PATTERNS = {
    (2, 4): [[1, 0, 0, 0], [1, 1, 0, 0]],
    (4, 2): [[1, 0], [1, 1], [1, 1], [1, 1]],
}


@pytest.mark.parametrize("grid", list(CAUSAL_PATTERNS), ids=lambda g: f"{g[0]}x{g[1]}")
def test_m4_causal_alignment_is_upper_left(grid):
    """Tq=2, Tk=4 and Tq=4, Tk=2: query i sees keys j <= i, as keras.layers.Attention and
    torch's is_causal do, through the predicate and through the layer's weights."""
    tq, tk = grid
    expected = np.array(CAUSAL_PATTERNS[grid], bool)
    np.testing.assert_array_equal(allowed_from_components([Causal()], tq, tk), expected)
    rng = np.random.default_rng(22)
    q = rng.uniform(-1, 1, (3, tq, 5)).astype("float32")
    v = rng.uniform(-1, 1, (3, tk, 5)).astype("float32")
    _, weights = attnkit.AttentionLayer("dot+causal", return_attention=True)([q, v])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(weights) > 0, np.broadcast_to(expected, (3, tq, tk))
    )


def test_m4_no_lower_right_alignment():
    """Deliberate deviation: there is no lower-right (decoding) alignment. The table asks for it
    as an option; attnkit keeps one meaning per token, and a decoder that attends a cache of
    Tk > Tq keys passes the queries' absolute positions by padding, or uses full + padding."""
    with pytest.raises(attnkit.SpecParameterError, match="no parameter 'align'"):
        attnkit.resolve("dot+causal(align=lower_right)")


@pytest.mark.parametrize("spec", ["dot+causal", "additive(units=8)+causal+local3", "dot+causal2"])
@pytest.mark.parametrize("grid", list(CAUSAL_PATTERNS), ids=lambda g: f"{g[0]}x{g[1]}")
def test_m4_rows_emptied_by_causal_and_padding_are_zero(spec, grid):
    """Causal plus padding (plus a window) empties rows: padded key 0 leaves query 0 nothing.
    Those rows are exactly 0 (N1); the others sum to 1 over the keys they may see."""
    tq, tk = grid
    rng = np.random.default_rng(23)
    q = rng.uniform(-1, 1, (3, tq, 5)).astype("float32")
    v = rng.uniform(-1, 1, (3, tk, 5)).astype("float32")
    v_mask = np.ones((3, tk), bool)
    v_mask[0, 0] = False  # sample 0: query 0 sees nothing
    v_mask[2] = False  # sample 2: nothing at all
    layer = attnkit.AttentionLayer(spec, return_attention=True)
    out, weights = (ops.convert_to_numpy(t) for t in layer([q, v], mask=[None, v_mask]))
    allowed = R.allowed_spec(layer.resolved.masks, tq, tk)[None] & v_mask[:, None, :]
    empty = ~allowed.any(-1)
    assert empty[0, 0] and empty[2].all()
    assert (out[empty] == 0).all() and (weights[empty] == 0).all()
    assert (weights[~np.broadcast_to(allowed, weights.shape)] == 0).all()
    np.testing.assert_allclose(weights.sum(-1)[~empty], 1.0, atol=1e-6)
