"""Scorers that are products and distances of the queries and keys: ``dot``, ``general``,
``gaussian`` and ``dense``. Each returns raw scores (B, Tq, Tk) for queries (B, Tq, Dq) and keys
(B, Tk, Dk), with ``keras.ops`` only."""

from __future__ import annotations

import math
from typing import Any

import attrs
import keras
from keras import ops

from attnkit.components import Scorer, param
from attnkit.scorers._params import check_scale, is_bool, sigma_in_range, to_float

__all__ = ["Dense", "Dot", "Gaussian", "General"]


def _bilinear(a, w, b):
    """(B, Tq, Da) @ W (Da, Db) @ b(B, Tk, Db)^T -> (B, Tq, Tk)."""
    return ops.matmul(ops.matmul(a, w), ops.swapaxes(b, -1, -2))


@attrs.frozen
class Dot(Scorer):
    """Dot-product scores: ``s_ij = scale * q_i . k_j``.

    ``scale``: ``none`` (1, as ``keras.layers.Attention()``), ``sqrt`` (1/sqrt(D), as
    keras-self-attention's ``ScaledDotProductAttention``), ``learned`` (a scalar initialised to 1,
    as ``keras.layers.Attention(use_scale=True)``) or a fixed number from 1e-12 to 1e12.
    """

    name = "dot"
    scale: Any = param(
        None,
        doc="none | sqrt | learned | a number from 1e-12 to 1e12",
        converter=to_float,
        validator=check_scale,
    )

    @classmethod
    def examples(cls):
        return [cls(), cls(scale="learned")]

    def build(self, layer, query_dim, key_dim):
        if query_dim != key_dim:
            raise ValueError(
                f"scorer 'dot' needs queries and keys of the same size; got query_dim={query_dim}, "
                f"key_dim={key_dim}. Use 'general' (q^T W k) for different sizes."
            )
        if self.scale == "learned":
            return {"scale": layer.add_weight(name="scale", shape=(), initializer="ones")}
        return {}

    def dot_scale(self, params, query_dim):
        if self.scale == "learned":
            return params["scale"]
        if self.scale == "sqrt":
            return 1.0 / float(query_dim) ** 0.5
        return 1.0 if self.scale is None else float(self.scale)

    def score(self, params, query, key):
        return self._scaled(params, ops.matmul(query, ops.swapaxes(key, -1, -2)), query)

    def project(self, params, query, key):
        return query, key

    def pair(self, params, query_features, key_features):
        products = ops.sum(query_features * key_features, axis=-1)
        return self._scaled(params, products, query_features)

    def _scaled(self, params, scores, query):
        if self.scale == "learned":
            return scores * params["scale"]
        if self.scale == "sqrt":
            return scores / ops.sqrt(ops.cast(ops.shape(query)[-1], scores.dtype))
        if self.scale is None:
            return scores
        return scores * self.scale


@attrs.frozen
class General(Scorer):
    """Luong's general (multiplicative) scores: ``s_ij = q_i^T W k_j (+ b)``.

    W is (Dq, Dk). Matches keras-self-attention ``attention_type='multiplicative'`` (its W_a,
    b_a) and the ``attention`` package's ``score='luong'`` (whose W is this W transposed).
    """

    name = "general"
    use_bias: bool = param(False, doc="add a learned scalar b", validator=is_bool)

    @classmethod
    def examples(cls):
        return [cls(use_bias=True)]

    def build(self, layer, query_dim, key_dim):
        params = {
            "w": layer.add_weight(name="w", shape=(query_dim, key_dim), initializer="glorot_normal")
        }
        if self.use_bias:
            params["b"] = layer.add_weight(name="b", shape=(1,), initializer="zeros")
        return params

    def score(self, params, query, key):
        scores = _bilinear(query, params["w"], key)
        return scores + params["b"] if self.use_bias else scores

    def project(self, params, query, key):
        return ops.matmul(query, params["w"]), key

    def pair(self, params, query_features, key_features):
        scores = ops.sum(query_features * key_features, axis=-1)
        return scores + params["b"] if self.use_bias else scores


@attrs.frozen
class Gaussian(Scorer):
    """Gaussian-kernel scores (Nadaraya-Watson): ``s_ij = -||q_i - k_j||^2 / (2 sigma^2)``.

    ``sigma``: a fixed width from 1e-6 to 1e6, or ``none`` for a learned one,
    ``sigma = softplus(rho) + 1e-6`` with rho initialised so that sigma starts at 1.

    The squared distance is summed from the differences, ``sum_d (q_d - k_d)^2``, for every
    pair at once as for a window of pairs (:meth:`pair`), in float32 or wider. The expansion
    ``||q||^2 + ||k||^2 - 2 q.k`` would be one matmul, but it cancels catastrophically when the
    features share a large offset, and no centring that depends on the data keeps a query
    blind to the keys it may not see. So the scorer holds D floats per pair
    (:meth:`pair_width`), and the plans size their blocks by it.
    """

    name = "gaussian"
    sigma: float | None = param(
        None,
        doc="kernel width from 1e-6 to 1e6; none = learned",
        converter=to_float,
        validator=attrs.validators.optional(sigma_in_range),
    )

    def build(self, layer, query_dim, key_dim):
        if query_dim != key_dim:
            raise ValueError(
                f"scorer 'gaussian' needs queries and keys of the same size; got "
                f"query_dim={query_dim}, key_dim={key_dim}"
            )
        if self.sigma is None:
            rho = math.log(math.expm1(1.0))  # softplus(rho) == 1
            return {
                "rho": layer.add_weight(
                    name="rho", shape=(), initializer=keras.initializers.Constant(rho)
                )
            }
        return {}

    def pair_width(self, query_dim, key_dim):
        return query_dim

    def score(self, params, query, key):
        return self.pair(params, ops.expand_dims(query, 2), ops.expand_dims(key, 1))

    def project(self, params, query, key):
        return query, key

    def pair(self, params, query_features, key_features):
        return self._kernel(params, ops.sum(ops.square(query_features - key_features), axis=-1))

    def _kernel(self, params, distance):
        if self.sigma is None:
            sigma = ops.softplus(params["rho"]) + 1e-6
            return -distance / (2.0 * ops.square(sigma))
        return distance * (-0.5 / self.sigma**2)  # a Python float keeps distance's dtype


@attrs.frozen
class Dense(Scorer):
    """Position scores from a dense layer, the old Keras "attention block":
    ``s_ij = (q_i W)_j + b_j`` with W (Dq, Dq), so there are as many keys as query features.

    Paired with the ``gate`` pooling: on a 2-D input (B, D) the query is the whole vector and the
    keys are its D features (``softmax(Dense(D)(x)) * x``); on a 3-D input (B, T, D) each feature's
    time series is a query and the keys are the T steps (``Dense(T, softmax)`` over time).
    """

    name = "dense"
    use_bias: bool = param(True, doc="bias b", validator=is_bool)

    conformance_spec = "{}+gate"
    fixed_length = True
    positional = True

    def build(self, layer, query_dim, key_dim):
        params = {
            "w": layer.add_weight(
                name="w", shape=(query_dim, query_dim), initializer="glorot_uniform"
            )
        }
        if self.use_bias:
            params["b"] = layer.add_weight(name="b", shape=(query_dim,), initializer="zeros")
        return params

    def score(self, params, query, key):
        scores = ops.matmul(query, params["w"])
        return scores + params["b"] if self.use_bias else scores
