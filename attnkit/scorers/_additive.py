"""Additive scorers: a tanh layer over every (query, key) pair, ``additive``, ``bahdanau`` and
``concat``. Each returns raw scores (B, Tq, Tk) for queries (B, Tq, Dq) and keys (B, Tk, Dk),
with ``keras.ops`` only; their kernels (the projections and the window's tanh energy, with
hand-written gradients) live beside them."""

from __future__ import annotations

import attrs
from keras import ops

from attnkit.components import Scorer, param
from attnkit.scorers._params import is_bool, optional_positive_int, positive_int
from attnkit.scorers._projection import project
from attnkit.scorers._tanh_energy import aligned_tanh_energy, window_tanh_energy

__all__ = ["Additive", "Bahdanau", "Concat"]


def _additive_energy(q_proj, k_proj, w_out):
    """sum_u w_out[u] * tanh(q_proj[:, i, u] + k_proj[:, j, u]) for every (i, j)."""
    pre = ops.expand_dims(q_proj, 2) + ops.expand_dims(k_proj, 1)
    return ops.squeeze(ops.matmul(ops.tanh(pre), w_out), -1)


@attrs.frozen
class Additive(Scorer):
    """Additive scores: ``s_ij = w_a . tanh(W_q q_i + W_k k_j + b_h) + b_a``.

    W_q (Dq, units), W_k (Dk, units), b_h (units,), w_a (units, 1), b_a (1,). The formula and
    defaults of keras-self-attention's ``SeqSelfAttention`` (its W_t, W_x, b_h, W_a, b_a).
    """

    name = "additive"
    units: int = param(32, doc="hidden size of the tanh layer", validator=positive_int)
    use_additive_bias: bool = param(True, doc="b_h inside the tanh", validator=is_bool)
    use_attention_bias: bool = param(True, doc="scalar b_a added to every score", validator=is_bool)

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
        None, doc="hidden size (default: the query size)", validator=optional_positive_int
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
    use_scale: bool = param(True, doc="learned per-feature scale g", validator=is_bool)

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
