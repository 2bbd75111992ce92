"""Plain float64 NumPy references of attnkit's built-in components (the conformance oracle).

Nothing here imports Keras or attnkit: every formula is written again from its statement in the
README and the docstrings, so that the layer is compared with an independent implementation.
Masks are built with explicit Python loops over (i, j), never with vectorised index tricks.

Notation: q (B, Tq, Dq), k (B, Tk, Dk), v (B, Tk, Dv); scores s (B, Tq, Tk); ``allowed`` is a
boolean array broadcastable to the scores, True where query i may see key j.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "additive",
    "allowed_causal",
    "allowed_full",
    "allowed_local",
    "attention",
    "bahdanau",
    "dense",
    "dot",
    "gate",
    "gaussian",
    "general",
    "last",
    "last_query",
    "layer_reference",
    "masked_softmax",
    "seq",
    "weighted",
]


def _f64(x):
    return np.asarray(x, dtype=np.float64)


# -- scorers ------------------------------------------------------------------------------------
def dot(q, k, scale=None):
    """Dot-product scores ``s_ij = c * sum_d q_id k_jd``.

    ``c`` is 1 for ``scale=None``, ``1/sqrt(Dq)`` for ``scale="sqrt"``, and the number itself for a
    fixed scale or the current value of a learned one.
    """
    q, k = _f64(q), _f64(k)
    s = np.einsum("bid,bjd->bij", q, k)
    if scale is None:
        return s
    if scale == "sqrt":
        return s / math.sqrt(q.shape[-1])
    return s * float(scale)


def general(q, k, w, b=None):
    """Luong's general scores ``s_ij = q_i^T W k_j (+ b)``, W (Dq, Dk), b a scalar (shape (1,))."""
    s = np.einsum("bid,de,bje->bij", _f64(q), _f64(w), _f64(k))
    if b is not None:
        s = s + _f64(b).reshape(())
    return s


def additive(q, k, w_q, w_k, b_h=None, w_a=None, b_a=None):
    """Additive scores ``s_ij = sum_u w_a[u] tanh((q_i W_q)_u + (k_j W_k)_u + b_h[u]) + b_a``.

    W_q (Dq, U), W_k (Dk, U), b_h (U,) or None, w_a (U, 1), b_a (1,) or None.
    """
    qp = np.einsum("bid,du->biu", _f64(q), _f64(w_q))
    kp = np.einsum("bjd,du->bju", _f64(k), _f64(w_k))
    if b_h is not None:
        qp = qp + _f64(b_h)
    hidden = np.tanh(qp[:, :, None, :] + kp[:, None, :, :])  # (B, Tq, Tk, U)
    s = np.einsum("biju,u->bij", hidden, _f64(w_a).reshape(-1))
    if b_a is not None:
        s = s + _f64(b_a).reshape(())
    return s


def bahdanau(q, k, w_1, w_2, v):
    """Bahdanau scores ``s_ij = sum_u v[u] tanh((q_i W_1)_u + (k_j W_2)_u)``, no biases."""
    return additive(q, k, w_1, w_2, None, v, None)


def concat(q, k, scale=None):
    """Projection-free additive scores ``s_ij = sum_d g_d tanh(q_id + k_jd)`` (g = 1 if None)."""
    hidden = np.tanh(_f64(q)[:, :, None, :] + _f64(k)[:, None, :, :])  # (B, Tq, Tk, D)
    g = np.ones(hidden.shape[-1]) if scale is None else _f64(scale).reshape(-1)
    return np.einsum("bijd,d->bij", hidden, g)


def gaussian(q, k, sigma):
    """Gaussian-kernel scores ``s_ij = -||q_i - k_j||^2 / (2 sigma^2)``.

    Computed from the difference itself (not the expanded ||q||^2 + ||k||^2 - 2 q.k).
    """
    q, k = _f64(q), _f64(k)
    diff = q[:, :, None, :] - k[:, None, :, :]
    return -np.sum(diff * diff, axis=-1) / (2.0 * float(sigma) ** 2)


def learned_sigma(rho):
    """The learned width of ``gaussian``: ``sigma = softplus(rho) + 1e-6``."""
    rho = float(np.asarray(rho))
    return math.log1p(math.exp(rho)) + 1e-6


def dense(q, w, b=None):
    """Dense position scores ``s_ij = (q_i W)_j + b_j``, W (Dq, Dq); there are Dq keys."""
    s = np.einsum("bid,de->bie", _f64(q), _f64(w))
    if b is not None:
        s = s + _f64(b)
    return s


