"""Execution plans: banded and chunked give the dense plan's numbers and gradients under every
mask combination that selects them, eager and under jit; the choice is automatic.

Every built-in scorer is held to the dense plan on every plan by the conformance suite
(``check_plans_agree`` in tests/test_builtins_conform.py); here the masks vary, with the two
kinds of scorer the plans treat apart: a plain product (``dot``, pair width 1) and a pairwise
one (``additive``, with its hand-written window gradient)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from support.autodiff import compiled_layer_grads, value_and_grads

import attnkit
from attnkit import Scorer, backend, plans
from attnkit.backend import compiling, fused
from attnkit.plans import _banded, _limits

SCORERS = ["dot(scale=learned)", "additive"]
BANDED_MASKS = ["local4", "local15", "causal3", "local5+causal"]
CHUNKED_MASKS = ["", "causal", "local5", "causal3"]
STEPS, FEATURES = 37, 6


pytestmark = pytest.mark.usefixtures("small_chunks")  # blocks of 16 queries


def _data(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1.5, 1.5, (3, STEPS, FEATURES)).astype("float32")
    mask = np.ones((3, STEPS), bool)
    mask[1, 25:] = False
    mask[2] = False  # a sample with nothing visible: zeros on every plan
    return x, mask


def _pair(spec: str, plan: str, **options):
    dense = attnkit.AttentionLayer(spec, plan="dense", **options)
    other = attnkit.AttentionLayer(spec, plan=plan, **options)
    for layer in (dense, other):
        layer.build((None, STEPS, FEATURES))
    for target, source in zip(other.weights, dense.weights, strict=True):
        target.assign(ops.convert_to_numpy(source))
    return dense, other


def _grads(layer, x, mask, training=None):
    def loss(t):
        out = layer(t, mask=mask, training=training)
        coefficients = np.linspace(-1, 1, out.shape[-1], dtype="float32")
        return ops.sum(out * ops.convert_to_tensor(coefficients)), []

    _, g_x, g_w = value_and_grads(loss, [x], layer.trainable_weights)
    return [*g_x, *g_w]


def _check_equal(spec, plan, masks):
    full = "+".join(p for p in (spec, masks) if p)
    dense, other = _pair(full, plan)
    x, mask = _data()
    assert other.choice(x).plan == plan, full
    expected = ops.convert_to_numpy(dense(x, mask=mask))
    expected_grads = _grads(dense, x, mask)
    # Inference and training take different paths through the chunked plan (a fused block
    # on TensorFlow, a rematerialised one), so both are held to the dense plan.
    for training in (False, True):
        got = ops.convert_to_numpy(other(x, mask=mask, training=training))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
        assert (got[2] == 0).all() and (got[1, 25:] == 0).all()
        grads = _grads(other, x, mask, training)
        for g_dense, g_other in zip(expected_grads, grads, strict=True):
            assert np.isfinite(g_other).all()
            np.testing.assert_allclose(g_other, g_dense, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("masks", BANDED_MASKS)
@pytest.mark.parametrize("spec", SCORERS)
def test_banded_equals_dense(spec, masks):
    _check_equal(spec, "banded", masks)


@pytest.mark.parametrize(
    "spec, masks", [("additive", "local4"), ("gaussian", "causal3"), ("dot", "local5+causal")]
)
def test_banded_fused_equals_dense(spec, masks, monkeypatch):
    """The offset pass compiled as one computation (TensorFlow's XLA; elsewhere the same
    function): long windows take it, forced here at a small size."""
    monkeypatch.setattr(_limits, "FUSE_ABOVE", 0)
    calls = []
    monkeypatch.setattr(_banded, "fused", lambda make, *key: calls.append(key) or fused(make, *key))
    _check_equal(spec, "banded", masks)
    assert calls


@pytest.mark.parametrize("spec", ["concat", "dot"])  # their score() does not call project()
def test_banded_splits_scorers_that_split_and_gathers_the_others(spec, monkeypatch):
    """Built-ins split into project() and pair() and are scored one offset at a time, for
    inference and training alike (a gathered window's gradient is the slow part of a step); a
    scorer that declines the split (project() returns None) or has none is scored against
    gathered windows. All with the dense plan's numbers."""
    taken = []
    for name in ("_offset_function", "_gathered", "_gathered_scores"):
        original = getattr(_banded, name)
        monkeypatch.setattr(
            _banded, name, lambda *a, _f=original, _n=name, **k: taken.append(_n) or _f(*a, **k)
        )
    _, layer = _pair(f"{spec}+local4", "banded")
    x, mask = _data()
    for training, path in (
        (False, ["_offset_function"]),
        (True, ["_offset_function"]),
    ):
        taken.clear()
        layer(x, mask=mask, training=training)
        assert taken == path
    _check_equal(spec, "banded", "local4")
    cls = type(attnkit.resolve(spec).scorer)
    for project, path in (
        (lambda self, params, query, key: None, "_offset_function"),
        (attnkit.Scorer.project, "_gathered"),
    ):
        monkeypatch.setattr(cls, "project", project)
        taken.clear()
        _check_equal(spec, "banded", "local4")
        assert path in taken and "_gathered_scores" in taken


@pytest.mark.parametrize("masks", CHUNKED_MASKS)
@pytest.mark.parametrize("spec", SCORERS)
def test_chunked_equals_dense(spec, masks):
    _check_equal(spec, "chunked", masks)


@pytest.mark.parametrize("masks", ["", "causal"])
@pytest.mark.parametrize("spec", ["dot", "dot(scale=learned)", "dot(scale=sqrt)", "dot(scale=0.5)"])
def test_kernel_equals_dense(spec, masks):
    _check_equal(spec, "kernel", masks)


class TestKernel:
    """The fused ``dot_product_attention`` plan: taken only where it computes the spec exactly."""

    def plan_of(self, spec, inputs=None, training=False, steps=9, **options):
        layer = attnkit.AttentionLayer(spec, plan="kernel", **options)
        x = np.zeros((2, steps, 4), "float32")
        inputs = x if inputs is None else inputs
        layer.build([i.shape for i in inputs] if isinstance(inputs, list) else x.shape)
        return layer.choice(inputs, training=training).plan

    def test_only_exact_specs_take_it(self):
        assert self.plan_of("dot+causal") == "kernel"
        assert self.plan_of("dot(scale=learned)") == "kernel"
        # Falls back to what auto picks when the kernel cannot express the spec.
        assert self.plan_of("dot+causal3", steps=256) == "banded"
        assert self.plan_of("additive") == "dense"
        assert self.plan_of("general+causal") == "dense"
        assert self.plan_of("dot+last") == "dense"
        assert self.plan_of("dot", return_attention=True) == "dense"
        assert self.plan_of("dot", attention_activation="sigmoid") == "dense"
        assert self.plan_of("dot", dropout=0.2, training=True) == "dense"
        assert self.plan_of("dot", dropout=0.2, training=False) == "kernel"

    def test_causal_needs_one_length(self):
        q, v = np.zeros((2, 5, 4), "float32"), np.zeros((2, 9, 4), "float32")
        assert self.plan_of("dot", [q, v]) == "kernel"
        assert self.plan_of("dot+causal", [q, v]) == "dense"

    def test_auto_takes_it_on_torch_and_on_jax_with_a_gpu_only(self):
        layer = attnkit.AttentionLayer("dot+causal")
        x = ops.zeros((2, 9, 4))
        name = keras.backend.backend()
        fused = name == "torch" or (name == "jax" and backend.on_accelerator())
        assert plans.kernel_by_default() == fused
        layer.build(x.shape)
        assert layer.choice(x).plan == ("kernel" if fused else "dense")

    def test_cross_attention_with_other_value_size_and_padding(self):
        rng = np.random.RandomState(3)
        q = rng.normal(size=(2, 5, 4)).astype("float32")
        v = rng.normal(size=(2, 9, 3)).astype("float32")
        k = rng.normal(size=(2, 9, 4)).astype("float32")
        masks = [np.array([[1] * 5, [1, 1, 0, 0, 0]], bool), None, np.ones((2, 9), bool)]
        masks[2][1, :] = False  # nothing visible for sample 1: zeros
        masks[2][0, 4:] = False
        outputs = []
        for plan in ("dense", "kernel"):
            layer = attnkit.AttentionLayer("dot(scale=sqrt)", plan=plan)
            outputs.append(ops.convert_to_numpy(layer([q, v, k], mask=masks)))
        np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=2e-6)
        assert (outputs[1][1] == 0).all()


