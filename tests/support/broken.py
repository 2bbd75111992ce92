"""Deliberately broken components: for every conformance check, one that it must fail.

scikit-learn's rule for its check suite: a check that no broken estimator fails proves nothing.
Each class here breaks exactly one promise of the component contract (the docstring says which,
and which check is meant to catch it); ``tests/test_conformance.py`` runs that check on it and
expects ``failed``. The ``Good*`` classes at the end are the well-behaved twins: the same shape
of component without the defect, unregistered too, which must *pass* the same checks, so that a
failure in the table is due to the defect and not to the harness.

None of these is registered anywhere (no entry point, no registry call): a component need not be
installed for the checks that place it in specs from instances. The two checks that resolve
through the registry (config round trip, save/load) therefore fail for every one of them, which
is the failure they are meant to report.

Names are unique (``broken_*``, ``meta_*``) so they can never shadow a built-in, except
:class:`ImpostorDot`, whose whole defect is that it does.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import attrs
import keras
from keras import ops

from attnkit.components import Mask, Pooling, Prepared, Scorer, param

#: Hosts retained by components that (wrongly) create weights after ``build``. A component is
#: frozen and holds no Keras state, so the only way for one to make a weight late is to keep
#: the host it was given in ``build`` somewhere else; a module-level table is that somewhere.
_HOSTS: dict[Any, Any] = {}


def _dot(query, key):
    return ops.matmul(query, ops.swapaxes(key, -1, -2))


def _seq_prepare(query, key, query_mask, q=None):
    positions = ops.expand_dims(ops.arange(ops.shape(query)[1], dtype="int32"), 0)
    return Prepared(query if q is None else q, key, positions, query_mask)


# == API ========================================================================================
@attrs.define
class BrokenMutable(Scorer):
    """``attrs.define`` instead of ``attrs.frozen``: fields can be reassigned, not hashable.

    Caught by check_frozen_and_hashable.
    """

    name = "broken_mutable"
    scale: float = param(1.0, doc="a field, so that assignment can be tried")

    def score(self, params, query, key):
        return _dot(query, key) * self.scale


@attrs.frozen
class BrokenName(Scorer):
    """Its name ends in a digit, so ``bad2`` would read as ``bad`` with the shorthand number 2.

    Caught by check_name_is_valid.
    """

    name = "bad2"

    def score(self, params, query, key):
        return _dot(query, key)


def _percent(value):
    return value / 100  # converts on every construction, also from its own token: not idempotent


@attrs.frozen
class BrokenToken(Scorer):
    """A field whose converter is not idempotent: the token writes the converted 0.5, which
    parses back to 0.005. Caught by check_token_round_trip."""

    name = "broken_token"
    percent: float = param(50, doc="a percentage, stored as a fraction", converter=_percent)

    def score(self, params, query, key):
        return _dot(query, key) * self.percent


@attrs.frozen
class BrokenLenient(Scorer):
    """Overrides ``from_token`` and silently drops parameters it does not know (a typo such as
    ``scael=2`` would be ignored). Caught by check_unknown_parameter_rejected."""

    name = "broken_lenient"

    @classmethod
    def from_token(cls, token, spec=None):
        return cls()

    def score(self, params, query, key):
        return _dot(query, key)


@attrs.frozen
class ImpostorDot(Scorer):
    """Calls itself ``dot``, the built-in's name, so its spec resolves to the built-in class.

    Caught by check_config_round_trip (and save/load): a saved layer would reload as ``Dot``.
    """

    name = "dot"

    def score(self, params, query, key):
        return -_dot(query, key)


# == scorers ====================================================================================
@attrs.frozen
class BrokenShape(Scorer):
    """Returns one score per query, (B, Tq, 1), instead of (B, Tq, Tk).

    Caught by check_score_shape_self and check_score_shape_cross.
    """

    name = "broken_shape"

    def score(self, params, query, key):
        return ops.sum(_dot(query, key), axis=-1, keepdims=True)


@attrs.frozen
class BrokenTransposed(Scorer):
    """Returns (B, Tk, Tq): key-major. Square in self-attention, so only the cross check sees it.

    Caught by check_score_shape_cross (passes check_score_shape_self).
    """

    name = "broken_transposed"

    def score(self, params, query, key):
        return _dot(key, query)


@attrs.frozen
class BrokenNaN(Scorer):
    """The log of a quantity that is always negative: NaN scores everywhere.

    Caught by check_score_finite, check_weights_sum_to_one, check_fully_masked_row_zero and
    check_training_lowers_loss. Not by check_masked_keys_zero: masked weights stay exactly zero
    even then (the softmax divides by 1 where the row total is not > 0).
    """

    name = "broken_nan"

    def score(self, params, query, key):
        return ops.log(-ops.abs(_dot(query, key)) - 1.0)


@attrs.frozen
class BrokenThreshold(Scorer):
    """Hard-threshold "sparse" scores: ``q . k`` where above ``threshold``, ``-inf`` elsewhere.

    With the threshold above every score, queries that see keys get all-zero weights.
    Caught by check_weights_sum_to_one.
    """

    name = "broken_threshold"
    threshold: float = param(100.0, doc="scores at or below it are dropped")

    def score(self, params, query, key):
        scores = _dot(query, key)
        return ops.where(scores > self.threshold, scores, float("-inf"))


@attrs.frozen
class BrokenLazyWeight(Scorer):
    """Creates its weight lazily, on the first ``score()`` (after build), through a host it kept.

    Caught by check_scorer_weights_only_in_build.
    """

    name = "broken_lazy_weight"

    def build(self, layer, query_dim, key_dim):
        _HOSTS[self] = layer
        return {}

    def score(self, params, query, key):
        w = _HOSTS[self].add_weight(
            name="late", shape=(query.shape[-1], key.shape[-1]), initializer="identity"
        )
        return ops.matmul(ops.matmul(query, ops.cast(w, query.dtype)), ops.swapaxes(key, -1, -2))


@attrs.frozen
class BrokenBatchMean(Scorer):
    """Centres the scores over the batch: sample i's scores depend on the other samples.

    Caught by check_batch_independence.
    """

    name = "broken_batch_mean"

    def score(self, params, query, key):
        scores = _dot(query, key)
        return scores - ops.mean(scores, axis=0, keepdims=True)


@attrs.frozen
class BrokenRandom(Scorer):
    """Multiplies the scores by unseeded noise (``keras.random`` with no seed).

    Caught by check_deterministic.
    """

    name = "broken_random"

    def score(self, params, query, key):
        scores = _dot(query, key)
        return scores * (1.0 + 0.1 * keras.random.normal(ops.shape(scores), dtype=scores.dtype))


@attrs.frozen
class BrokenPair(Scorer):
    """Splits into project() and pair(), but pair() forgets the scale that score() applies.

    Caught by check_pair_matches_score (and check_plans_agree: the banded plan uses the split).
    """

    name = "broken_pair"

    def score(self, params, query, key):
        return 0.5 * _dot(query, key)

    def project(self, params, query, key):
        return query, key

    def pair(self, params, query_features, key_features):
        return ops.sum(query_features * key_features, axis=-1)


@attrs.frozen
class BrokenUnusedWeight(Scorer):
    """Builds a ``bias`` weight that ``score()`` never reads (a typo'd params key).

    Caught by check_gradients (the bias gets no gradient).
    """

    name = "broken_unused_weight"

    def build(self, layer, query_dim, key_dim):
        return {
            "scale": layer.add_weight(name="scale", shape=(), initializer="ones"),
            "bias": layer.add_weight(name="bias", shape=(), initializer="zeros"),
        }

    def score(self, params, query, key):
        return _dot(query, key) * params["scale"]  # forgot + params["bias"]


@attrs.frozen
class BrokenPythonFloat(Scorer):
    """Normalises by ``float(max |score|)``: a Python float of a tensor, fine eagerly, impossible
    inside a traced (jit-compiled) function. Caught by check_jit_equals_eager."""

    name = "broken_python_float"

    def score(self, params, query, key):
        scores = _dot(query, key)
        return scores / float(ops.convert_to_numpy(ops.max(ops.abs(scores))))


@attrs.frozen
class BrokenGlobalContext(Scorer):
    """Adds a global context vector, the mean of *all* keys, to every query:
    ``s_ij = (q_i + mean_t k_t) . k_j``. The mean sees the future, the steps outside a window and
    the padding (it divides by the padded length).

    Caught by check_no_future_leak, check_window_respected and check_padding_invariance.
    """

    name = "broken_global_context"

    def score(self, params, query, key):
        return _dot(query + ops.mean(key, axis=1, keepdims=True), key)


@attrs.frozen
class BrokenWherePower(Scorer):
    """``where(d > 0, d ** 0.5, 0)`` with ``d = q . k``: finite forward, but the untaken branch has
    a NaN gradient (0 * NaN), so one training step turns the model's weights into NaN.

    (``ops.power``, not ``ops.sqrt``: TensorFlow's sqrt gradient happens to return 0 for a zero
    upstream gradient, its pow gradient does not; JAX and torch give NaN for both.)
    Caught by check_training_lowers_loss; its forward pass passes check_score_finite.
    """

    name = "broken_where_power"

    def score(self, params, query, key):
        scores = _dot(query, key)
        return ops.where(scores > 0, ops.power(scores, 0.5), ops.zeros_like(scores))


@attrs.frozen
class BrokenCosine(Scorer):
    """Cosine similarity without an epsilon: ``q.k / (|q| |k|)``. The layer zeroes padded steps,
    so a padded key has |k| = 0: its score is 0/0 = NaN. The forward pass hides it (the masked
    softmax replaces masked scores), but the gradient of the division is NaN there, so training
    on padded batches turns the weights into NaN.

    No check catches it: the gradient and training checks train on unpadded data. See the
    FINDING tests in test_conformance.py.
    """

    name = "broken_cosine"

    def build(self, layer, query_dim, key_dim):
        return {"scale": layer.add_weight(name="scale", shape=(), initializer="ones")}

    def score(self, params, query, key):
        q_norm = ops.sqrt(ops.sum(ops.square(query), axis=-1, keepdims=True))
        k_norm = ops.sqrt(ops.sum(ops.square(key), axis=-1, keepdims=True))
        return params["scale"] * _dot(query / q_norm, key / k_norm)


@attrs.frozen
class BrokenVariableInScore(Scorer):
    """Makes its projection with ``keras.Variable`` inside ``score()``, not through the host's
    ``add_weight`` in ``build()``: a fresh variable every call, never among the layer's weights,
    so never trained nor saved.

    Both weights-only-in-build checks catch it: they count the variables made while score()
    and the layer's call run.
    """

    name = "broken_variable_in_score"

    def score(self, params, query, key):
        projection = keras.Variable(keras.initializers.Identity()((query.shape[-1],) * 2))
        projected = ops.matmul(query, ops.cast(projection, query.dtype))
        return _dot(projected, key)


@attrs.frozen
class BrokenUnregistered(Scorer):
    """A correct scaled dot product whose only defect is that no entry point provides it.

    Caught by check_config_round_trip and check_save_load_fresh_process: a saved model could not
    be loaded anywhere.
    """

    name = "broken_unregistered"

    def score(self, params, query, key):
        return _dot(query, key) / math.sqrt(query.shape[-1])


#: The device the fake ``keras.device`` of :func:`simulated_device` last entered (a stack).
_DEVICES = ["cpu"]


@contextlib.contextmanager
def simulated_device(name: str):
    """A stand-in for ``keras.device`` that only records the device (for a CPU-only meta-test)."""
    _DEVICES.append(name.split(":")[0].lower())
    try:
        yield
    finally:
        _DEVICES.pop()


@attrs.frozen
class BrokenGpuPath(Scorer):
    """Scaled dot product whose "fast GPU path" forgets the 1/sqrt(D) scale.

    Caught by check_device_agreement, which only runs on a GPU; the CPU-only meta-test fakes the
    device with :func:`simulated_device` (this scorer reads the fake's record).
    """

    name = "broken_gpu_path"

    def score(self, params, query, key):
        scores = _dot(query, key)
        if _DEVICES[-1] == "gpu":
            return scores
        return scores / math.sqrt(query.shape[-1])


# == masks ======================================================================================
@attrs.frozen
class BrokenLeakyCausal(Mask):
    """Declares causal reach (None, 0) but lets query i see key i + 1.

    Caught by check_mask_reach and check_no_future_leak.
    """

    name = "broken_leaky_causal"

    def allowed(self, q_idx, k_idx):
        return ops.less_equal(k_idx - q_idx, 1)

    def reach(self):
        return (None, 0)


@attrs.frozen
class BrokenBand(Mask):
    """Declares the band (1, 1) but allows |i - j| <= 2.

    Caught by check_mask_reach and check_window_respected.
    """

    name = "broken_band"

    def allowed(self, q_idx, k_idx):
        return ops.less_equal(ops.abs(k_idx - q_idx), 2)

    def reach(self):
        return (1, 1)


@attrs.frozen
class BrokenStaticLength(Mask):
    """Reads the number of keys from the static shape, which is None in a model built on
    ``keras.Input((None, D))``. Caught by check_symbolic_length."""

    name = "broken_static_length"

    def allowed(self, q_idx, k_idx):
        steps = int(k_idx.shape[-1])  # fails when the length is symbolic
        return ops.less(k_idx - q_idx, steps)


@attrs.frozen
class BrokenIntMask(Mask):
    """Returns 0/1 integers instead of booleans. Caught by check_mask_boolean_broadcast."""

    name = "broken_int_mask"

    def allowed(self, q_idx, k_idx):
        return ops.cast(ops.less_equal(k_idx - q_idx, 0), "int32")


@attrs.frozen
class BrokenLayoutMask(Mask):
    """Its window is a third of ``k_idx``'s length: the answer for a pair depends on how the
    grid is laid out, not only on (i, j). Caught by check_mask_pure."""

    name = "broken_layout"

    def allowed(self, q_idx, k_idx):
        width = ops.shape(k_idx)[-1] // 3
        return ops.less_equal(ops.abs(k_idx - q_idx), width)


# == poolings ===================================================================================
@attrs.frozen
class BrokenMeanPool(Pooling):
    """Many-to-one mean of the values over *all* steps, ignoring the padding mask (it divides by
    the padded length). Caught by check_padding_invariance."""

    name = "broken_mean_pool"
    many_to_one = True

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return ops.mean(value, axis=1), weights[:, 0, :]


@attrs.frozen
class BrokenPeekingPool(Pooling):
    """Many to one, asking with the last step only, but adding the first step's value to the
    output: step 0 is outside the last query's window. Caught by check_window_respected."""

    name = "broken_peeking_pool"
    many_to_one = True

    def prepare(self, params, query, key, query_mask):
        last = ops.shape(query)[1] - 1
        positions = ops.reshape(ops.cast(last, "int32"), (1, 1))
        return Prepared(query[:, -1:, :], key, positions, None)

    def pool(self, params, context, weights, prepared, value):
        return context[:, 0, :] + value[:, 0, :], weights[:, 0, :]


@attrs.frozen
class BrokenRenormalize(Pooling):
    """Renormalises the context by its weight total "for safety": 0/0 = NaN on a row that saw
    nothing. Caught by check_fully_masked_row_zero."""

    name = "broken_renormalize"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return context / ops.sum(weights, axis=-1, keepdims=True), weights


@attrs.frozen
class BrokenPositions(Pooling):
    """Reports its query positions one step late (``arange(T) + 1``): the masks then let query i
    see key i + 1. Caught by check_no_future_leak."""

    name = "broken_positions"

    def prepare(self, params, query, key, query_mask):
        prepared = _seq_prepare(query, key, query_mask)
        return attrs.evolve(prepared, positions=prepared.positions + 1)

    def pool(self, params, context, weights, prepared, value):
        return context, weights


@attrs.frozen
class BrokenSmoothedReport(Pooling):
    """Reports "smoothed" attention ``(w + eps) / (1 + Tk eps)``: the weights a user gets back
    from ``return_attention=True`` put eps on padded and masked keys.

    Caught by check_masked_keys_zero, which reads the weights ``return_attention`` returns.
    """

    name = "broken_smoothed_report"
    eps: float = param(1e-3, doc="smoothing added to every weight")

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        steps = ops.cast(ops.shape(weights)[-1], weights.dtype)
        return context, (weights + self.eps) / (1.0 + steps * self.eps)


@attrs.frozen
class BrokenLateWeight(Pooling):
    """Creates a weight on its first call (through the host it kept from build).

    Caught by check_weights_only_in_build.
    """

    name = "broken_late_weight"

    def build(self, layer, query_dim, value_dim):
        _HOSTS[self] = layer
        return {}

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        gain = _HOSTS[self].add_weight(name="gain", shape=(value.shape[-1],), initializer="ones")
        return context * ops.cast(gain, context.dtype), weights


@attrs.frozen
class BrokenFp16Overflow(Pooling):
    """Sharpens its queries by 1e5 in the *input* dtype (``prepare`` sees the compute dtype):
    |q| > 0.66 overflows float16 to inf. Caught by check_mixed_float16."""

    name = "broken_fp16_overflow"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask, q=query * 1e5)

    def pool(self, params, context, weights, prepared, value):
        return context, weights


@attrs.frozen
class BrokenBf16Cancel(Pooling):
    """Shifts its queries by +1000 and back in the *input* dtype: exact in float32, but bfloat16
    keeps 8 bits, so ``(q + 1000) - 1000`` is a multiple of 4. Caught by check_mixed_bfloat16."""

    name = "broken_bf16_cancel"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask, q=(query + 1000.0) - 1000.0)

    def pool(self, params, context, weights, prepared, value):
        return context, weights


