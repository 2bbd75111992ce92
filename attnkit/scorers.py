"""Built-in scorers: dot, general, additive, concat, bahdanau, gaussian, dense.

Each returns raw scores (B, Tq, Tk) for queries (B, Tq, Dq) and keys (B, Tk, Dk), with
``keras.ops`` only, and is registered through attnkit's own ``attnkit`` entry point.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from keras import ops

from attnkit.components import Scorer, param
from attnkit.energy import aligned_tanh_energy, window_tanh_energy
from attnkit.hookspecs import hookimpl
from attnkit.projection import project

__all__ = ["Additive", "Bahdanau", "Dense", "Dot", "Gaussian", "General"]


def _positive_int(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{attribute.name}' must be a positive integer (got {value!r})")


def _optional_positive_int(instance, attribute, value) -> None:
    if value is not None:
        _positive_int(instance, attribute, value)


def _is_bool(instance, attribute, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be true or false (got {value!r})")


def _to_float(value):
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _positive_float(instance, attribute, value) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be a positive number (got {value!r})")


def _bilinear(a, w, b):
    """(B, Tq, Da) @ W (Da, Db) @ b(B, Tk, Db)^T -> (B, Tq, Tk)."""
    return ops.matmul(ops.matmul(a, w), ops.swapaxes(b, -1, -2))


def _additive_energy(q_proj, k_proj, w_out):
    """sum_u w_out[u] * tanh(q_proj[:, i, u] + k_proj[:, j, u]) for every (i, j)."""
    pre = ops.expand_dims(q_proj, 2) + ops.expand_dims(k_proj, 1)
    return ops.squeeze(ops.matmul(ops.tanh(pre), w_out), -1)


def _check_scale(instance, attribute, value) -> None:
    if value is None or value in ("sqrt", "learned"):
        return
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        return
    raise ValueError(
        f"'scale' must be one of none, sqrt, learned or a positive number (got {value!r})"
    )


@attrs.frozen
class Dot(Scorer):
    """Dot-product scores: ``s_ij = scale * q_i . k_j``.

    ``scale``: ``none`` (1, as ``keras.layers.Attention()``), ``sqrt`` (1/sqrt(D), as
    keras-self-attention's ``ScaledDotProductAttention``), ``learned`` (a scalar initialised to 1,
    as ``keras.layers.Attention(use_scale=True)``) or a fixed positive number.
    """

    name = "dot"
    scale: Any = param(
        None,
        doc="none | sqrt | learned | a positive number",
        converter=_to_float,
        validator=_check_scale,
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
    use_bias: bool = param(False, doc="add a learned scalar b", validator=_is_bool)

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
class Additive(Scorer):
    """Additive scores: ``s_ij = w_a . tanh(W_q q_i + W_k k_j + b_h) + b_a``.

    W_q (Dq, units), W_k (Dk, units), b_h (units,), w_a (units, 1), b_a (1,). The formula and
    defaults of keras-self-attention's ``SeqSelfAttention`` (its W_t, W_x, b_h, W_a, b_a).
    """

    name = "additive"
    units: int = param(32, doc="hidden size of the tanh layer", validator=_positive_int)
    use_additive_bias: bool = param(True, doc="b_h inside the tanh", validator=_is_bool)
    use_attention_bias: bool = param(
        True, doc="scalar b_a added to every score", validator=_is_bool
    )

    def build(self, layer, query_dim, key_dim):
        params = {
            "w_q": layer.add_weight(
                name="w_q", shape=(query_dim, self.units), initializer="glorot_normal"
            ),
            "w_k": layer.add_weight(
                name="w_k", shape=(key_dim, self.units), initializer="glorot_normal"
            ),
        }
        if self.use_additive_bias:
            params["b_h"] = layer.add_weight(name="b_h", shape=(self.units,), initializer="zeros")
        params["w_a"] = layer.add_weight(
            name="w_a", shape=(self.units, 1), initializer="glorot_normal"
        )
        if self.use_attention_bias:
            params["b_a"] = layer.add_weight(name="b_a", shape=(1,), initializer="zeros")
        return params

    def pair_width(self, query_dim, key_dim):
        return self.units

    def score(self, params, query, key):
        q_proj, k_proj = self.project(params, query, key)
        scores = _additive_energy(q_proj, k_proj, params["w_a"])
        return scores + params["b_a"] if self.use_attention_bias else scores

    def project(self, params, query, key):
        bias = params["b_h"] if self.use_additive_bias else None
        return project(query, params["w_q"], bias), project(key, params["w_k"])

    def pair(self, params, query_features, key_features):
        scores = aligned_tanh_energy(query_features, key_features, params["w_a"][:, 0])
        return scores + params["b_a"] if self.use_attention_bias else scores

    def window(self, params, query_features, key_features, width):
        scores = window_tanh_energy(query_features, key_features, params["w_a"][:, 0], width)
        return scores + params["b_a"] if self.use_attention_bias else scores


@attrs.frozen
class Bahdanau(Scorer):
    """Bahdanau scores: ``s_ij = v . tanh(W_1 q_i + W_2 k_j)``, no biases.

    W_1 (Dq, units), W_2 (Dk, units), v (units, 1); ``units`` defaults to Dq. The ``attention``
    package's ``score='bahdanau'`` (its ``bahdanau_w1``, ``bahdanau_w2``, ``bahdanau_v``).
    """

    name = "bahdanau"
    units: int | None = param(
        None, doc="hidden size (default: the query size)", validator=_optional_positive_int
    )

    def build(self, layer, query_dim, key_dim):
        units = self.units or query_dim
        return {
            "w_1": layer.add_weight(
                name="w_1", shape=(query_dim, units), initializer="glorot_uniform"
            ),
            "w_2": layer.add_weight(
                name="w_2", shape=(key_dim, units), initializer="glorot_uniform"
            ),
            "v": layer.add_weight(name="v", shape=(units, 1), initializer="glorot_uniform"),
        }

    def pair_width(self, query_dim, key_dim):
        return self.units or query_dim

    def score(self, params, query, key):
        return _additive_energy(*self.project(params, query, key), params["v"])

    def project(self, params, query, key):
        return project(query, params["w_1"]), project(key, params["w_2"])

    def pair(self, params, query_features, key_features):
        return aligned_tanh_energy(query_features, key_features, params["v"][:, 0])

    def window(self, params, query_features, key_features, width):
        return window_tanh_energy(query_features, key_features, params["v"][:, 0], width)


@attrs.frozen
class Concat(Scorer):
    """Projection-free additive scores: ``s_ij = sum_d g_d tanh(q_id + k_jd)``.

    g (D,) is learned, initialised glorot-uniform (``use_scale=true``), or 1. The formula of
    ``keras.layers.AdditiveAttention(use_scale=...)``; queries and keys need the same size
    (project them first, as Keras asks, or use ``additive``).
    """

    name = "concat"
    use_scale: bool = param(True, doc="learned per-feature scale g", validator=_is_bool)

    @classmethod
    def examples(cls):
        return [cls(), cls(use_scale=False)]

    def build(self, layer, query_dim, key_dim):
        if query_dim != key_dim:
            raise ValueError(
                f"scorer 'concat' needs queries and keys of the same size; got "
                f"query_dim={query_dim}, key_dim={key_dim}. Use 'additive', which projects them."
            )
        if self.use_scale:
            return {
                "scale": layer.add_weight(
                    name="scale", shape=(query_dim,), initializer="glorot_uniform"
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
        hidden = ops.tanh(query_features + key_features)
        if self.use_scale:
            hidden = hidden * params["scale"]
        return ops.sum(hidden, axis=-1)


@attrs.frozen
class Gaussian(Scorer):
    """Gaussian-kernel scores (Nadaraya-Watson): ``s_ij = -||q_i - k_j||^2 / (2 sigma^2)``.

    ``sigma``: a fixed positive width, or ``none`` for a learned one,
    ``sigma = softplus(rho) + 1e-6`` with rho initialised so that sigma starts at 1. The squared
    distance is ``||q||^2 + ||k||^2 - 2 q.k`` clamped at 0, computed in float32 or wider.
    """

    name = "gaussian"
    sigma: float | None = param(
        None,
        doc="kernel width; none = learned",
        converter=_to_float,
        validator=attrs.validators.optional(_positive_float),
    )

    def build(self, layer, query_dim, key_dim):
        if query_dim != key_dim:
            raise ValueError(
                f"scorer 'gaussian' needs queries and keys of the same size; got "
                f"query_dim={query_dim}, key_dim={key_dim}"
            )
        if self.sigma is None:
            rho = math.log(math.expm1(1.0))  # softplus(rho) == 1
            return {"rho": layer.add_weight(name="rho", shape=(), initializer=_constant(rho))}
        return {}

    def score(self, params, query, key):
        q_sq = ops.sum(ops.square(query), axis=-1, keepdims=True)  # (B, Tq, 1)
        k_sq = ops.expand_dims(ops.sum(ops.square(key), axis=-1), 1)  # (B, 1, Tk)
        cross = ops.matmul(query, ops.swapaxes(key, -1, -2))
        return self._kernel(params, ops.maximum(q_sq + k_sq - 2.0 * cross, 0.0))

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
    use_bias: bool = param(True, doc="bias b", validator=_is_bool)

    conformance_spec = "{}+gate"
    fixed_length = True

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


def _constant(value: float):
    import keras

    return keras.initializers.Constant(value)


@hookimpl
def attnkit_add_components():
    return [Dot, General, Additive, Concat, Bahdanau, Gaussian, Dense]