@pytest.mark.parametrize(
    "plan, spec",
    [
        ("kernel", "dot+causal"),
        ("banded", "additive+local5"),
        ("chunked", "dot+causal"),
        ("banded", "gaussian+causal3"),
        ("chunked", "additive"),
    ],
)
def test_d2_jit_compile_on_every_plan(plan, spec):
    dense, other = _pair(spec, plan)
    inputs = keras.Input((STEPS, FEATURES))
    model = keras.Model(inputs, other(inputs))
    model.compile(jit_compile=True)
    x, _ = _data()
    np.testing.assert_allclose(
        model.predict(x, verbose=0), ops.convert_to_numpy(dense(x)), rtol=1e-5, atol=2e-6
    )


def test_banded_works_with_a_symbolic_length():
    inputs = keras.Input((None, FEATURES))
    layer = attnkit.AttentionLayer("additive+local5", plan="banded")
    model = keras.Model(inputs, layer(inputs))
    for steps in (4, 9, 30):
        x = np.random.RandomState(steps).randn(2, steps, FEATURES).astype("float32")
        reference = attnkit.AttentionLayer("additive+local5", plan="dense")
        reference.build((None, None, FEATURES))
        for target, source in zip(reference.weights, layer.weights, strict=True):
            target.assign(ops.convert_to_numpy(source))
        np.testing.assert_allclose(
            model.predict(x, verbose=0), ops.convert_to_numpy(reference(x)), rtol=1e-5, atol=2e-6
        )


