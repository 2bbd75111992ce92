"""Built-in scorers: dot, general, additive, concat, bahdanau, gaussian, dense.

Each returns raw scores (B, Tq, Tk) for queries (B, Tq, Dq) and keys (B, Tk, Dk), with
``keras.ops`` only, and is registered through attnkit's own ``attnkit`` entry point, as a
third party's scorer is.
"""

from __future__ import annotations

from attnkit.hookspecs import hookimpl
from attnkit.scorers._additive import Additive, Bahdanau, Concat
from attnkit.scorers._products import Dense, Dot, Gaussian, General

__all__ = ["Additive", "Bahdanau", "Concat", "Dense", "Dot", "Gaussian", "General"]


@hookimpl
def attnkit_add_components():
    return [Dot, General, Additive, Concat, Bahdanau, Gaussian, Dense]
