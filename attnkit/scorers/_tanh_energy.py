"""The tanh energy of a window of aligned pairs, with a hand-written gradient (``keras.ops``).

``e[b, i, o] = sum_u w[u] tanh(q'[b, i, u] + k'[b, i + o, u])``: query i against the W keys
``i .. i + W - 1`` of padded key features (the banded plan's offset pass for ``additive`` and
``bahdanau``). Differentiated by the backend, the key features' gradient is the sum of W
shifted copies of the per-offset gradients, which XLA writes out one (B, T, P) tensor per
offset before adding them; and the output weight's gradient, a reduction of every (pair, unit)
value to P numbers, keeps the tanh of every offset alive. The gradient written here recomputes
the tanh instead and reads each sum where it lands:

- ``dq'[b, i] = w * sum_o g[b, i, o] (1 - t[b, i, o]^2)``, over the query's window;
- ``dk'[b, p] = w * sum_o g[b, p - o, o] (1 - t[b, p - o, o]^2)``, over the queries that see
  key p, the queries and the cotangent padded so that every offset is a plain slice;
- ``dw = sum_(b, i, o) g[b, i, o] t[b, i, o]``, its tanh written as ``2 sigmoid(2x) - 1``:
  the same value, but a different expression from the one ``dq'`` squares, so XLA fuses each
  into its own loop instead of writing the shared tanh out.

``python -m benchmarks.profile_banded`` times the pass both ways.
"""

from __future__ import annotations

from keras import ops

from attnkit.backend import compiling

__all__ = ["aligned_tanh_energy", "recomputed", "window_tanh_energy"]


def window_tanh_energy(query_features, key_features, w_out, width: int):
    """``e[b, i, o] = sum_u w_out[u] tanh(q'[b, i, u] + k'[b, i + o, u])``.

    Inside a compiled computation (:func:`attnkit.backend.compiling`: the banded plan's fused
    pass on TensorFlow, any JAX step) the gradient is :func:`recomputed`'s. Op by op it is the
    backend's, which keeps the tanh of every offset: recomputing it would cost a pass per op
    there.

    Args:
        query_features: (B, T, P).
        key_features: (B, T + width - 1, P), the keys padded so that query i's window starts
            at row i.
        w_out: (P,), the energy's output weights.
        width: W, the window's length.

    Returns:
        (B, T, W) energies.
    """
    if compiling(query_features):
        return recomputed(query_features, key_features, w_out, width)
    return _energy(query_features, key_features, w_out, width)


def recomputed(query_features, key_features, w_out, width: int):
    """:func:`window_tanh_energy` with the gradient of this module's docstring, on any
    backend."""

    @ops.custom_gradient
    def energy(q, k, w):
        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow and JAX pass the cotangent alone; torch by name
                (upstream,) = args
            return _energy_grads(q, k, w, upstream, width)

        return _energy(q, k, w, width), grad

    return energy(query_features, key_features, w_out)


def aligned_tanh_energy(query_features, key_features, w_out):
    """``sum_u w_out[u] tanh(q'[..., u] + k'[..., u])`` for aligned features (..., P): the
    ``pair()`` of ``additive`` and ``bahdanau``. A sum rather than a (P, 1) matmul: compiled
    with XLA it fuses into the tanh's loop."""
    return ops.sum(ops.tanh(query_features + key_features) * w_out, axis=-1)


def _energy(q, k, w, width: int):
    steps = ops.shape(q)[1]
    return ops.stack(
        [aligned_tanh_energy(q, k[:, o : o + steps], w) for o in range(width)], axis=-1
    )


def _energy_grads(q, k, w, upstream, width: int):
    steps, span = ops.shape(q)[1], ops.shape(k)[1]
    d_q = d_k = acc = None
    # Query p - o for key p: padded by W - 1 on each side, every offset is a slice.
    edge = [[0, 0], [width - 1, width - 1], [0, 0]]
    q_pad, g_pad = ops.pad(q, edge), ops.pad(upstream, edge)
    for o in range(width):
        g = upstream[..., o : o + 1]
        pre = q + k[:, o : o + steps]
        t = ops.tanh(pre)
        term, tanh_again = g * (1 - t * t), g * (2 * ops.sigmoid(2 * pre) - 1)
        d_q = term if d_q is None else d_q + term
        acc = tanh_again if acc is None else acc + tanh_again
        first = width - 1 - o
        t_key = ops.tanh(q_pad[:, first : first + span] + k)
        term = g_pad[:, first : first + span, o : o + 1] * (1 - t_key * t_key)
        d_k = term if d_k is None else d_k + term
    return d_q * w, d_k * w, ops.sum(acc, axis=(0, 1))
