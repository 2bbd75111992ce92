"""Failure modes of docs/guarantees.md that no module test owns, each named after its case id.

Numerics (N1, N3-N5, N7-N9), masks (M5-M7), parity (D1-D3) and a scorer that breaks its
contract at call time (P5). The other ids are carried by renamed module tests: N1, N4, N6, N8 and
M1 in test_reference.py, N2 and M2 in test_layer.py, M3 and M4 in test_masks.py, D2 in
test_reference.py, D4 in test_distributed.py; the hypothesis properties (N1, M6) are in
test_properties.py.

Where attnkit deviates from the table on purpose, the test asserts what attnkit does and says why.
Shapes are small and distinct (B=3, T=8 or 20, D=4, Dv=3) so swapped axes fail.
"""

from __future__ import annotations

import ast

import attrs
import keras
import numpy as np
import pytest
from keras import ops
from support import reference as R
from support.autodiff import value_and_grads
from support.cases import SCORERS, lengths_mask, make_layer, no_warnings, randomize, spec_of
from support.compare import TOLERANCES, assert_batch_independent, numpy

import attnkit
from attnkit.components import Scorer
from attnkit.conformance._harness import copy_weights
from attnkit.errors import ComponentError, InputTypeError

BACKEND = keras.backend.backend()
#: One instance of every built-in scorer that takes a sequence (``dense`` is the gate's).
BUILTIN_SCORERS = ["dot", "general_bias", "additive", "bahdanau", "gaussian", "concat"]


def plan_of(layer, inputs) -> str:
    """The plan ``layer`` takes for these inputs (self-attention or [q, v, k])."""
    return layer.choice(inputs).plan


def outputs_and_grads(layer, inputs, mask, seed: int = 0):
    """(outputs, input gradients, weight gradients) of a fixed random linear loss; a gradient
    the loss does not reach is zeros."""
    listed = isinstance(inputs, list)
    tensors = inputs if listed else [inputs]

    def loss(*ts):
        result = layer(list(ts) if listed else ts[0], mask=mask)
        outs = list(result) if isinstance(result, (list, tuple)) else [result]
        rng = np.random.default_rng(seed)
        total = 0.0
        for out in outs:
            coefficients = rng.normal(size=tuple(out.shape)).astype("float32")
            total = total + ops.sum(ops.cast(out, "float32") * ops.convert_to_tensor(coefficients))
        return total, outs

    outs, g_t, g_w = value_and_grads(loss, tensors, layer.trainable_weights)
    g_t = [np.zeros(np.shape(t)) if g is None else g for t, g in zip(tensors, g_t, strict=True)]
    g_w = [
        np.zeros(tuple(v.shape)) if g is None else g
        for v, g in zip(layer.trainable_weights, g_w, strict=True)
    ]
    return [np.asarray(o, dtype=np.float64) for o in outs], g_t, g_w


# == N1 / N9: every code path ======================================================================
T, D, DV = 20, 4, 3
#: spec -> the plans that can run it (besides dense with returned weights)
PATH_SPECS = {
    "dot+causal": ["dense", "chunked", "kernel"],
    "additive(units=8)+local5": ["dense", "banded", "chunked"],
    "general(use_bias=true)+causal3": ["dense", "banded", "chunked"],
    "gaussian+local4+causal": ["dense", "banded", "chunked"],
    "bahdanau+local3+last(units=4)": ["dense"],
    "concat+causal+weighted": ["dense"],
}