def test_training_with_dropout_runs_on_every_plan():
    x, mask = _data()
    for plan in ("banded", "chunked"):
        layer = attnkit.AttentionLayer("dot+local5", plan=plan, dropout=0.3, seed=1)
        out = ops.convert_to_numpy(layer(x, mask=mask, training=True))
        assert np.isfinite(out).all() and (out[2] == 0).all()


class TestChoice:
    """``auto`` picks by the masks' reach and the size of the work, never by scorer name."""

    def choose(self, spec, tq, tk=None, **kw):
        resolved = attnkit.resolve(spec)
        request = plans.Request(
            scorer=resolved.scorer,
            masks=resolved.masks,
            pooling=resolved.pooling,
            query_dim=64,
            key_dim=64,
            steps_q=tq,
            steps_k=tq if tk is None else tk,
            same_length=kw.get("same_length", True),
            training=kw.get("training", False),
            needs_weights=kw.get("needs_weights", False),
        )
        plan = plans.choose(request).plan
        # On torch, and on JAX with a GPU, a spec the fused kernel computes exactly takes it.
        if request.kernel_exact and plans.kernel_by_default():
            assert plan == "kernel", (spec, plan)
            return "kernel-or-threshold"
        return plan

    def plan_is(self, plan, spec, tq, tk=None, **kw):
        return self.choose(spec, tq, tk, **kw) in (plan, "kernel-or-threshold")

    def test_bounded_masks_go_banded(self):
        assert self.choose("additive+local15", 1024) == "banded"
        assert self.choose("dot+causal15", None) == "banded"
        assert self.choose("dot+local15+causal", 4096) == "banded"

    def test_long_bounded_windows_train_in_blocks_but_infer_banded(self, monkeypatch):
        """Training keeps per-window intermediates (about T x W x (Dq + Dk + units)), so past
        BANDED_MAX it takes query blocks; inference projects each key once and stays banded at
        any length, unless the scorer has no project()/pair() split and must gather."""
        steps = _limits.BANDED_MAX // (15 * (64 + 64 + 32)) + 1
        assert self.choose("additive+local15", steps, training=True) == "chunked"
        assert self.choose("additive+local15", steps) == "banded"
        assert self.choose("additive+local15", steps - 1, training=True) == "banded"
        monkeypatch.setattr(type(attnkit.resolve("additive").scorer), "project", Scorer.project)
        assert self.choose("additive+local15", steps) == "chunked"

    def test_short_sequences_stay_dense(self):
        assert self.choose("additive+local15", 20) == "dense"
        assert self.plan_is("dense", "dot+causal", 512)

    def test_windows_pay_off_sooner_for_wider_pairs_and_for_inference(self):
        """Banded from T x T x pair width >= BANDED_ABOVE for inference and
        BANDED_TRAIN_ABOVE for training: a dot product (width 1) stays dense longer than an
        additive scorer (width 32), and longer for training."""
        assert self.choose("dot+local15", 64) == "dense"
        assert self.choose("dot+local15", 128) == "banded"
        assert self.choose("dot+local15", 128, training=True) == "dense"
        assert self.choose("dot+local15", 512, training=True) == "banded"
        assert self.choose("additive+local15", 40) == "banded"
        assert self.choose("additive+local15", 40, training=True) == "dense"
        assert self.choose("additive+local15", 64, training=True) == "banded"

    def test_long_or_wide_go_chunked(self, monkeypatch):
        monkeypatch.setattr(_limits, "CHUNK_ABOVE", 2**22)
        assert self.plan_is("chunked", "dot+causal", 4096)
        assert self.plan_is("dense", "dot", 1024)
        assert self.choose("additive", 1024) == "chunked"  # units=32 pairs of floats per pair

    def test_weights_and_many_to_one_force_dense(self):
        assert self.choose("additive+local15", 1024, needs_weights=True) == "dense"
        assert self.choose("bahdanau+local15+last", 1024) == "dense"
        assert self.choose("dot+local15", None, same_length=False) == "dense"
        assert self.plan_is("dense", "dot+causal", None)  # chunks need a known length

    def test_return_attention_runs_dense_with_the_full_matrix(self):
        layer = attnkit.AttentionLayer("dot+local3", return_attention=True, plan="banded")
        _, weights = layer(np.zeros((1, 40, 4), "float32"))
        assert tuple(weights.shape) == (1, 40, 40)

    def test_plan_is_validated_and_saved(self):
        with pytest.raises(ValueError, match="plan must be one of"):
            attnkit.AttentionLayer("dot", plan="fast")
        layer = attnkit.AttentionLayer("dot+causal", plan="chunked")
        assert attnkit.AttentionLayer.from_config(layer.get_config()).plan == "chunked"


