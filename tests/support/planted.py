"""Planted defects that only show at the sizes, plans and magnitudes users run: each breaks one
promise in a way the suite's small grids and short sequences never show, and names the check
that must catch it. Their well-behaved twins, where ``broken.py`` has none of the right shape,
are at the end. Like ``broken.py``'s, none is registered anywhere.
"""

from __future__ import annotations

import math

import attrs
from keras import ops

from attnkit.components import Mask, Pooling, Scorer

__all__ = [
    "PLANTED",
    "BrokenBatchMixPool",
    "BrokenBiasedSeq",
    "BrokenDotScale",
    "BrokenGradient",
    "BrokenKernelForm",
    "BrokenLateFuture",
    "BrokenKeyCount",
    "BrokenLateLeak",
    "BrokenOutputSize",
    "BrokenOverflow",
    "BrokenPowerPool",
    "BrokenSizeDependent",
    "BrokenVeryLateLeak",
    "BrokenWindow",
    "BrokenWindowGradient",
    "GoodDotScale",
    "GoodKernelCausal",
    "GoodOutputSize",
]


def _dot(query, key):
    return ops.matmul(query, ops.swapaxes(key, -1, -2))


def _band(q_idx, k_idx):
    return ops.less_equal(ops.abs(k_idx - q_idx), 1)


# == masks ========================================================================================
@attrs.frozen
class BrokenLateLeak(Mask):
    """A band |i - j| <= 1 with reach (1, 1), except that from query 600 on it also allows key
    i - 5: right on every grid up to 600 steps. Caught by check_mask_reach on its 1024-step
    grid."""

    name = "planted_late_leak"

    def allowed(self, q_idx, k_idx):
        late = ops.logical_and(ops.greater_equal(q_idx, 600), ops.equal(k_idx, q_idx - 5))
        return ops.logical_or(_band(q_idx, k_idx), late)

    def reach(self):
        return (1, 1)


@attrs.frozen
class BrokenVeryLateLeak(Mask):
    """:class:`BrokenLateLeak`'s defect from query 40000 on: right on every row of a 1024-step
    grid. Caught by check_mask_reach's sampled rows of 65536 steps."""

    name = "planted_very_late_leak"

    def allowed(self, q_idx, k_idx):
        late = ops.logical_and(ops.greater_equal(q_idx, 40000), ops.equal(k_idx, q_idx - 5))
        return ops.logical_or(_band(q_idx, k_idx), late)

    def reach(self):
        return (1, 1)


@attrs.frozen
class BrokenSizeDependent(Mask):
    """A band that widens to |i - j| <= 2 when asked about more than 2000 keys at once: its
    answer for a pair depends on the grid it is asked in. Caught by check_mask_pure on long
    grids (and its reach (2, 2) stays honest)."""

    name = "planted_size_dependent"

    def allowed(self, q_idx, k_idx):
        wide = math.prod(d or 1 for d in k_idx.shape) > 2000  # the grid's size, a Python int
        return ops.less_equal(ops.abs(k_idx - q_idx), 2 if wide else 1)

    def reach(self):
        return (2, 2)


@attrs.frozen
class BrokenLateFuture(Mask):
    """``j <= i`` with reach (None, 0), except that from query 20 on it also allows the next
    key: a future leak no sequence of seven steps shows. Caught by check_no_future_leak at the
    suite's long length (and check_mask_reach)."""

    name = "planted_late_future"

    def allowed(self, q_idx, k_idx):
        late = ops.logical_and(ops.greater_equal(q_idx, 20), ops.equal(k_idx, q_idx + 1))
        return ops.logical_or(ops.less_equal(k_idx - q_idx, 0), late)

    def reach(self):
        return (None, 0)


@attrs.frozen
class BrokenKernelForm(Mask):
    """Declares the ``causal`` kernel form, but from query 2000 on it sees only the last 100
    keys (allowing less than it declares reach for, so its reach is honest). The kernel plan
    would apply plain causality. Caught by check_mask_kernel_form."""

    name = "planted_kernel_form"

    def allowed(self, q_idx, k_idx):
        past = ops.less_equal(k_idx - q_idx, 0)
        window = ops.logical_or(ops.less(q_idx, 2000), ops.greater(k_idx, q_idx - 100))
        return ops.logical_and(past, window)

    def reach(self):
        return (None, 0)

    def kernel_form(self):
        return "causal"


# == scorers ======================================================================================
@attrs.frozen
class BrokenOverflow(Scorer):
    """``exp(q . k)``: finite for the suite's 4 features in [-1.5, 1.5], infinite in float32 for
    64 features at three times unit-normal. Caught by check_score_finite and
    check_realistic_magnitudes."""

    name = "planted_overflow"

    def score(self, params, query, key):
        return ops.exp(_dot(query, key))


@attrs.frozen
class BrokenDotScale(Scorer):
    """Scores ``2 q . k`` but declares ``dot_scale() = 1``: the kernel plan computes other
    numbers than every other plan. Caught by check_plans_agree with the kernel plan forced."""

    name = "planted_dot_scale"

    def score(self, params, query, key):
        return 2.0 * _dot(query, key)

    def dot_scale(self, params, query_dim):
        return 1.0


@attrs.frozen
class BrokenKeyCount(Scorer):
    """``q . k x 16 / Tk``: a score that depends on how many keys it is handed, which one
    chunked block of the suite's seven steps never shows. Caught by check_plans_agree on
    several blocks."""

    name = "planted_key_count"

    def score(self, params, query, key):
        count = ops.cast(ops.shape(key)[1], query.dtype)
        return _dot(query, key) * (16.0 / count)


