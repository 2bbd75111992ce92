"""Debug mode: stop at the first NaN or infinity an attention layer sees or makes, and say where.

Off by default (the checks cost a reduction and, eagerly, a device-to-host copy per stage).
Turn it on for a block, for the process, or from the environment::

    with attnkit.debug.numerics():
        model(x)                          # NonFiniteError names layer, stage and component

    attnkit.debug.enable()                # ... attnkit.debug.disable()
    ATTNKIT_DEBUG=1 python train.py

Each layer call checks, in order, its inputs (the query, key and value steps that are not
padding), the scorer's scores, the attention weights and the output, so the first failure says
whether the NaN came in from outside or which component made it, with the component's
distribution and version. Eagerly the error is :class:`attnkit.errors.NonFiniteError` (a
``FloatingPointError``). Inside compiled code the check runs with the graph (TensorFlow's
``check_numerics``, a JAX host callback) and the backend's runtime error carries the same
message. The mode is read when a function is traced: turn it on before ``fit`` or ``jit``.

What runs inside a traced computation differs by backend
(:func:`attnkit.backend.check_finite_in_graph`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from attnkit.backend import check_finite_in_graph
from attnkit.errors import NonFiniteError

__all__ = ["check", "check_stage", "disable", "enable", "enabled", "numerics"]

_SCOPED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("attnkit_debug", default=None)
_GLOBAL: list[bool] = []  # set by enable()/disable(); empty: follow ATTNKIT_DEBUG


def enabled() -> bool:
    """Whether layers check for non-finite values now (innermost setting wins: a
    :func:`numerics` block, then :func:`enable`/:func:`disable`, then ``ATTNKIT_DEBUG``)."""
    scoped = _SCOPED.get()
    if scoped is not None:
        return scoped
    if _GLOBAL:
        return _GLOBAL[-1]
    return os.environ.get("ATTNKIT_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def enable() -> None:
    """Turn debug mode on for the process (until :func:`disable`)."""
    _GLOBAL[:] = [True]


def disable() -> None:
    """Turn debug mode off for the process (``ATTNKIT_DEBUG`` is then ignored too)."""
    _GLOBAL[:] = [False]


@contextlib.contextmanager
def numerics(on: bool = True) -> Iterator[None]:
    """Debug mode on (or, with ``on=False``, off) inside the block, in this thread/context."""
    token = _SCOPED.set(bool(on))
    try:
        yield
    finally:
        _SCOPED.reset(token)


def check(value: Any, message: str, valid: Any = None) -> Any:
    """``value`` unchanged, after raising if it holds a NaN or an infinity.

    Args:
        value: a tensor.
        message: what to say, e.g. ``"layer 'att': scores of scorer 'cosine' (from
            attnkit-cosine 0.1.0)"``; the count of bad values is appended.
        valid: optional boolean broadcastable to ``value``: only these entries are checked
            (padding may hold anything; attnkit never reads it).
    """
    if not enabled():
        return value
    finite = keras.ops.isfinite(value)
    if valid is not None:
        finite = keras.ops.logical_or(finite, keras.ops.logical_not(valid))
    traced = check_finite_in_graph(value, finite, _text(message), _raise_if_bad)
    if traced is not None:
        return traced
    _raise_if_bad(keras.ops.convert_to_numpy(finite), _text(message))
    return value


def check_stage(value: Any, owner: str, stage: str, component: Any = None, valid: Any = None):
    """:func:`check` with the message every layer stage uses: ``"{owner}: {stage}"``, and the
    component that made the value with its distribution, e.g. ``"layer 'att' ('cosine'): the
    scores from scorer 'cosine' (from attnkit-cosine 0.1.0)"``."""
    if not enabled():
        return value
    what = f"{owner}: {stage}"
    if component is not None:
        from attnkit.registry import registry

        what += f" from {component.kind} '{component.name}' ({registry().origin(component)})"
    return check(value, what, valid)


def _raise_if_bad(finite, message: str) -> None:
    finite = np.asarray(finite)
    bad = int(finite.size - np.count_nonzero(finite))
    if bad:
        raise NonFiniteError(f"{message}: {bad} of {finite.size} values are NaN or inf")


def _text(message: str) -> str:
    return f"attnkit debug mode: {message}"