def test_fused_falls_back_for_an_unhashable_key():
    """A non-frozen third-party component cannot key the compile cache; it still runs."""
    compute = fused(lambda scale: lambda t: t * scale[0], [3.0])  # a list: unhashable
    np.testing.assert_allclose(ops.convert_to_numpy(compute(ops.ones((2,)))), [3.0, 3.0])


class TestRowsSeeAKey:
    """The masked softmax skips its zeroing pass only where every row is sure to see a key."""

    def test_only_exact_masks_without_padding(self):
        masks = lambda spec: attnkit.resolve(spec).masks  # noqa: E731
        valid = np.ones((1, 4), bool)
        assert plans.rows_see_a_key(masks("dot+causal"), None, None)
        assert plans.rows_see_a_key(masks("dot"), None, None)
        assert not plans.rows_see_a_key(masks("dot+local3"), None, None)
        assert not plans.rows_see_a_key(masks("dot+causal3"), None, None)
        assert not plans.rows_see_a_key(masks("dot+causal"), valid, None)
        assert not plans.rows_see_a_key(masks("dot+causal"), None, valid)

    def test_skipping_changes_no_weight_even_behind_non_finite_scores(self):
        rng = np.random.RandomState(0)
        scores = rng.randn(2, 6, 6).astype("float32")
        allowed = np.tril(np.ones((6, 6), bool))[None]
        scores[:, 0, 3] = np.inf  # behind the mask: must change nothing
        scores[:, 1, 4] = np.nan
        scores[:, 2, 5] = -np.inf
        zeroed = ops.convert_to_numpy(attnkit.masked_softmax(scores, allowed))
        skipped = ops.convert_to_numpy(attnkit.masked_softmax(scores, allowed, rows_see_a_key=True))
        np.testing.assert_array_equal(skipped, zeroed)
        assert np.all(skipped[:, ~allowed[0]] == 0.0)
        np.testing.assert_allclose(skipped.sum(-1), 1.0, rtol=1e-6)

    def test_a_row_that_sees_nothing_still_needs_the_zeroing_pass(self):
        allowed = np.array([[[False, False], [True, False]]])
        weights = ops.convert_to_numpy(
            attnkit.masked_softmax(np.zeros((1, 2, 2), "float32"), allowed)
        )
        np.testing.assert_array_equal(weights, [[[0.0, 0.0], [1.0, 0.0]]])


