"""What the checks share: placing a component in a spec, test data, devices, references."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import numpy as np

from attnkit import backend
from attnkit.components import Component, Mask, Pooling, Scorer
from attnkit.resolution import Resolved

__all__ = ["CheckFailure", "SkipCheck", "Subject", "make_data", "subject_for"]

BATCH, STEPS, FEATURES = 3, 7, 4


class CheckFailure(AssertionError):
    """A check saw a component misbehave; the message names the component and what it saw."""


class SkipCheck(Exception):
    """A check does not apply here (no GPU, a pooling that takes no masks, ...)."""


@attrs.frozen
class Subject:
    """A component placed in specs: alone, under a causal mask, under a local3 window.

    The specs are assembled from instances, so a component need not be registered for most
    checks; the config and save/load checks resolve through the registry and need it installed.
    """

    component: Component
    base: Resolved
    causal: Resolved | None = None
    local: Resolved | None = None

    @property
    def label(self) -> str:
        return str(self.component)

    @property
    def fixed_length(self) -> bool:
        return type(self.component).fixed_length or any(
            type(c).fixed_length for c in (self.base.scorer, self.base.pooling)
        )


def subject_for(component: Component) -> Subject:
    """Place ``component`` in canonical specs with the built-in partners ``dot`` and ``seq``."""
    from attnkit.masks import Causal, Local
    from attnkit.registry import registry

    template = type(component).conformance_spec
    if template is not None:
        parts = [p.strip() for p in template.split("+")]
        scorer, masks, pooling = None, [], None
        for part in parts:
            other = component if part == "{}" else registry().resolve_token(part)
            if isinstance(other, Scorer):
                scorer = other
            elif isinstance(other, Mask):
                masks.append(other)
            else:
                pooling = other
        return Subject(component, Resolved.of(scorer, tuple(masks), pooling))
    from attnkit.scorers import Dot

    if isinstance(component, Scorer):
        return Subject(
            component,
            Resolved.of(component),
            Resolved.of(component, (Causal(),)),
            Resolved.of(component, (Local(3),)),
        )
    if isinstance(component, Mask):
        causal = None if component.name == "causal" else Resolved.of(Dot(), (component, Causal()))
        return Subject(component, Resolved.of(Dot(), (component,)), causal)
    if isinstance(component, Pooling):
        if not component.accepts_masks:
            return Subject(component, Resolved.of(Dot(), (), component))
        return Subject(
            component,
            Resolved.of(Dot(), (), component),
            Resolved.of(Dot(), (Causal(),), component),
            Resolved.of(Dot(), (Local(3),), component),
        )
    raise CheckFailure(f"{component!r} is not a Scorer, Mask or Pooling")


def make_data(seed: int = 0, steps: int = STEPS, pad: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """x (B, T, D) float32 in [-1.5, 1.5] and a padding mask: sample 1 padded after step 4."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1.5, 1.5, (BATCH, steps, FEATURES)).astype("float32")
    mask = np.ones((BATCH, steps), bool)
    if pad:
        mask[1, 4:] = False
    return x, mask


def layer_for(
    resolved: Resolved, steps: int | None = STEPS, features: int = FEATURES, **options: Any
):
    """A built AttentionLayer for ``resolved`` on (B, steps, features) inputs."""
    from attnkit.layer import AttentionLayer

    layer = AttentionLayer(resolved, **options)
    layer.build((None, steps, features))
    return layer


def numpy(tensor: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(tensor))


def copy_weights(source, target) -> None:
    """Give ``target`` the weight values of ``source`` (same spec, any dtype)."""
    values = {w.path.rsplit("/", 1)[-1]: numpy(w) for w in source.weights}
    for weight in target.weights:
        weight.assign(values[weight.path.rsplit("/", 1)[-1]].astype(weight.dtype))


@contextlib.contextmanager
def variables_made():
    """Yield a list that records the name of every ``keras.Variable`` constructed inside the
    block, however it was made (``add_weight``, ``keras.Variable(...)`` directly)."""
    import keras

    cls = keras.Variable
    own = "__init__" in cls.__dict__
    original = cls.__init__
    made: list[str] = []

    def counting(self, *args, **kwargs):
        made.append(str(kwargs.get("name") or "unnamed"))
        original(self, *args, **kwargs)

    cls.__init__ = counting
    try:
        yield made
    finally:
        if own:
            cls.__init__ = original
        else:
            del cls.__init__


def wide_policy() -> str:
    """The policy of reference runs: float64, or float32 where Keras computes no float64 here
    (JAX without jax_enable_x64, PyTorch's float64 matmul); either is far inside the 16-bit
    tolerances."""
    return "float64" if backend.has_float64() else "float32"


@contextlib.contextmanager
def policy(name: str):
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@contextlib.contextmanager
def on_device(device: str):
    """Run on ``device`` ("cpu" or "gpu"); a GPU case without a GPU is skipped with why."""
    import keras

    if device == "gpu":
        reason = backend.gpu_available()
        if reason:
            raise SkipCheck(reason)
    # torch: keras.device("cpu:0") makes every variable a non-leaf copy
    # (Parameter(...).to("cpu:0")) that then gets no gradient; "cpu" is the same device, no copy.
    name = "cpu" if device == "cpu" and keras.backend.backend() == "torch" else f"{device}:0"
    with keras.device(name):
        yield