# == well-behaved twins =========================================================================
@attrs.frozen
class GoodScorer(Scorer):
    """Dot product times a learned scale: what the broken scorers should have been."""

    name = "meta_scaled_dot"

    def build(self, layer, query_dim, key_dim):
        return {"scale": layer.add_weight(name="scale", shape=(), initializer="ones")}

    def score(self, params, query, key):
        return _dot(query, key) * params["scale"]

    def project(self, params, query, key):
        return query, key

    def pair(self, params, query_features, key_features):
        return ops.sum(query_features * key_features, axis=-1) * params["scale"]


@attrs.frozen
class GoodMask(Mask):
    """A band |i - j| <= 1 with reach (1, 1), honestly declared."""

    name = "meta_band"

    def allowed(self, q_idx, k_idx):
        return ops.less_equal(ops.abs(k_idx - q_idx), 1)

    def reach(self):
        return (1, 1)


@attrs.frozen
class GoodCausal(Mask):
    """``j <= i`` with reach (None, 0)."""

    name = "meta_causal"

    def allowed(self, q_idx, k_idx):
        return ops.less_equal(k_idx - q_idx, 0)

    def reach(self):
        return (None, 0)


@attrs.frozen
class GoodPooling(Pooling):
    """``seq``, written out: every query attends, the output is the context."""

    name = "meta_seq"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return context, weights