def path_inputs(seed: int = 0):
    """[q, v, k] (3, 20, .) and [query mask, value mask] with every kind of empty row: sample 0's
    first three keys are padded (its first queries see nothing under causal/local), sample 1 is
    padded after step 13, sample 2 entirely."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-1.5, 1.5, (3, T, D)).astype("float32")
    v = rng.uniform(-1.5, 1.5, (3, T, DV)).astype("float32")
    k = rng.uniform(-1.5, 1.5, (3, T, D)).astype("float32")
    q_mask = lengths_mask([T, 13, 0], T)
    v_mask = lengths_mask([T, 13, 0], T)
    v_mask[0, :3] = False
    return [q, v, k], [q_mask, v_mask]


def path_layers(spec, inputs):
    """{path name: layer}: dense with returned weights, then one layer per plan, same weights."""
    reference = make_layer(spec, inputs)  # dense, return_attention=True, random weights
    layers = {"weights": reference}
    for plan in PATH_SPECS[spec]:
        layer = attnkit.AttentionLayer(spec, plan=plan)
        layer(inputs)
        copy_weights(reference, layer)
        assert plan_of(layer, inputs) == plan, f"{spec} did not take the {plan} plan"
        layers[plan] = layer
    return layers


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("spec", list(PATH_SPECS))
def test_n1_fully_masked_rows_are_zero_on_every_path(spec):
    """Rows with no visible key (valid queries whose keys are padded, padded queries, a fully
    padded sample) are exactly 0 with and without returned weights, on every plan; the other
    rows agree across paths within the float32 cross-path tolerance."""
    inputs, mask = path_inputs()
    layers = path_layers(spec, inputs)
    expected, weights = (numpy(t) for t in layers["weights"](inputs, mask=mask))
    _, _, allowed = R.layer_reference(layers["weights"], inputs, mask, return_allowed=True)
    empty = ~allowed.any(-1)  # (B, Tq) for seq, (B,) for many-to-one
    assert empty.any() and (~empty).any()
    assert (expected[empty] == 0).all() and (weights[empty] == 0).all()
    for name, layer in layers.items():
        layer.return_attention = False  # the same layer, weights not returned
        out = numpy(layer(inputs, mask=mask))
        assert np.isfinite(out).all(), name
        assert (out[empty] == 0).all(), f"{name}: a row with no visible key is not exactly 0"
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-6, err_msg=name)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("spec", list(PATH_SPECS))
def test_n9_gradients_through_padding_and_empty_rows(spec):
    """Finite gradients everywhere, exactly 0 at every padded query, key and value, and the
    same gradients on every plan as on the dense plan."""
    inputs, mask = path_inputs(2)
    layers = path_layers(spec, inputs)
    q_mask, v_mask = mask
    padded = [~q_mask, ~v_mask, ~v_mask]
    expected = None
    for name, layer in layers.items():
        _, g_inputs, g_weights = outputs_and_grads(layer, inputs, mask)
        for i, (g, pad) in enumerate(zip(g_inputs, padded, strict=True)):
            assert np.isfinite(g).all(), f"{name}: non-finite gradient w.r.t. input {i}"
            assert (g[pad] == 0).all(), f"{name}: non-zero gradient at padded steps of input {i}"
        for v, g in zip(layer.trainable_weights, g_weights, strict=True):
            assert np.isfinite(g).all(), f"{name}: non-finite gradient w.r.t. {v.path}"
        if name == "weights":
            continue  # its loss also reads the weights; the plans are held to plain dense
        if expected is None:
            expected = g_inputs + g_weights
            continue
        for g_plan, g_dense in zip(g_inputs + g_weights, expected, strict=True):
            np.testing.assert_allclose(g_plan, g_dense, rtol=1e-4, atol=1e-5, err_msg=name)


# == N3: masks select, they are never added ========================================================
#: The code that masks and normalises, relative to the package.
MASK_CODE = ("numerics.py", "masks.py", "layer.py", "poolings.py", "plans/*.py", "scorers/*.py")
#: Files among them whose large numbers never meet a score: the parameters' accepted ranges.
NOT_MASK_CODE = ("scorers/_params.py",)


def test_n3_no_large_constants_in_mask_and_softmax_code():
    """No literal of magnitude >= 1e4 (a -1e9 'mask constant') in the code that masks and
    normalises: masks are booleans ANDed and applied once by ``where``, and the fill value is
    ``-0.7 * finfo(dtype).max`` of the scoring dtype."""
    from pathlib import Path

    package = Path(attnkit.__file__).parent
    paths = sorted(p for pattern in MASK_CODE for p in package.glob(pattern))
    paths = [p for p in paths if str(p.relative_to(package)) not in NOT_MASK_CODE]
    assert len(paths) > 10
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = getattr(node, "value", None) if isinstance(node, ast.Constant) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if abs(value) >= 1e4:
                    found.append(f"{path.relative_to(package)}:{node.lineno}: {value!r}")
    assert not found, "large constants in mask/softmax code:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "policy", ["float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"]
)
def test_n3_combined_masks_stay_finite_in_every_dtype(policy):
    """Padding AND causal AND local (and a fully padded sample) in every policy: weights finite,
    masked entries exactly 0, rows that see a key sum to 1 within the dtype's tolerance."""
    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (3, 8, 4)).astype("float32")
    x[0] *= -10  # large negative scores for the additive and gaussian scorers (N2)
    mask = lengths_mask([8, 5, 0], 8)
    for spec in ["additive+local5+causal", "gaussian+causal3+local4", "dot+local3+causal"]:
        layer = attnkit.AttentionLayer(spec, return_attention=True)
        _, weights = layer(x, mask=mask)
        weights = numpy(weights)
        allowed = R.allowed_spec(layer.resolved.masks, 8, 8)[None] & mask[:, None, :]
        allowed = allowed & mask[:, :, None]
        assert np.isfinite(weights).all(), spec
        assert (weights[~allowed] == 0).all(), spec
        rows = allowed.any(-1)
        atol = 1e-6 if policy == "float32" else TOLERANCES[policy][1]
        np.testing.assert_allclose(weights.sum(-1)[rows], 1.0, rtol=0, atol=atol, err_msg=spec)
        assert (weights[~rows] == 0).all()


# == N4: poison behind the structural masks ========================================================
POISONS = {"1e30": 1e30, "-1e30": -1e30, "inf": np.inf, "-inf": -np.inf, "nan": np.nan}
_LAYERS: dict = {}


def poison_layout(layout: str, scorer: str):
    """(layer, clean inputs, mask, hidden) for a layout where the masks hide keys from every
    query; ``hidden`` (B, Tk) marks the keys no query can see (padded ones included)."""
    key = (layout, scorer)
    rng = np.random.default_rng(4)
    if layout.startswith("cross"):
        # Tq=4 < Tk=7 under causal: keys 4..6 come after every query
        q = rng.uniform(-1, 1, (3, 4, D)).astype("float32")
        v = rng.uniform(-1, 1, (3, 7, DV)).astype("float32")
        k = rng.uniform(-1, 1, (3, 7, D)).astype("float32")
        inputs, mask = [q, v, k], [None, lengths_mask([7, 5, 7], 7)]
        spec = spec_of(scorer, "causal")
    else:
        # a many-to-one query at the last valid step sees two keys under local3
        inputs = rng.uniform(-1, 1, (3, 8, D)).astype("float32")
        mask = lengths_mask([8, 5, 0], 8)
        spec = SCORERS[scorer] + "+local3+" + ("last(units=6)" if layout == "last" else "weighted")
    if key not in _LAYERS:
        if layout == "cross_chunked":
            layer = attnkit.AttentionLayer(spec, plan="chunked")
            layer(inputs)
            randomize(layer)
            assert plan_of(layer, inputs) == "chunked"
        else:
            layer = make_layer(spec, inputs)
        _LAYERS[key] = layer
    layer = _LAYERS[key]
    _, _, allowed = R.layer_reference(layer, inputs, mask, return_allowed=True)
    hidden = ~(allowed.any(1) if allowed.ndim == 3 else allowed)
    return layer, inputs, mask, hidden