@attrs.frozen
class _SplitDot(Scorer):
    """A dot product split into project() (the inputs as they are) and pair(); the planted
    window scorers below differ only in their window()."""

    name = "planted_split_dot"

    def score(self, params, query, key):
        return _dot(query, key)

    def project(self, params, query, key):
        return query, key

    def pair(self, params, query_features, key_features):
        return ops.sum(query_features * key_features, axis=-1)


@attrs.frozen
class BrokenWindow(_SplitDot):
    """A dot product whose ``window()`` scores each query against the window one step further
    on: ``pair()`` and ``score()`` agree, the banded plan would not. Caught by
    check_window_matches_pair."""

    name = "planted_window"

    def window(self, params, query_features, key_features, width):
        steps = ops.shape(query_features)[1]
        shifted = ops.pad(key_features[:, 1:], [(0, 0), (0, 1), (0, 0)])
        return ops.stack(
            [self.pair(params, query_features, shifted[:, o : o + steps]) for o in range(width)],
            axis=-1,
        )


@attrs.frozen
class BrokenWindowGradient(_SplitDot):
    """A dot product whose ``window()`` has the right values and a hand-written gradient that
    forgets the keys. Caught by check_window_matches_pair's gradients."""

    name = "planted_window_gradient"

    def window(self, params, query_features, key_features, width):
        steps = ops.shape(query_features)[1]

        @ops.custom_gradient
        def scores(q, k):
            value = ops.stack(
                [ops.sum(q * k[:, o : o + steps], axis=-1) for o in range(width)], axis=-1
            )

            def grad(*args, upstream=None):
                if upstream is None:  # TensorFlow and JAX pass the cotangent alone
                    (upstream,) = args
                d_q = sum(upstream[..., o : o + 1] * k[:, o : o + steps] for o in range(width))
                return d_q, ops.zeros_like(k)

            return value, grad

        return scores(query_features, key_features)


@attrs.frozen
class BrokenGradient(Scorer):
    """``q . k`` with a hand-written gradient that doubles the queries' part. Every output is
    right and every weight moves; caught by check_gradients_match_finite_differences."""

    name = "planted_gradient"

    def score(self, params, query, key):
        @ops.custom_gradient
        def scores(q, k):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return 2.0 * ops.matmul(upstream, k), ops.matmul(ops.swapaxes(upstream, -1, -2), q)

            return _dot(q, k), grad

        return scores(query, key)


# == poolings =====================================================================================
def _seq_prepare(query, key, query_mask):
    from attnkit.components import Prepared

    positions = ops.expand_dims(ops.arange(ops.shape(query)[1], dtype="int32"), 0)
    return Prepared(query, key, positions, query_mask)


@attrs.frozen
class BrokenBatchMixPool(Pooling):
    """``seq`` plus a tenth of the batch's mean context: each sample's output depends on the
    others. Caught by check_pooling_batch_independence."""

    name = "planted_batch_mix"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return context + 0.1 * ops.mean(context, axis=0, keepdims=True), weights


@attrs.frozen
class BrokenBiasedSeq(Pooling):
    """``seq`` plus one everywhere, the padded steps included. Caught by
    check_pooling_zeroes_padded_queries."""

    name = "planted_biased_seq"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return context + 1.0, weights


@attrs.frozen
class BrokenPowerPool(Pooling):
    """``seq`` raised to the 31st power: finite for contexts within [-1.5, 1.5], infinite in
    float32 about an offset of 30. Caught by check_realistic_magnitudes."""

    name = "planted_power"

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return ops.power(context, 31), weights


# == well-behaved twins ===========================================================================
@attrs.frozen
class GoodKernelCausal(Mask):
    """``j <= i`` with reach (None, 0) and the ``causal`` kernel form, all honest."""

    name = "planted_good_causal"

    def allowed(self, q_idx, k_idx):
        return ops.less_equal(k_idx - q_idx, 0)

    def reach(self):
        return (None, 0)

    def kernel_form(self):
        return "causal"


@attrs.frozen
class GoodDotScale(Scorer):
    """Scores ``2 q . k`` and declares ``dot_scale() = 2``."""

    name = "planted_good_dot_scale"

    def score(self, params, query, key):
        return 2.0 * _dot(query, key)

    def dot_scale(self, params, query_dim):
        return 2.0


#: Every planted defect, by its spec name.
@attrs.frozen
class BrokenOutputSize(Pooling):
    """``seq`` projected to 5 features, without saying so in ``output_size()``: right alone,
    where nothing asks for the size, wrong under heads, whose output projection is built from
    it. Caught by check_heads."""

    name = "planted_output_size"

    def build(self, layer, query_dim, value_dim):
        return {"w_o": layer.add_weight(name="w_o", shape=(value_dim, 5))}

    def prepare(self, params, query, key, query_mask):
        return _seq_prepare(query, key, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return ops.matmul(context, params["w_o"]), weights


@attrs.frozen
class GoodOutputSize(BrokenOutputSize):
    """The same projection, declared."""

    name = "planted_output_size_declared"

    def output_size(self, query_dim, value_dim):
        return 5


PLANTED = {
    cls.name: cls
    for cls in (
        BrokenLateLeak,
        BrokenVeryLateLeak,
        BrokenSizeDependent,
        BrokenLateFuture,
        BrokenKernelForm,
        BrokenOverflow,
        BrokenDotScale,
        BrokenKeyCount,
        BrokenWindow,
        BrokenWindowGradient,
        BrokenGradient,
        BrokenBatchMixPool,
        BrokenBiasedSeq,
        BrokenPowerPool,
        BrokenOutputSize,
    )
}
