"""attnkit-cosine: a cosine-similarity scorer for attnkit, found through an entry point.

After ``pip install attnkit-cosine`` the spec ``"cosine(temperature=0.1)+causal"`` works in
:class:`attnkit.AttentionLayer`; nothing in attnkit changes. The module is the plugin: attnkit
reads ``[project.entry-points.attnkit] cosine = "attnkit_cosine"`` and calls
:func:`attnkit_add_components`.
"""

from __future__ import annotations

import math

import attrs
from keras import ops

import attnkit

__all__ = ["EPS", "Cosine", "attnkit_add_components"]

#: Floor of a vector's norm: a zero query or key scores 0 against everything, never NaN.
EPS = 1e-6


def _to_float(value):
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _positive_finite(instance, attribute, value) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be a positive finite number (got {value!r})")


def _unit(x):
    """x / max(||x||, EPS) along the last axis, with finite gradients even at x = 0.

    ``sqrt(max(|x|^2, EPS^2))`` equals ``max(||x||, EPS)`` but never differentiates the square
    root at 0, so a zero vector (a zeroed padding step, a dead feature) gets a zero gradient.
    """
    x = ops.convert_to_tensor(x)
    squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x / ops.sqrt(ops.maximum(squared, EPS * EPS))


@attrs.frozen
class Cosine(attnkit.Scorer):
    """Cosine-similarity scores with a temperature: ``s_ij = cos(q_i, k_j) / temperature``.

    ``cos(q, k) = q . k / (max(||q||, eps) * max(||k||, eps))`` with ``eps = 1e-6``, so a zero
    query or key scores 0 instead of NaN. Scores lie in ``[-1/temperature, 1/temperature]``:
    a small temperature (``cosine(temperature=0.1)``) sharpens the softmax, a large one flattens
    it. No weights; queries and keys must have the same size.
    """

    name = "cosine"
    temperature: float = attnkit.param(
        1.0,
        doc="divides the cosine; positive, smaller is sharper",
        converter=_to_float,
        validator=_positive_finite,
    )

    @classmethod
    def examples(cls):
        return [cls(), cls(temperature=0.1)]

    def build(self, layer, query_dim, key_dim):
        if query_dim != key_dim:
            raise ValueError(
                f"scorer 'cosine' needs queries and keys of the same size; got "
                f"query_dim={query_dim}, key_dim={key_dim}"
            )
        return {}

    def score(self, params, query, key):
        cosine = ops.matmul(_unit(query), ops.swapaxes(_unit(key), -1, -2))
        return cosine * (1.0 / self.temperature)  # a Python float keeps the scores' dtype


@attnkit.hookimpl
def attnkit_add_components():
    return [Cosine]