def poisoned(inputs, hidden, value):
    """The inputs with ``value`` written at the hidden keys and values (queries untouched in
    cross-attention; in self-attention the hidden steps are not the query's)."""
    fill = np.float32(value)
    if isinstance(inputs, list):
        q, v, k = inputs
        return [q, np.where(hidden[..., None], fill, v), np.where(hidden[..., None], fill, k)]
    return np.where(hidden[..., None], fill, inputs).astype("float32")


@pytest.mark.parametrize("scorer", BUILTIN_SCORERS)
@pytest.mark.parametrize("layout", ["cross", "cross_chunked", "last", "weighted"])
def test_n4_poison_behind_structural_masks_changes_nothing(layout, scorer):
    """Keys and values that no query can see because of causal/local (not only padding) may
    hold 1e30, inf or NaN: outputs and weights are bit-identical to the clean run, gradients
    finite, exactly 0 at those steps and unchanged elsewhere."""
    layer, clean, mask, hidden = poison_layout(layout, scorer)
    padded = ~(mask[1] if isinstance(mask, list) else mask)
    assert (hidden & ~padded).any(), "no key hidden by the masks alone"
    c_out, c_g, c_w = outputs_and_grads(layer, clean, mask)
    failures = []
    for name, value in POISONS.items():
        d_out, d_g, d_w = outputs_and_grads(layer, poisoned(clean, hidden, value), mask)
        problems = []
        for got, want in zip(d_out, c_out, strict=True):
            if not np.array_equal(got, want):
                problems.append("outputs or weights changed")
        inputs_hidden = [hidden] if not isinstance(clean, list) else [None, hidden, hidden]
        for i, (gd, gc, hid) in enumerate(zip(d_g, c_g, inputs_hidden, strict=False)):
            if not np.isfinite(gd).all():
                problems.append(f"non-finite gradient w.r.t. input {i}")
            elif hid is not None and not (gd[hid] == 0).all():
                problems.append(f"non-zero gradient at the hidden steps of input {i}")
            elif not np.array_equal(gd, gc):
                problems.append(f"gradient w.r.t. input {i} changed")
        for v, gd, gc in zip(layer.trainable_weights, d_w, c_w, strict=True):
            if not np.isfinite(gd).all() or not np.array_equal(gd, gc):
                problems.append(f"gradient w.r.t. {v.path} non-finite or changed")
        if problems:
            failures.append(f"{layer.spec} poison={name}: {'; '.join(sorted(set(problems)))}")
    assert not failures, "\n".join(failures)


# == N4 (limit) and N5: a non-finite value that some rows see ======================================
J = 9  # the poisoned step; T = 20 steps, so under chunks of 16 it lies in the first block
#: spec -> plans; their masks let rows on both sides of step J miss it
PARTIAL_SPECS = {
    "dot+causal": ["dense", "chunked", "kernel"],
    "additive(units=8)+local5": ["dense", "banded", "chunked"],
    "gaussian+causal3": ["dense", "banded", "chunked"],
}
PARTIAL_CASES = [(spec, plan) for spec, plans_ in PARTIAL_SPECS.items() for plan in plans_]


def partial_layer(spec, plan, inputs):
    key = ("partial", spec, plan)
    if key not in _LAYERS:
        layer = attnkit.AttentionLayer(spec, plan=plan)
        layer(inputs)
        randomize(layer)
        assert plan_of(layer, inputs) == plan
        _LAYERS[key] = layer
    return _LAYERS[key]


def partial_inputs(seed: int = 5):
    rng = np.random.default_rng(seed)
    return [
        rng.uniform(-1, 1, (3, T, D)).astype("float32"),
        rng.uniform(-1, 1, (3, T, DV)).astype("float32"),
        rng.uniform(-1, 1, (3, T, D)).astype("float32"),
    ]


def sees_step(layer, step: int) -> np.ndarray:
    """(T,) rows whose masks let them see key ``step``."""
    return R.allowed_spec(layer.resolved.masks, T, T)[:, step]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("spec, plan", PARTIAL_CASES)