def _compiled_grads(layer, x, mask):
    return compiled_layer_grads(layer, [x], mask)[1]


def test_banded_fused_trains_in_a_keras_step(monkeypatch):
    """Keras' default step (a graph, op by op on TensorFlow's CPU) around the offset pass
    compiled on its own: the pass's gradient must compile too (a ``cond`` inside it did not:
    XLA has no kernel for the optional intermediates of its gradient). Same losses and updates
    as the dense plan."""
    monkeypatch.setattr(_limits, "FUSE_ABOVE", 0)
    x, _ = _data()
    y = np.linspace(-1, 1, x.shape[0], dtype="float32")[:, None]
    losses, updated = [], []
    for plan in ("dense", "banded"):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((STEPS, FEATURES))
        hidden = attnkit.AttentionLayer("additive+local4", plan=plan)(inputs)
        pooled = keras.layers.GlobalAveragePooling1D()(hidden)
        model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
        model.compile(keras.optimizers.SGD(0.1), "mse")
        losses.append([float(model.train_on_batch(x, y)) for _ in range(2)])
        updated.append([ops.convert_to_numpy(w) for w in model.weights])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for banded_weight, dense_weight in zip(updated[1], updated[0], strict=True):
        np.testing.assert_allclose(banded_weight, dense_weight, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("spec", ["additive+local4", "gaussian+causal3"])
def test_banded_trains_on_offsets_inside_a_compiled_step(spec, monkeypatch):
    """Inside a step compiled as a whole the banded plan's gradient comes from the offset pass,
    compiled once by the outer step (never a compiled function inside it); eager PyTorch
    takes the same pass op by op. Either way the dense plan's gradients."""
    taken = []
    for name in ("_offset_function", "_gathered"):
        original = getattr(_banded, name)
        monkeypatch.setattr(
            _banded, name, lambda *a, _f=original, _n=name, **k: taken.append(_n) or _f(*a, **k)
        )
    monkeypatch.setattr(_limits, "FUSE_ABOVE", 0)  # would compile, were it not inside one
    inner = []
    monkeypatch.setattr(backend, "_compile", lambda fn: inner.append(fn) or fn)
    dense, other = _pair(spec, "banded")
    x, mask = _data()
    got = _compiled_grads(other, x, mask)
    for g_dense, g_other in zip(_grads(dense, x, mask), got, strict=True):
        np.testing.assert_allclose(g_other, g_dense, rtol=1e-4, atol=1e-5)
    assert taken and set(taken) == {"_offset_function"}
    assert not inner


class TestCompiling:
    """backend.compiling(): whether the ops being built become one compiled computation."""

    def test_per_backend_outside_any_function(self):
        assert compiling() is (keras.backend.backend() == "jax")

    @pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's tracers")
    def test_jax_answers_for_a_tensor(self):
        import jax

        seen = []
        probe = lambda t: seen.append(compiling(t)) or t  # noqa: E731
        probe(jax.numpy.ones(2))
        jax.jit(probe)(jax.numpy.ones(2))
        jax.grad(lambda t: probe(t).sum())(jax.numpy.ones(2))
        assert seen == [False, True, True]

    @pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="tf.function is TensorFlow's"
    )
    def test_inside_tensorflow_functions(self):
        import tensorflow as tf

        seen = {}

        def probe(name):
            seen[name] = compiling()
            made = fused(lambda: lambda t: t + 1.0)
            seen[name + " compiles again"] = isinstance(made, tf.types.experimental.GenericFunction)
            return made(tf.constant(1.0))

        tf.function(lambda: probe("graph"))()
        tf.function(lambda: probe("xla"), jit_compile=True)()
        assert seen == {
            "graph": False,
            "graph compiles again": True,
            "xla": True,
            "xla compiles again": False,
        }
