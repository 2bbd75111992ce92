"""Recording the attention weights of named layers while a block of code runs.

:func:`attnkit.attention_weights` calls a model inside :func:`capture`; the named
``AttentionLayer`` s then run the dense plan (so the weights exist) and append what they
computed. Outputs are unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["capture", "record", "wanted"]

#: Layer name -> list of weight arrays, while :func:`capture` is active.
_CAPTURE: contextvars.ContextVar[dict[str, list] | None] = contextvars.ContextVar(
    "attnkit_capture", default=None
)


@contextlib.contextmanager
def capture(*names: str) -> Iterator[dict[str, list]]:
    """Record the attention weights of the named ``AttentionLayer`` s while the block runs.

    Yields a dict layer name -> list with one NumPy array per eager call of that layer (what
    ``return_attention=True`` would return). Only eager calls record (``model(x)``, not
    ``model.predict``, which traces).
    """
    found: dict[str, list] = {name: [] for name in names}
    token = _CAPTURE.set(found)
    try:
        yield found
    finally:
        _CAPTURE.reset(token)


def wanted(name: str) -> bool:
    """Whether a :func:`capture` block is recording the layer called ``name``."""
    return name in (_CAPTURE.get() or ())


def record(name: str, weights: Any) -> None:
    """Append ``weights`` (a tensor, or None) to what :func:`capture` records for ``name``."""
    captured = _CAPTURE.get()
    if captured is not None and name in captured and weights is not None:
        from keras import ops

        captured[name].append(ops.convert_to_numpy(weights))
