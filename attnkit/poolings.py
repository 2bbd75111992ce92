"""Built-in poolings: seq (one output per step), last, weighted (many-to-one), gate.

A pooling chooses the queries that attend (:meth:`prepare`) and shapes the output (:meth:`pool`).
"""

from __future__ import annotations

import attrs
from keras import ops

from attnkit.components import Pooling, Prepared, param
from attnkit.hookspecs import hookimpl

__all__ = ["Gate", "Last", "Seq", "Weighted"]


def _optional_units(instance, attribute, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"'{attribute.name}' must be a positive integer or none (got {value!r})")


def _last_valid(query, query_mask):
    """(index (B,), valid (B,) or None) of each sample's last non-padding step; index is -1
    where there is none (every step padded, or no step at all).

    ``last_b + 1 = sum_t any(mask[b, t:])``: sums, because max and argmax over an empty axis
    (zero steps, or zero samples on torch) raise instead of returning the identity.
    """
    batch, steps = ops.shape(query)[0], ops.shape(query)[1]
    if query_mask is None:
        return ops.full((batch,), steps - 1, dtype="int32"), None
    later = ops.flip(ops.cumsum(ops.flip(ops.cast(query_mask, "int32"), axis=1), axis=1), axis=1)
    last = ops.sum(ops.cast(ops.greater(later, 0), "int32"), axis=1) - 1
    return last, ops.greater_equal(last, 0)


def _step(sequence, index):
    """``sequence[b, index[b]]`` (B, D), zeros where the index is -1.

    A where-sum, not ``take_along_axis``: an index of -1 or an empty time axis is then no error
    on any backend, and a NaN at another step stays out (``0 * NaN`` would not).
    """
    steps = ops.arange(ops.shape(sequence)[1], dtype="int32")
    pick = ops.equal(ops.expand_dims(steps, 0), ops.expand_dims(index, 1))
    chosen = ops.where(ops.expand_dims(pick, -1), sequence, ops.cast(0, sequence.dtype))
    return ops.sum(chosen, axis=1)


def _one_query_prepared(query, key, query_mask, q):
    index, valid = _last_valid(query, query_mask)
    # A sample with no valid step asks from position 0; its output is zeroed (valid False).
    position = ops.expand_dims(ops.maximum(index, 0), 1)
    return Prepared(q, key, position, None if valid is None else ops.expand_dims(valid, 1))


def _zero_invalid(output, prepared):
    if prepared.valid is None:
        return output
    return ops.where(prepared.valid, output, ops.zeros_like(output))


@attrs.frozen
class Seq(Pooling):
    """Sequence to sequence: every query step attends, ``y_i = sum_j a_ij v_j``; output
    (B, Tq, Dv) carrying the query mask. keras-self-attention's ``SeqSelfAttention``."""

    name = "seq"
    aligned = True

    def prepare(self, params, query, key, query_mask):
        positions = ops.expand_dims(ops.arange(ops.shape(query)[1], dtype="int32"), 0)
        return Prepared(query, key, positions, query_mask)

    def pool(self, params, context, weights, prepared, value):
        return context, weights


@attrs.frozen
class Last(Pooling):
    """Many to one, asking with the last valid step h_t: ``c = sum_s a_s h_s`` with
    ``a = softmax_s(score(h_t, h_s))``; output c (B, Dv), or ``tanh(W_c [c; h_t])`` (B, units)
    when ``units`` is set. The ``attention`` package's ``Attention(units, score=...)``.
    """

    name = "last"
    many_to_one = True
    units: int | None = param(
        None, doc="size of the tanh(W_c [c; h_t]) output; none = c", validator=_optional_units
    )

    @classmethod
    def examples(cls):
        return [cls(), cls(units=4)]

    def build(self, layer, query_dim, value_dim):
        if self.units is None:
            return {}
        return {
            "w_c": layer.add_weight(
                name="w_c", shape=(value_dim + query_dim, self.units), initializer="glorot_uniform"
            )
        }

    def output_size(self, query_dim, value_dim):
        return value_dim if self.units is None else self.units

    def prepare(self, params, query, key, query_mask):
        index, _ = _last_valid(query, query_mask)
        h_t = ops.expand_dims(_step(query, index), 1)
        return _one_query_prepared(query, key, query_mask, h_t)

    def pool(self, params, context, weights, prepared, value):
        output = context[:, 0, :]
        if self.units is not None:
            h_t = ops.cast(prepared.query[:, 0, :], output.dtype)
            output = ops.tanh(
                ops.matmul(
                    ops.concatenate([output, h_t], axis=-1), ops.cast(params["w_c"], output.dtype)
                )
            )
        return _zero_invalid(output, prepared), weights[:, 0, :]


