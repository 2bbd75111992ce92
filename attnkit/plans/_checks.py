"""How a plan calls a (possibly third-party) scorer: every call's scores are checked.

A transposed (B, Tk, Tq) is square in self-attention, and the banded and chunked plans call
the scorer on shapes of their own, where a wrong shape would otherwise surface as a backend's
matmul or reshape error far from its cause. So each plan checks the call it made and raises a
:class:`ComponentError` naming the scorer with its distribution, the plan and the expected
shape (:func:`attnkit.plans.run` adds the layer). The functions take what they need one by one,
not a :class:`Work`, because they also run inside compiled functions that serve many layers.
"""

from __future__ import annotations

from typing import Any

import keras

from attnkit.components import Scorer
from attnkit.errors import ComponentError
from attnkit.registry import registry

__all__ = ["check_scores", "checked_scores", "checked_window", "splits"]


def splits(scorer) -> bool:
    """Whether ``scorer`` offers the :meth:`Scorer.project` / :meth:`Scorer.pair` split (it
    overrides ``project``; it may still decline at call time by returning None)."""
    return type(scorer).project is not Scorer.project


def check_scores(scorer, scores: Any, query: Any, key: Any, plan: str) -> None:
    """Raise :class:`ComponentError` unless ``scores`` are floating and (B, Tq, Tk) for these
    queries (B, Tq, Dq) and keys (B, Tk, Dk), as far as the shapes are known statically."""
    expected = (query.shape[0], query.shape[1], key.shape[1])
    _check(
        scorer,
        scores,
        expected,
        plan,
        f"queries of shape {tuple(query.shape)} and keys of shape {tuple(key.shape)}",
        "(batch, query steps, key steps)",
    )


def checked_scores(scorer, params: dict, query: Any, key: Any, activation, plan: str) -> Any:
    """``activation(score(q, k))``, checked."""
    raw = scorer.score(params, query, key)
    check_scores(scorer, raw, query, key, plan)
    return raw if activation is None else activation(raw)


def checked_window(scorer, params: dict, query_features, key_features, width: int, plan: str):
    """``window(q', k', width)`` for features and padded keys, checked (no activation): the
    scores must be (B, T, width)."""
    raw = scorer.window(params, query_features, key_features, width)
    _check(
        scorer,
        raw,
        (*query_features.shape[:-1], width),
        plan,
        f"aligned features of shape {tuple(query_features.shape)} from project()",
        "(batch, steps, window) from window(), pair() giving (batch, steps) = "
        f"{tuple(query_features.shape[:-1])} per offset, stacked",
    )
    return raw


def _check(scorer, scores, expected, plan: str, inputs: str, layout: str) -> None:
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
    raise ComponentError(
        f"scorer '{scorer.name}' ({registry().origin(scorer)}) returned scores of shape {got} "
        f"and dtype {dtype} on the {plan} plan, for {inputs}; expected a floating dtype and "
        f"the shape {layout} = {expected}"
    )