@attrs.frozen
class GoodMeanPool(Pooling):
    """Many-to-one mean of the *context* over the valid query steps (padding respected)."""

    name = "meta_mean_pool"
    many_to_one = True

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        if prepared.valid is None:
            return ops.mean(context, axis=1), weights[:, 0, :]
        valid = ops.cast(ops.expand_dims(prepared.valid, -1), context.dtype)
        total = ops.sum(context * valid, axis=1)
        count = ops.sum(valid, axis=1)
        return total / ops.maximum(count, 1.0), weights[:, 0, :]


#: Every broken class, by its spec name.
BROKEN = {
    cls.name: cls
    for cls in (
        BrokenMutable,
        BrokenName,
        BrokenToken,
        BrokenLenient,
        ImpostorDot,
        BrokenShape,
        BrokenTransposed,
        BrokenNaN,
        BrokenThreshold,
        BrokenLazyWeight,
        BrokenBatchMean,
        BrokenRandom,
        BrokenUnusedWeight,
        BrokenPythonFloat,
        BrokenGlobalContext,
        BrokenWherePower,
        BrokenCosine,
        BrokenVariableInScore,
        BrokenUnregistered,
        BrokenGpuPath,
        BrokenLeakyCausal,
        BrokenBand,
        BrokenIntMask,
        BrokenLayoutMask,
        BrokenMeanPool,
        BrokenPeekingPool,
        BrokenRenormalize,
        BrokenPositions,
        BrokenSmoothedReport,
        BrokenLateWeight,
        BrokenFp16Overflow,
        BrokenBf16Cancel,
    )
}