@attrs.frozen
class Weighted(Pooling):
    """Many to one with a learned query vector w: ``a = softmax_t(score(w, x_t))``,
    ``y = sum_t a_t x_t`` (B, Dv). With ``dot`` this is keras-self-attention's
    ``SeqWeightedAttention`` (its bias b shifts every logit equally, so it cancels).
    """

    name = "weighted"
    many_to_one = True
    reads_query = False

    def build(self, layer, query_dim, value_dim):
        return {"query": layer.add_weight(name="query", shape=(query_dim,), initializer="uniform")}

    def prepare(self, params, query, key, query_mask):
        vector = ops.reshape(params["query"], (1, 1, -1))  # stays in the scoring dtype
        q = ops.broadcast_to(vector, (ops.shape(query)[0], 1, ops.shape(vector)[-1]))
        return _one_query_prepared(query, key, query_mask, q)

    def pool(self, params, context, weights, prepared, value):
        return _zero_invalid(context[:, 0, :], prepared), weights[:, 0, :]


@attrs.frozen
class Gate(Pooling):
    """The old Keras "attention block": weights multiply the input instead of summing it.

    2-D input x (B, D): ``p = softmax(score over the D features)``, output ``x * p`` (B, D).
    3-D input x (B, T, D): for each feature d a distribution over the T steps computed from
    that feature's time series, output ``x[t, d] * p[d, t]`` (B, T, D); ``shared=true`` averages
    the D distributions into one. Use with the ``dense`` scorer: ``"dense+gate"``.
    """

    name = "gate"
    accepts_masks = False
    uses_context = False
    input_ranks = (2, 3)
    shared: bool = param(
        False,
        doc="one distribution over time shared by all features",
        validator=attrs.validators.instance_of(bool),
    )

    conformance_spec = "dense+{}"
    fixed_length = True

    def dims(self, query_shape, key_shape):
        if len(query_shape) == 2:
            return query_shape[-1], 1
        if query_shape[1] is None:
            raise ValueError(
                "pooling 'gate' on a 3-D input needs a fixed number of time steps; "
                f"got input shape {tuple(query_shape)}"
            )
        return query_shape[1], key_shape[-1]

    def prepare(self, params, query, key, query_mask):
        if len(query.shape) == 2:
            q, k = ops.expand_dims(query, 1), ops.expand_dims(key, -1)
        else:
            q, k = ops.swapaxes(query, 1, 2), key
        positions = ops.expand_dims(ops.arange(ops.shape(q)[1], dtype="int32"), 0)
        return Prepared(q, k, positions, None)

    def pool(self, params, context, weights, prepared, value):
        if len(value.shape) == 2:
            report = weights[:, 0, :]
            return value * ops.cast(report, value.dtype), report
        if self.shared:
            weights = ops.mean(weights, axis=1, keepdims=True)
        report = ops.swapaxes(weights, 1, 2)  # (B, T, D or 1)
        report = ops.broadcast_to(report, ops.shape(value))
        return value * ops.cast(report, value.dtype), report


@hookimpl
def attnkit_add_components():
    return [Seq, Last, Weighted, Gate]