# -- masks (explicit loops: an independent oracle) -----------------------------------------------
def local_ok(i: int, j: int, w: int) -> bool:
    """``local<w>``: ``i - floor(w/2) <= j <= i + floor((w-1)/2)`` (w keys, even w leans back)."""
    return i - w // 2 <= j <= i + (w - 1) // 2


def causal_ok(i: int, j: int, w: int | None = None) -> bool:
    """``causal``: ``j <= i``; ``causal<w>``: also ``j >= i - w + 1`` (the last w keys)."""
    if j > i:
        return False
    return w is None or j >= i - w + 1


def _grid(tq: int, tk: int, predicate) -> np.ndarray:
    out = np.zeros((tq, tk), dtype=bool)
    for i in range(tq):
        for j in range(tk):
            out[i, j] = bool(predicate(i, j))
    return out


def allowed_full(tq: int, tk: int) -> np.ndarray:
    """``full``: every (i, j) is allowed. (tq, tk) booleans."""
    return _grid(tq, tk, lambda i, j: True)


def allowed_local(tq: int, tk: int, w: int) -> np.ndarray:
    """``local<w>``: (tq, tk) booleans, True iff ``i - w//2 <= j <= i + (w-1)//2``."""
    return _grid(tq, tk, lambda i, j: local_ok(i, j, w))


def allowed_causal(tq: int, tk: int, w: int | None = None) -> np.ndarray:
    """``causal`` / ``causal<w>``: (tq, tk) booleans, True iff ``j <= i`` (and ``j >= i-w+1``)."""
    return _grid(tq, tk, lambda i, j: causal_ok(i, j, w))


def predicate_of(mask):
    """The scalar predicate ``(i, j) -> bool`` of a resolved attnkit mask (read by name/fields)."""
    name = mask.name
    if name == "full":
        return lambda i, j: True
    if name == "local":
        return lambda i, j, w=mask.width: local_ok(i, j, w)
    if name == "causal":
        return lambda i, j, w=mask.width: causal_ok(i, j, w)
    raise NotImplementedError(f"no reference for mask {name!r}")


def allowed_spec(masks, tq: int, tk: int) -> np.ndarray:
    """The AND of several resolved masks on a (tq, tk) grid, by loops."""
    preds = [predicate_of(m) for m in masks]
    return _grid(tq, tk, lambda i, j: all(p(i, j) for p in preds))


# -- softmax and attention ----------------------------------------------------------------------
def masked_softmax(scores, allowed=None):
    """Softmax over the last axis restricted to allowed entries.

    ``w_ij = exp(s_ij - m_i) / sum_{j allowed} exp(s_ij - m_i)`` for allowed j, 0 otherwise, with
    m_i the maximum over allowed entries only. A row with no allowed entry is all zeros.
    """
    s = _f64(scores)
    if allowed is None:
        allowed = np.ones(s.shape, dtype=bool)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=bool), s.shape)
    out = np.zeros(s.shape, dtype=np.float64)
    flat_s = s.reshape(-1, s.shape[-1])
    flat_a = allowed.reshape(-1, s.shape[-1])
    flat_o = out.reshape(-1, s.shape[-1])
    for r in range(flat_s.shape[0]):
        keep = flat_a[r]
        if not keep.any():
            continue
        row = flat_s[r, keep]
        e = np.exp(row - row.max())
        flat_o[r, keep] = e / e.sum()
    return flat_o.reshape(s.shape)


def _valid(mask, batch, steps):
    if mask is None:
        return np.ones((batch, steps), dtype=bool)
    return np.asarray(mask, dtype=bool)


def effective_allowed(allowed, batch, tq, tk, query_valid=None, key_valid=None):
    """``allowed AND key_valid[b, j] AND query_valid[b, i]``, shape (B, Tq, Tk)."""
    if allowed is None:
        allowed = np.ones((tq, tk), dtype=bool)
    eff = np.broadcast_to(np.asarray(allowed, dtype=bool), (batch, tq, tk)).copy()
    eff &= _valid(key_valid, batch, tk)[:, None, :]
    eff &= _valid(query_valid, batch, tq)[:, :, None]
    return eff


def attention(scores, allowed, value, query_valid=None, key_valid=None):
    """``(output, weights)`` of masked attention, as the layer computes it.

    ``a = masked_softmax(s, allowed AND key_valid AND query_valid)``, ``y_i = sum_j a_ij v_j``
    (padded values contribute nothing: they are replaced by 0 first); padded query rows are 0.
    """
    s = _f64(scores)
    batch, tq, tk = s.shape
    eff = effective_allowed(allowed, batch, tq, tk, query_valid, key_valid)
    weights = masked_softmax(s, eff)
    kv = _valid(key_valid, batch, tk)
    value = np.where(kv[:, :, None], _f64(value), 0.0)
    output = np.einsum("bij,bjd->bid", weights, value)
    output = np.where(_valid(query_valid, batch, tq)[:, :, None], output, 0.0)
    return output, weights