def test_n4_a_key_some_rows_see_is_contained_in_the_forward_pass_only(spec, plan):
    """Deliberate limit. A key that some rows see cannot be zeroed for the rows that do not: the
    scorer computes every pair from one key tensor. Its score is still replaced for those rows,
    so any key poison (and a 1e30 value, since 0 * 1e30 = 0) leaves their outputs bit-identical;
    an infinite or NaN *value* meets their zero weight in weights @ values (0 * inf = NaN) on
    the dense, chunked and kernel plans, and the gradient w.r.t. their queries meets the
    infinite key in the scorer's backward pass. Only the banded plan, which gathers each row's
    own keys, contains both."""
    clean = partial_inputs()
    layer = partial_layer(spec, plan, clean)
    hidden_rows = ~sees_step(layer, J)
    assert hidden_rows.any() and (~hidden_rows).any()
    (c_out,) = outputs_and_grads(layer, clean, None)[0]
    for where, index in (("key", 2), ("value", 1)):
        for name in ("1e30", "inf", "nan"):
            dirty = [t.copy() for t in clean]
            dirty[index][0, J] = POISONS[name]
            (d_out,) = outputs_and_grads(layer, dirty, None)[0]
            assert np.array_equal(d_out[1:], c_out[1:]), "another sample changed"
            contained = np.array_equal(d_out[0, hidden_rows], c_out[0, hidden_rows])
            leaks = where == "value" and name != "1e30" and plan != "banded"
            assert contained != leaks, (
                f"{where}={name} on {plan}: rows that cannot see step {J} "
                + ("changed" if not contained else "were expected to pick up 0 * inf = NaN")
            )

    # Gradients of a loss over the rows that cannot see step J, with an infinite key there.
    rows = np.nonzero(hidden_rows)[0]
    dirty = [t.copy() for t in clean]
    dirty[2][0, J] = np.inf

    def loss(q, v, k):
        out = ops.take(layer([q, v, k]), ops.convert_to_tensor(rows), axis=1)
        return ops.sum(out), [out]

    (out,), (g_q, _, _), _ = value_and_grads(loss, dirty, [])
    assert np.isfinite(out).all() and np.isfinite(g_q[1:]).all()
    # banded: each row's scorer call sees only its own window; the others: 0 * inf
    assert np.isfinite(g_q[0, hidden_rows]).all() == (plan == "banded")


N5_CASES = PARTIAL_CASES + [("dot+weighted", "dense"), ("general+local3+last(units=4)", "dense")]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("spec, plan", N5_CASES)
def test_n5_nan_in_a_visible_input_stays_in_its_sample(spec, plan):
    """A NaN in sample 0's query, key or value at step 9: no repair, no error (debug mode is
    the opt-in check); the other samples are finite and equal to a run without sample 0
    (within 1e-6: see `assert_batch_independent`); the rows that see step 9 are NaN.

    Deliberate deviation: rows of sample 0 that cannot see a NaN *value* are NaN too on the
    dense, chunked and kernel plans (0 * NaN in weights @ values; containing it would take
    the banded plan's per-row gather or a second weights @ values product on every call)."""
    clean = partial_inputs(6)
    layer = partial_layer(spec, plan, clean)
    alone = numpy(layer([t[1:] for t in clean]))
    many_to_one = layer.resolved.pooling.many_to_one
    for where, index in (("query", 0), ("key", 2), ("value", 1)):
        dirty = [t.copy() for t in clean]
        dirty[index][0, J, 1] = np.nan
        out = numpy(layer(dirty))
        assert_batch_independent(out[1:], alone, f"NaN in sample 0's {where}")
        if many_to_one:
            # the query stands at the last step (T-1); a weighted query is learned
            seen = where != "query" and R.allowed_spec(layer.resolved.masks, T, T)[T - 1, J]
            assert np.isnan(out[0]).any() == bool(seen), where
            continue
        sees = sees_step(layer, J) if where != "query" else np.arange(T) == J
        assert np.isnan(out[0, sees]).any(-1).all(), f"a row that sees the NaN {where} is finite"
        clean_rows = numpy(layer(clean))[0, ~sees]
        if where == "value" and plan != "banded":
            assert np.isnan(out[0, ~sees]).any(), "expected the documented 0 * NaN leak"
        else:
            assert np.array_equal(out[0, ~sees], clean_rows), f"NaN {where} leaked"


# == N7: the gaussian scorer at its extremes =======================================================
def scorer_scores(layer, q, k) -> np.ndarray:
    """Raw scores of the layer's scorer on (q, k), with the layer's weights, in float32."""
    params = {k_: ops.cast(v, "float32") for k_, v in layer._scorer_params.items()}
    return numpy(layer.resolved.scorer.score(params, ops.convert_to_tensor(q), k))


