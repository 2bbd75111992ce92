"""attnkit: Keras 3 attention layers composed from pluggable scorers, masks and poolings.

    >>> import attnkit
    >>> layer = attnkit.AttentionLayer("additive+local15+seq")

Components are found through the ``attnkit`` entry-point group (see :mod:`attnkit.registry`).
"""

from __future__ import annotations

from attnkit.components import Mask, Pooling, Prepared, Scorer, param
from attnkit.errors import (
    ArgumentError,
    AttnkitError,
    AttnkitPluginWarning,
    CaptureError,
    ComponentError,
    InputShapeError,
    InputTypeError,
    KerasRegistrationError,
    LayerNotFoundError,
    MaskShapeError,
    MissingDependencyError,
    MissingPluginError,
    NonFiniteError,
    PlotError,
    PluginConflictError,
    PluginLoadError,
    SerializationError,
    SpecError,
    SpecParameterError,
    SpecSlotError,
    SpecSyntaxError,
    UnknownComponentError,
)
from attnkit.hookspecs import hookimpl
from attnkit.layer import AttentionLayer
from attnkit.numerics import masked_softmax
from attnkit.registry import Registry, registry
from attnkit.resolution import Resolved
from attnkit.spec import Spec, Token, parse

__all__ = [
    "ArgumentError",
    "AttentionLayer",
    "AttnkitError",
    "AttnkitPluginWarning",
    "CaptureError",
    "ComponentError",
    "InputShapeError",
    "InputTypeError",
    "KerasRegistrationError",
    "LayerNotFoundError",
    "Mask",
    "MaskShapeError",
    "MissingDependencyError",
    "MissingPluginError",
    "NonFiniteError",
    "PlotError",
    "PluginConflictError",
    "PluginLoadError",
    "SerializationError",
    "Pooling",
    "Prepared",
    "Registry",
    "Resolved",
    "Scorer",
    "Spec",
    "SpecError",
    "SpecParameterError",
    "SpecSlotError",
    "SpecSyntaxError",
    "Token",
    "UnknownComponentError",
    "attention_weights",
    "hookimpl",
    "masked_softmax",
    "param",
    "parse",
    "registry",
    "resolve",
]


def resolve(spec: str):
    """Resolve spec text with the process-wide registry: ``attnkit.registry().resolve(spec)``."""
    return registry().resolve(spec)


def __getattr__(name: str):
    # Loaded on first use: `import attnkit` stays as light as the layer itself.
    if name == "attention_weights":
        from attnkit.inspection import attention_weights

        return attention_weights
    if name == "viz":
        import importlib

        return importlib.import_module("attnkit.viz")
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("attnkit")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
