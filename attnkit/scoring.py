"""How a plan calls a scorer and reads the masks: the checks every plan applies to what a
(possibly third-party) scorer returns, and the combined reach of the masks."""

from __future__ import annotations

import keras

from attnkit.components import Scorer
from attnkit.errors import ComponentError
from attnkit.saving import origin

__all__ = [
    "check_scores",
    "checked_window",
    "checked_scores",
    "combined_reach",
    "splits",
]


def splits(scorer) -> bool:
    """Whether ``scorer`` offers the :meth:`Scorer.project` / :meth:`Scorer.pair` split (it
    overrides ``project``; it may still decline at call time by returning None)."""
    return type(scorer).project is not Scorer.project


def combined_reach(masks) -> tuple[int | None, int | None]:
    """The reach of the AND of ``masks``: the tightest bound on each side (None = unbounded)."""
    back = ahead = None
    for mask in masks:
        b, a = mask.reach()
        back = b if back is None else (back if b is None else min(back, b))
        ahead = a if ahead is None else (ahead if a is None else min(ahead, a))
    return back, ahead


def check_scores(scorer, scores, query, key, plan: str, layer: str | None = None) -> None:
    """Raise :class:`ComponentError` unless ``scores`` are floating and (B, Tq, Tk) for these
    queries (B, Tq, Dq) and keys (B, Tk, Dk), as far as the shapes are known statically.

    Every plan checks the call it made: a transposed (B, Tk, Tq) is square in self-attention,
    and the banded and chunked plans call the scorer on shapes of their own, where a wrong
    shape would otherwise surface as a backend's matmul or reshape error far from its cause.
    """
    expected = (query.shape[0], query.shape[1], key.shape[1])
    _check(
        scorer,
        scores,
        expected,
        plan,
        layer,
        f"queries of shape {tuple(query.shape)} and keys of shape {tuple(key.shape)}",
        "(batch, query steps, key steps)",
    )


def _check(scorer, scores, expected, plan, layer, inputs: str, layout: str) -> None:
    got = tuple(scores.shape)
    # Only Python ints are compared: None, JAX's symbolic dimensions and torch's SymInts are
    # unknown here, and comparing them would decide nothing (or refuse to, on JAX).
    fits = len(got) == len(expected) and all(
        not (isinstance(e, int) and isinstance(g, int)) or e == g
        for e, g in zip(expected, got, strict=True)
    )
    dtype = keras.backend.standardize_dtype(scores.dtype)
    if fits and "float" in dtype:
        return
    owner = "" if layer is None else f"layer '{layer}': "
    raise ComponentError(
        f"{owner}scorer '{scorer.name}' ({origin(scorer)}) returned scores of shape {got} "
        f"and dtype {dtype} on the {plan} plan, for {inputs}; expected a floating dtype and "
        f"the shape {layout} = {expected}"
    )


def checked_scores(scorer, params, query, key, activation, plan: str):
    """``activation(score(q, k))``, checked."""
    raw = scorer.score(params, query, key)
    check_scores(scorer, raw, query, key, plan)
    return raw if activation is None else activation(raw)


def checked_window(scorer, params, query_features, key_features, width: int, plan: str):
    """``window(q', k', width)`` for features and padded keys, checked (no activation): the
    scores must be (B, T, width)."""
    raw = scorer.window(params, query_features, key_features, width)
    _check(
        scorer,
        raw,
        (*query_features.shape[:-1], width),
        plan,
        None,
        f"aligned features of shape {tuple(query_features.shape)} from project()",
        "(batch, steps, window) from window(), pair() giving (batch, steps) = "
        f"{tuple(query_features.shape[:-1])} per offset, stacked",
    )
    return raw