@pytest.mark.parametrize("rho, sigma", [(-30.0, 1e-6), (0.5413, 1.0), (1e6, 1e6)])
def test_n7_gaussian_far_inputs_and_extreme_widths(rho, sigma):
    """|x| up to 1e4 and sigma from 1e-6 to 1e6: scores <= 0, outputs and weights finite, rows
    that see a key sum to 1 (a row far from every key is still a distribution), and the
    gradient w.r.t. rho (sigma = softplus(rho) + 1e-6) is finite."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-1e4, 1e4, (3, 8, 4)).astype("float32")
    x[1, :, 0] += 1e4  # queries of sample 1 far from every key of its own sample
    mask = lengths_mask([8, 6, 0], 8)
    layer = attnkit.AttentionLayer("gaussian+causal", return_attention=True)
    layer(x)
    layer._scorer_params["rho"].assign(np.float32(rho))
    assert np.isclose(float(numpy(ops.softplus(np.float32(rho)))) + 1e-6, sigma, rtol=1e-3)
    assert (scorer_scores(layer, x, x) <= 0).all()
    (out, weights), g_inputs, g_weights = outputs_and_grads(layer, x, mask)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    visible = mask  # self-attention under causal: a valid row sees itself
    np.testing.assert_allclose(weights.sum(-1)[visible], 1.0, rtol=0, atol=1e-6)
    assert (weights[~visible] == 0).all() and (out[~visible] == 0).all()
    assert all(np.isfinite(g).all() for g in g_inputs + g_weights)


@pytest.mark.parametrize("policy", ["float16", "mixed_float16", "bfloat16", "mixed_bfloat16"])
def test_n7_gaussian_16_bit_matches_float32(policy):
    """Squared distances above the fp16 maximum (|x| up to 300, so ||q-k||^2 ~ 1e5) are computed
    in float32: the 16-bit run is finite and within its tolerance of the float32 run."""
    rng = np.random.default_rng(8)
    x = rng.uniform(-300, 300, (3, 8, 4)).astype("float32")
    x = x.astype(np.float16).astype(np.float32)  # inputs the 16-bit policy holds exactly
    if "bfloat16" in policy:
        x = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    mask = lengths_mask([8, 6, 0], 8)
    spec = "gaussian(sigma=200.0)+local5"  # sigma ~ the spread: weights neither uniform nor 0/1
    expected_out, expected_w = (numpy(t) for t in make_layer(spec, x)(x, mask=mask))
    keras.config.set_dtype_policy(policy)
    out, weights = (numpy(t) for t in make_layer(spec, x)(x, mask=mask))
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    rtol, atol = TOLERANCES[policy]
    np.testing.assert_allclose(weights, expected_w, rtol=rtol, atol=atol)
    np.testing.assert_allclose(out, expected_out, rtol=rtol, atol=atol * 300)  # |v| <= 300


# == N8: saturating additive scorers ===============================================================
SATURATING = {
    "additive": lambda w: np.abs(w["scorer_w_a"]).sum() + np.abs(w["scorer_b_a"]).sum(),
    "bahdanau": lambda w: np.abs(w["scorer_v"]).sum(),
    "concat": lambda w: np.abs(w["scorer_scale"]).sum(),
    "concat(use_scale=false)": lambda w: 4.0,  # D tanh terms of magnitude <= 1
}


@pytest.mark.parametrize("scorer", list(SATURATING))
def test_n8_saturated_scores_are_bounded_and_gradients_finite(scorer):
    """Inputs of 1e4 saturate the tanh: every score obeys |s| <= ||w||_1 (+ |b|), outputs and
    gradients are finite, and the padded and causal-masked keys still get exactly 0."""
    rng = np.random.default_rng(9)
    x = (1e4 * rng.normal(size=(3, 8, 4))).astype("float32")
    mask = lengths_mask([8, 5, 0], 8)
    layer = make_layer(scorer + "+causal", x)
    bound = SATURATING[scorer](R.layer_weights(layer))
    scores = scorer_scores(layer, x, x)
    assert np.isfinite(scores).all() and np.abs(scores).max() <= bound * (1 + 1e-6)
    (out, weights), g_inputs, g_weights = outputs_and_grads(layer, x, mask)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    allowed = np.tril(np.ones((8, 8), bool))[None] & mask[:, None, :] & mask[:, :, None]
    assert (weights[~allowed] == 0).all()
    assert all(np.isfinite(g).all() for g in g_inputs + g_weights)


# == M5: degenerate shapes =========================================================================
#: name -> (batch, query steps, key steps or None for self-attention)
DEGENERATE = {
    "B0": (0, 5, None),
    "B1": (1, 5, None),
    "T1": (2, 1, None),
    "T0": (2, 0, None),
    "Tv1": (2, 3, 1),
    "Tv0": (2, 3, 0),
    "Tq3Tk7": (2, 3, 7),
}
DEGENERATE_SPECS = {
    "seq": "additive+local3",
    "seq_causal": "dot+causal",
    "last": "additive+last",
    "last_units": "bahdanau+last(units=3)",
    "weighted": "gaussian+weighted",
}
MASK_KINDS = {
    "none": None,
    "bool": lambda m: m,
    "int": lambda m: m.astype("int32"),
    "float": lambda m: m.astype("float32"),
}


def degenerate_case(name, kind):
    """(inputs, mask) for a degenerate shape; masks pad the last step of sample 0 (if any)."""
    batch, tq, tk = DEGENERATE[name]
    rng = np.random.default_rng(10)
    q = rng.uniform(-1, 1, (batch, tq, D)).astype("float32")
    inputs = q
    if tk is not None:
        inputs = [q, rng.uniform(-1, 1, (batch, tk, D)).astype("float32")]
    if MASK_KINDS[kind] is None:
        return inputs, None
    masks = []
    for steps in (tq,) if tk is None else (tq, tk):
        m = np.ones((batch, steps), bool)
        if batch and steps > 1:
            m[0, -1] = False
        masks.append(MASK_KINDS[kind](m))
    return inputs, masks[0] if tk is None else masks


@pytest.mark.parametrize("pooling", list(DEGENERATE_SPECS))
@pytest.mark.parametrize("shape", list(DEGENERATE))
def test_m5_degenerate_shapes(shape, pooling):
    """B 0 and 1, one and zero steps, Tq != Tk, masks as bool/int/float, weights returned or
    not: the right shapes, finite values, zeros where nothing is visible, no warning (a
    length-1 softmax warns in keras.ops; attnkit answers 1 without it)."""
    spec = DEGENERATE_SPECS[pooling]
    batch, tq, tk = DEGENERATE[shape]
    tk_ = tq if tk is None else tk
    units = 3 if "units" in pooling else D
    for kind in MASK_KINDS:
        inputs, mask = degenerate_case(shape, kind)
        for return_attention in (False, True):
            layer = attnkit.AttentionLayer(spec, return_attention=return_attention)
            with no_warnings():
                result = layer(inputs, mask=mask)
            out = numpy(result[0] if return_attention else result)
            many_to_one = layer.resolved.pooling.many_to_one
            assert out.shape == ((batch, units) if many_to_one else (batch, tq, D)), kind
            assert np.isfinite(out).all(), kind
            if tq == 0 or tk_ == 0:
                assert (out == 0).all(), f"{kind}: nothing visible, yet a non-zero output"
            if return_attention:
                weights = numpy(result[1])
                assert weights.shape == ((batch, tk_) if many_to_one else (batch, tq, tk_))
                assert np.isfinite(weights).all()
                if tk_ == 1 and batch:  # one key: weight exactly 1 where it is visible
                    assert set(np.unique(weights)) <= {0.0, 1.0}
                    assert (weights[..., 0] == 1).any()


@pytest.mark.parametrize("pooling", list(DEGENERATE_SPECS))
def test_m5_symbolic_length_predicts_3_and_17_steps(pooling):
    """A model built on Input((None, D)) with a mask input predicts T=3 and T=17 with the
    numbers of an eager call."""
    spec = DEGENERATE_SPECS[pooling]
    x_in, m_in = keras.Input((None, D)), keras.Input((None,), dtype="bool")
    layer = attnkit.AttentionLayer(spec, return_attention=True)
    model = keras.Model([x_in, m_in], layer(x_in, mask=m_in))
    randomize(layer, 11)
    for steps in (3, 17):
        x = np.random.default_rng(steps).uniform(-1, 1, (2, steps, D)).astype("float32")
        mask = lengths_mask([steps, steps - 1], steps)
        out, weights = model.predict([x, mask], verbose=0)
        e_out, e_weights = (numpy(t) for t in layer(x, mask=mask))
        assert weights.shape[-1] == steps and out.shape[0] == 2
        np.testing.assert_allclose(out, e_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights, e_weights, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "spec, shape",
    [("dense+gate", (0, 4)), ("dense+gate", (1, 4)), ("dense+gate(shared=true)", (2, 1, 4))],
)
def test_m5_gate_degenerate_shapes(spec, shape):
    """The gate pooling where it applies: a 2-D input with 0 or 1 samples, a 3-D input of one
    step (a softmax over one step: weight 1, no warning)."""
    x = np.random.default_rng(12).uniform(-1, 1, shape).astype("float32")
    layer = attnkit.AttentionLayer(spec, return_attention=True)
    out, weights = (numpy(t) for t in layer(x))
    assert out.shape == shape and weights.shape == shape
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    if len(shape) == 3:
        np.testing.assert_array_equal(weights, 1.0)
        np.testing.assert_array_equal(out, x)


# == M6: ragged input ==============================================================================
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.RaggedTensor exists only under TensorFlow")
def test_m6_ragged_input_is_refused_with_the_fix():
    """The contract is dense + mask: a RaggedTensor (alone, in a list, or a ragged Input) raises
    a TypeError (InputTypeError) advising x.to_tensor() and a mask."""
    import tensorflow as tf

    x = tf.ragged.constant([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0]]], ragged_rank=1)
    for inputs, role in ((x, "the input"), ([x.to_tensor(), x], "the value input")):
        with pytest.raises(InputTypeError, match=r"to_tensor\(\).*mask") as info:
            attnkit.AttentionLayer("dot")(inputs)
        assert isinstance(info.value, TypeError) and role in str(info.value)
    dense = attnkit.AttentionLayer("dot")(x.to_tensor(), mask=tf.sequence_mask(x.row_lengths()))
    assert tuple(dense.shape) == (2, 2, 2)


# == M7: query-mask semantics against a masked mean ================================================
@pytest.mark.parametrize("spec", ["dot", "dot+last", "dot+weighted", "dot+last(units=3)"])
def test_m7_padded_queries_and_pooling_against_a_masked_mean(spec):
    """Zero queries score every key alike, so the attention is the plain mean over the visible
    steps: seq rows of valid queries are the masked mean of the values, padded query rows are
    exactly 0; many-to-one poolings give the masked mean (or its tanh projection) and an
    all-padded sample gives exactly 0."""
    rng = np.random.default_rng(13)
    q = np.zeros((3, 6, D), "float32")
    v = rng.uniform(-1, 1, (3, 9, D)).astype("float32")
    q_mask, v_mask = lengths_mask([6, 4, 0], 6), lengths_mask([9, 5, 0], 9)
    layer = attnkit.AttentionLayer(spec)
    layer([q, v])
    if "weighted" in spec:
        layer._pooling_params["query"].assign(np.zeros(D, "float32"))
    out = numpy(layer([q, v], mask=[q_mask, v_mask]))
    mean = np.stack([v[b, v_mask[b]].mean(0) if v_mask[b].any() else np.zeros(D) for b in (0, 1)])
    if spec == "dot":
        np.testing.assert_allclose(out[:2][q_mask[:2]], np.repeat(mean, [6, 4], 0), atol=1e-6)
        assert (out[~q_mask] == 0).all()
        return
    if "units" in spec:
        w_c = R.layer_weights(layer)["pooling_w_c"]
        mean = np.tanh(np.concatenate([mean, np.zeros((2, D))], -1) @ w_c)
    np.testing.assert_allclose(out[:2], mean, rtol=1e-5, atol=1e-6)
    assert (out[2] == 0).all()


# == D1: CPU and GPU ===============================================================================
@pytest.mark.gpu
def test_d1_cpu_and_gpu_agree_for_every_builtin():
    """check_device_agreement on every built-in (float64 reference, ratio rule of section 2,
    same NaN/inf places, a fully masked sample 0 on both). Skipped without a GPU."""
    from attnkit.backend import gpu_available
    from attnkit.conformance._engine import CHECKS, instances, run_case, subject_for

    reason = gpu_available()
    if reason:
        pytest.skip(reason)
    check = next(c for c in CHECKS if c.__name__ == "check_device_agreement")
    names = [c.name for c in attnkit.registry().components() if c.builtin]
    results = [run_case(subject_for(c), check, "gpu") for c in instances(names)]
    failed = [r.message for r in results if r.status == "failed"]
    assert not failed, "\n".join(failed)


# == D2: eager, graph and jit; weights returned or not; every plan =================================
#: how far each path may be from the eager dense run (docs/guarantees.md, "Tolerances")
PATH_TOLERANCE = {"eager": (1e-5, 2e-6), "predict": (1e-5, 2e-6), "jit": (1e-5, 1e-5)}


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("spec", ["dot+causal", "additive(units=8)+local5"])
def test_d2_eager_graph_jit_and_returned_weights_agree(spec):
    """For every plan the spec can take: eager __call__, predict (a traced graph) and predict
    under jit_compile, each with and without returned weights, agree with the eager dense run
    within the table; returning the weights never changes the output, and rows with nothing
    visible are exactly 0 on every path (N1)."""
    inputs, mask = path_inputs(3)
    reference = make_layer(spec, inputs)
    expected, _ = (numpy(t) for t in reference(inputs, mask=mask))
    _, _, allowed = R.layer_reference(reference, inputs, mask, return_allowed=True)
    empty = ~allowed.any(-1)
    symbolic = [keras.Input((T, D)), keras.Input((T, DV)), keras.Input((T, D))]
    masks_in = [keras.Input((T,), dtype="bool"), keras.Input((T,), dtype="bool")]
    plans_ = ["auto", *PATH_SPECS[spec]]
    for plan in plans_:
        for return_attention in (False, True):
            layer = attnkit.AttentionLayer(spec, plan=plan, return_attention=return_attention)
            layer(inputs)
            copy_weights(reference, layer)
            model = keras.Model([*symbolic, *masks_in], layer(symbolic, mask=masks_in))
            runs = {"eager": layer(inputs, mask=mask), "predict": None, "jit": None}
            # One compiled model per spec (torch.compile takes seconds): returning the weights
            # under dot+causal, the banded context under additive+local5.
            jitted = plan == "auto" and return_attention == spec.startswith("dot")
            compiled = ("jit",) if jitted else ()
            for path in ("predict", *compiled):
                model.compile(jit_compile=path == "jit")
                runs[path] = model.predict([*inputs, *mask], verbose=0)
            for path, result in runs.items():
                if result is None:
                    continue
                out = numpy(result[0] if return_attention else result)
                label = f"{spec} plan={plan} weights={return_attention} {path}"
                assert (out[empty] == 0).all(), label
                rtol, atol = PATH_TOLERANCE[path]
                np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol, err_msg=label)


# == D3: determinism and batch independence ========================================================
D3_CASES = [
    ("dot+causal", "dense"),
    ("dot+causal", "chunked"),
    ("dot+causal", "kernel"),
    ("additive(units=8)+local5", "banded"),
    ("additive(units=8)+local5", "chunked"),
    ("gaussian+causal3+last(units=4)", "dense"),
    ("concat+weighted", "dense"),
]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("spec, plan", D3_CASES)
def test_d3_deterministic_and_batch_independent(spec, plan):
    """Two runs on the CPU are bit-identical; each sample's output is its output alone within
    1e-6 (`assert_batch_independent`)."""
    inputs, mask = path_inputs(4)
    layer = attnkit.AttentionLayer(spec, plan=plan)
    layer(inputs)
    randomize(layer)
    assert plan_of(layer, inputs) == plan
    first = numpy(layer(inputs, mask=mask))
    np.testing.assert_array_equal(numpy(layer(inputs, mask=mask)), first)
    for b in range(3):
        alone = numpy(layer([t[b : b + 1] for t in inputs], mask=[m[b : b + 1] for m in mask]))
        assert_batch_independent(first[b], alone[0], f"sample {b}")


def test_d3_dropout_seed_is_saved_and_reproduces_the_mask():
    """The dropout seed is in the config; a layer rebuilt from it drops the same weights."""
    x = np.random.default_rng(14).uniform(-1, 1, (2, 6, D)).astype("float32")
    layer = attnkit.AttentionLayer("dot", dropout=0.5, seed=11, return_attention=True)
    config = layer.get_config()
    assert config["seed"] == 11 and config["dropout"] == 0.5
    clone = attnkit.AttentionLayer.from_config(config)
    (_, w_a), (_, w_b) = layer(x, training=True), clone(x, training=True)
    np.testing.assert_array_equal(numpy(w_a), numpy(w_b))
    assert (numpy(w_a) == 0).any()


# == P5: a scorer that breaks its contract, on every plan ==========================================
def _dot(query, key):
    return ops.matmul(query, ops.swapaxes(key, -1, -2))


@attrs.frozen
class Transposed(Scorer):
    """(B, Tk, Tq): key-major."""

    name = "p5_transposed"

    def score(self, params, query, key):
        return _dot(key, query)


@attrs.frozen
class DropsLastKey(Scorer):
    """(B, Tq, Tk - 1)."""

    name = "p5_drops_last_key"

    def score(self, params, query, key):
        return _dot(query, key[:, :-1])


@attrs.frozen
class IntegerScores(Scorer):
    """Rounded scores in int32: the masked softmax would silently cast them."""

    name = "p5_integer_scores"

    def score(self, params, query, key):
        return ops.cast(10 * _dot(query, key), "int32")


#: plan -> (masks, inputs): cross-attention (Tq=5 != Tk=7) where the plan allows it, so a
#: transposed score is not square; the banded plan needs one length (its scorer calls are not)
P5_PLANS = {
    "dense": ((), "cross"),
    "chunked": ((), "cross"),
    "banded": (("local5",), "self"),
    "kernel": ((), "cross"),  # no dot_scale: falls back to the dense plan, which checks
}


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("plan", list(P5_PLANS))
@pytest.mark.parametrize("broken", [Transposed, DropsLastKey, IntegerScores], ids=lambda c: c.name)
def test_p5_broken_scorer_is_named_on_every_plan(broken, plan):
    """A wrong shape or an integer dtype raises ComponentError (a ValueError) on the first call,
    naming the layer, the scorer, its origin (a distribution, or 'not registered'), the plan
    and the expected shape, instead of a backend's matmul or reshape error."""
    from attnkit.masks import Local

    mask_tokens, kind = P5_PLANS[plan]
    masks = tuple(Local(5) for _ in mask_tokens)
    resolved = attnkit.Resolved.of(broken(), masks)
    rng = np.random.default_rng(15)
    if kind == "cross":
        inputs = [
            rng.uniform(-1, 1, (2, 5, D)).astype("float32"),
            rng.uniform(-1, 1, (2, 7, D)).astype("float32"),
        ]
    else:
        inputs = rng.uniform(-1, 1, (2, T, D)).astype("float32")
    layer = attnkit.AttentionLayer(resolved, plan=plan, name=f"p5_{plan}")
    with pytest.raises(ComponentError) as info:
        layer(inputs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    for fragment in (f"p5_{plan}", broken.name, "not registered", "expected"):
        assert fragment in message, f"{fragment!r} missing from: {message}"
    taken = "dense" if plan == "kernel" else plan
    assert f"on the {taken} plan" in message


@attrs.frozen
class PairKeepsFeatures(Scorer):
    """A correct score(), but pair() forgets to sum over the features: (B, T, P)."""

    name = "p5_pair_keeps_features"

    def score(self, params, query, key):
        return _dot(query, key)

    def project(self, params, query, key):
        return query, key

    def pair(self, params, query_features, key_features):
        return query_features * key_features


def test_p5_broken_pair_is_named_on_the_banded_plan():
    """The banded plan scores a splitting scorer with pair(): a wrong shape from it is a
    ComponentError naming the layer, the scorer, its origin and the expected shape."""
    from attnkit.masks import Local

    resolved = attnkit.Resolved.of(PairKeepsFeatures(), (Local(5),))
    layer = attnkit.AttentionLayer(resolved, plan="banded", name="p5_pair")
    x = np.random.default_rng(16).uniform(-1, 1, (2, T, D)).astype("float32")
    with pytest.raises(ComponentError) as info:
        layer(x)
    message = str(info.value)
    for fragment in ("p5_pair", PairKeepsFeatures.name, "not registered", "pair()", "(2, 20)"):
        assert fragment in message, f"{fragment!r} missing from: {message}"


# == N6: large inputs under mixed_float16 ==========================================================
@pytest.mark.parametrize("spec", ["dot(scale=sqrt)+causal", "general+local5", "additive+last"])
def test_n6_large_inputs_under_mixed_float16_match_float64_and_float32_gradients(spec):
    """Inputs up to 300 in magnitude (scores far beyond the fp16 maximum) under mixed_float16:
    finite outputs within the fp16 tolerance of the float64 reference, and gradients within
    ten times that of the float32 run (the softmax and scores run in float32)."""
    rng = np.random.default_rng(16)
    x = rng.uniform(-300, 300, (3, 8, 4)).astype(np.float16).astype("float32")
    mask = lengths_mask([8, 6, 0], 8)
    wide = make_layer(spec, x)
    (w_out, _), w_g, w_gw = outputs_and_grads(wide, x, mask)
    keras.config.set_dtype_policy("mixed_float16")
    layer = make_layer(spec, x)
    copy_weights(wide, layer)
    (out, weights), g, gw = outputs_and_grads(layer, x, mask)
    assert np.isfinite(out).all() and np.isfinite(weights).all()
    ref_out, _ = R.layer_reference(layer, x, mask)
    rtol, atol = TOLERANCES["mixed_float16"]
    scale = np.abs(x).max()  # outputs are averages of values up to 300
    np.testing.assert_allclose(out, ref_out, rtol=rtol, atol=atol * scale)
    np.testing.assert_allclose(out, w_out, rtol=rtol, atol=atol * scale)
    for got, want in zip(g + gw, w_g + w_gw, strict=True):
        assert np.isfinite(got).all()
        bound = 10 * atol * max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=10 * rtol, atol=bound)
