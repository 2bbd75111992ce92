"""The ways a component's layer can run, and the inputs users give it.

A check that only ever runs the dense plan on seven steps says nothing about the banded plan's
windows, the chunked plan's blocks (several of them, skipping the keys a causal mask hides) or
the paths a compiled computation takes. :func:`runs` yields every way a layer can compute one
spec at :data:`LONG` steps: each plan that applies, op by op and, where the backend compiles a
step as a whole (TensorFlow's XLA, JAX), compiled. :func:`realistic` gives the magnitudes real
models feed a layer: 64 features, unit-normal, three times that, and far from zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import attrs
import numpy as np

from attnkit.conformance._harness import BATCH, FEATURES, copy_weights, layer_for, numpy
from attnkit.resolution import Resolved

__all__ = [
    "LONG",
    "Run",
    "compiled_paths",
    "gradient_modes",
    "plans_for",
    "realistic",
    "runs",
    "small_blocks",
]

#: Steps for the checks that cross the plans' thresholds: three chunked blocks of 16 queries.
LONG = 40
#: Features of realistic inputs.
WIDE = 64


@contextlib.contextmanager
def small_blocks() -> Iterator[None]:
    """Chunked blocks of 16 queries, so :data:`LONG` steps make several blocks: a budget of
    one pair makes every block the smallest the chunked plan uses."""
    from attnkit.plans import _limits

    saved = _limits.CHUNK_TARGET
    _limits.CHUNK_TARGET = 1
    try:
        yield
    finally:
        _limits.CHUNK_TARGET = saved


@attrs.frozen
class Run:
    """One way to run a layer: ``call(x) -> output`` (a NumPy array) and how it was made."""

    plan: str
    compiled: bool
    call: Callable

    @property
    def label(self) -> str:
        return f"the {self.plan} plan{' compiled' if self.compiled else ''}"


def plans_for(resolved: Resolved) -> list[str]:
    """The plans that can run ``resolved``: dense always; banded for masks of bounded reach;
    chunked for poolings that read a context; kernel for specs the fused kernel computes."""
    from attnkit.plans import combined_reach, kernel_form

    pooling = resolved.pooling
    if pooling.many_to_one or not pooling.uses_context or resolved.scorer.positional:
        return ["dense"]
    found = ["dense", "chunked"]
    if None not in combined_reach(resolved.masks):
        found.insert(1, "banded")
    if kernel_form(resolved.scorer, resolved.masks, pooling, same_length=True) is not None:
        found.append("kernel")
    return found


def runs(resolved: Resolved, steps: int = LONG, reference=None) -> Iterator[Run]:
    """Every way to run ``resolved`` on (B, ``steps``, FEATURES) inputs with the weights of
    ``reference`` (a built layer; default: a fresh one), the dense plan op by op first."""
    compiles = compiled_paths()
    for plan in plans_for(resolved):
        layer = layer_for(resolved, steps, plan=plan)
        if reference is None:
            reference = layer
        copy_weights(reference, layer)
        yield Run(plan, False, lambda x, layer=layer: numpy(layer(x)))
        if compiles:
            yield Run(plan, True, _compiled(layer, steps))


def compiled_paths() -> bool:
    """Whether a step compiled as a whole takes other paths through attnkit than op by op
    (:func:`attnkit.backend.compiling`): under TensorFlow's XLA and JAX's jit it does; on
    PyTorch every call takes the same path."""
    import keras

    return keras.backend.backend() in ("tensorflow", "jax")


def gradient_modes() -> tuple[bool, ...]:
    """How gradients are taken to reach every path (``compiled`` values for
    :func:`attnkit.backend.layer_grads`): on TensorFlow op by op and under XLA; on JAX a traced
    gradient already takes the compiled paths, so once, jitted; on PyTorch op by op."""
    import keras

    return {"tensorflow": (False, True), "jax": (True,)}.get(keras.backend.backend(), (False,))


def _compiled(layer, steps: int) -> Callable:
    import keras

    inputs = keras.Input((steps, FEATURES))
    model = keras.Model(inputs, layer(inputs))
    model.compile(jit_compile=True)
    return lambda x: np.asarray(model.predict_on_batch(x))


def realistic(kind: str, steps: int, seed: int = 0) -> np.ndarray:
    """(BATCH, steps, 64) float32: ``unit`` normal, three times that (``wide``), or unit normal
    about a common offset of 30 (``offset``)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, steps, WIDE))
    x = {"unit": x, "wide": 3.0 * x, "offset": 30.0 + x}[kind]
    return x.astype("float32")