# -- poolings -----------------------------------------------------------------------------------
def seq(scores, allowed, value, query_valid=None, key_valid=None):
    """``seq``: one output per query step, ``y_i = sum_j a_ij v_j`` (B, Tq, Dv).

    Weights (B, Tq, Tk)."""
    return attention(scores, allowed, value, query_valid, key_valid)


def last_query(query, query_valid=None):
    """``(h_t (B, D), index (B,), valid (B,))``: each sample's last valid step (index 0 if none)."""
    query = _f64(query)
    batch, steps = query.shape[:2]
    qv = _valid(query_valid, batch, steps)
    index = np.zeros(batch, dtype=int)
    valid = np.zeros(batch, dtype=bool)
    for b in range(batch):
        for t in range(steps):
            if qv[b, t]:
                index[b], valid[b] = t, True
    h_t = np.stack([query[b, index[b]] for b in range(batch)])
    return h_t, index, valid


def last(context, h_t, w_c=None, visible=None):
    """``last``: ``y = c`` (B, Dv), or ``y = tanh([c; h_t] W_c)`` (B, units) with ``units``.

    ``c = sum_s a_s v_s`` is the context of the single query h_t (the last valid step). A sample
    whose query sees no key (``visible`` False: padded query or every key masked) outputs 0.
    """
    c = _f64(context)
    out = c if w_c is None else np.tanh(np.concatenate([c, _f64(h_t)], axis=-1) @ _f64(w_c))
    if visible is not None:
        out = np.where(np.asarray(visible, dtype=bool)[:, None], out, 0.0)
    return out


def weighted(context, visible=None):
    """``weighted``: ``y = sum_t a_t v_t`` with ``a = softmax_t(score(w, k_t))`` for a learned
    query vector w (B, Dv); 0 for a sample that sees no key."""
    c = _f64(context)
    if visible is not None:
        c = np.where(np.asarray(visible, dtype=bool)[:, None], c, 0.0)
    return c


def gate(x, w, b=None, shared=False):
    """``gate`` with the ``dense`` scorer (the old Keras "attention block").

    2-D x (B, D): ``p = softmax_j((x W + b)_j)`` over the D features, output ``x * p``; reported
    weights p (B, D).
    3-D x (B, T, D): for feature d, ``p[d, t] = softmax_t(sum_s x[s, d] W[s, t] + b[t])`` over the
    T steps (W (T, T)); with ``shared`` p is averaged over the features; output
    ``y[t, d] = x[t, d] * p[d, t]`` and reported weights ``p^T`` broadcast to (B, T, D).
    """
    x = _f64(x)
    if x.ndim == 2:
        p = masked_softmax(dense(x[:, None, :], w, b))[:, 0, :]
        return x * p, p
    s = dense(np.swapaxes(x, 1, 2), w, b)  # (B, D, T)
    p = masked_softmax(s)
    if shared:
        p = p.mean(axis=1, keepdims=True)
    report = np.broadcast_to(np.swapaxes(p, 1, 2), x.shape)
    return x * report, report


# -- the whole layer ----------------------------------------------------------------------------
def _bool_mask(mask):
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask != 0
    return mask > 0.5


def layer_weights(layer) -> dict:
    """``{"scorer_w_q": array, "pooling_query": array, ...}`` in float64, by weight name."""
    return {v.path.rsplit("/", 1)[-1]: _f64(v.numpy()) for v in layer.weights}


def scores_for(scorer, params: dict, q, k):
    """Raw scores of a resolved attnkit scorer (read by name and fields), the layer's weights."""
    name = scorer.name
    p = params
    if name == "dot":
        scale = scorer.scale
        if scale == "learned":
            scale = float(p["scorer_scale"])
        return dot(q, k, scale)
    if name == "general":
        return general(q, k, p["scorer_w"], p.get("scorer_b") if scorer.use_bias else None)
    if name == "additive":
        return additive(
            q,
            k,
            p["scorer_w_q"],
            p["scorer_w_k"],
            p["scorer_b_h"] if scorer.use_additive_bias else None,
            p["scorer_w_a"],
            p["scorer_b_a"] if scorer.use_attention_bias else None,
        )
    if name == "concat":
        return concat(q, k, p["scorer_scale"] if scorer.use_scale else None)
    if name == "bahdanau":
        return bahdanau(q, k, p["scorer_w_1"], p["scorer_w_2"], p["scorer_v"])
    if name == "gaussian":
        sigma = learned_sigma(p["scorer_rho"]) if scorer.sigma is None else scorer.sigma
        return gaussian(q, k, sigma)
    if name == "dense":
        return dense(q, p["scorer_w"], p.get("scorer_b") if scorer.use_bias else None)
    raise NotImplementedError(f"no reference for scorer {name!r}")


def layer_reference(layer, inputs, mask=None, *, return_allowed: bool = False):
    """Expected ``(output, weights)`` of an ``attnkit.AttentionLayer`` in float64.

    Reads the layer's weights by name and its resolved scorer, masks and pooling, and recomputes
    everything with the functions above. ``inputs``: x, ``[query, value]`` or
    ``[query, value, key]``; ``mask``: for one input a (B, T) mask; for a list, a list
    ``[query_mask, value_mask(, key_mask)]`` (a single array is the query mask, as in the layer).
    With ``return_allowed`` also returns the effective boolean allowed array the weights obey
    ((B, Tq, Tk) for ``seq``, (B, Tk) for many-to-one).
    """
    if getattr(layer, "attention_activation", None) is not None:
        raise NotImplementedError("the reference has no attention_activation")
    resolved = layer.resolved
    params = layer_weights(layer)
    pooling = resolved.pooling

    if isinstance(inputs, (list, tuple)):
        query, value = _f64(inputs[0]), _f64(inputs[1])
        key = _f64(inputs[2]) if len(inputs) == 3 else value
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask, None, None]
        masks += [None] * (3 - len(masks))
        query_mask, value_mask, key_mask = (_bool_mask(m) for m in masks[:3])
    else:
        query = value = key = _f64(inputs)
        query_mask = value_mask = _bool_mask(mask)
        key_mask = None

    if pooling.name == "gate":
        if resolved.scorer.name != "dense" or mask is not None or resolved.masks:
            raise NotImplementedError("the gate reference covers dense+gate without masks")
        out, report = gate(
            query,
            params["scorer_w"],
            params.get("scorer_b") if resolved.scorer.use_bias else None,
            pooling.shared,
        )
        return (out, report, None) if return_allowed else (out, report)

    batch, tq = query.shape[:2]
    tk = key.shape[1]
    key_valid = np.ones((batch, tk), dtype=bool)
    for m in (value_mask, key_mask):
        if m is not None:
            key_valid &= m
    # Padded keys/values/queries may hold anything (1e30, inf, NaN): the reference never reads them.
    key = np.where(key_valid[:, :, None], key, 0.0)
    value = np.where(key_valid[:, :, None], value, 0.0)
    qv = _valid(query_mask, batch, tq)
    query = np.where(qv[:, :, None], query, 0.0)

    if pooling.name == "seq":
        positions = np.broadcast_to(np.arange(tq), (batch, tq))
        q_used, row_valid = query, qv
    elif pooling.name in ("last", "weighted"):
        h_t, index, valid = last_query(query, query_mask)
        positions = index[:, None]
        row_valid = valid[:, None]
        if pooling.name == "last":
            q_used = h_t[:, None, :]
        else:
            q_used = np.broadcast_to(params["pooling_query"], (batch, 1, query.shape[-1]))
    else:
        raise NotImplementedError(f"no reference for pooling {pooling.name!r}")

    scores = scores_for(resolved.scorer, params, q_used, key)
    grid = allowed_spec(resolved.masks, tq, tk)
    structural = np.stack([grid[positions[b]] for b in range(batch)])  # (B, Tq', Tk)
    eff = effective_allowed(structural, batch, positions.shape[1], tk, row_valid, key_valid)
    weights = masked_softmax(scores, eff)
    context = np.einsum("bij,bjd->bid", weights, value)
    visible = eff.any(axis=-1)  # (B, Tq')

    if pooling.name == "seq":
        output = np.where(visible[:, :, None], context, 0.0)
        reported, allowed_out = weights, eff
    elif pooling.name == "last":
        w_c = params.get("pooling_w_c") if pooling.units is not None else None
        output = last(context[:, 0, :], h_t, w_c, visible[:, 0])
        reported, allowed_out = weights[:, 0, :], eff[:, 0, :]
    else:
        output = weighted(context[:, 0, :], visible[:, 0])
        reported, allowed_out = weights[:, 0, :], eff[:, 0, :]
    if return_allowed:
        return output, reported, allowed_out
    return output, reported
