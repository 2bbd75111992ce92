"""Saving and loading an ``AttentionLayer`` safely: what its config may hold, what a loaded
config may name, and whose class Keras' name ``attnkit>AttentionLayer`` builds.

- Resolving a saved spec names the missing plugin distribution, with a validated pip line.
- ``get_config`` refuses what could not load back as data: components no plugin registers,
  activations Keras would store as code (guarantee S3, docs/guarantees.md).
- Every save and load checks the Keras registration is still attnkit's (S4).
"""

from __future__ import annotations

import types
from typing import Any

import attrs
import keras

from attnkit.errors import (
    KerasRegistrationError,
    MissingPluginError,
    PluginConflictError,
    SerializationError,
    SpecError,
    UnknownComponentError,
)
from attnkit.registry import registry
from attnkit.resolution import Resolved
from attnkit.spec import Spec, parse

__all__ = [
    "KERAS_NAME",
    "activation_config",
    "check_keras_registration",
    "check_registered",
    "check_saved_activation",
    "check_spec_loads",
    "known",
    "resolve_spec",
]


def resolve_spec(spec: Any, plugins: dict[str, str]) -> Resolved:
    """Resolve a spec; a name that a saved config attributes to a missing plugin says so."""
    if not isinstance(plugins, dict):
        raise SerializationError(
            "the saved config's 'plugins' must be a dict of component name -> "
            f"'distribution==version'; received a {type(plugins).__name__}"
        )
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in plugins.items()):
        raise SerializationError(
            "the saved config's 'plugins' must map component names to 'distribution==version' "
            "strings; it holds other values"
        )
    if isinstance(spec, Resolved):
        if spec.plugins:
            return spec
        # Assembled from instances: record the plugin distributions as resolving would, so the
        # saved config can still name what to install.
        found = {}
        for info in registry().components():
            for component in (spec.scorer, *spec.masks, spec.pooling):
                if type(component) is info.cls and not info.builtin:
                    found[info.name] = f"{info.distribution}=={info.version}"
        return attrs.evolve(spec, plugins=found) if found else spec
    try:
        return registry().resolve(spec)
    except UnknownComponentError as error:
        for token in (spec if isinstance(spec, Spec) else parse(spec)).tokens:
            requirement = plugins.get(token.name)
            if requirement and not known(token.name):
                pinned = _pinned(requirement)
                if pinned is None:
                    raise MissingPluginError(
                        f"component '{token.name}' is not installed here, and the saved file's "
                        "requirement for the plugin that provides it is malformed (expected "
                        "'distribution==version'), so no install command is suggested",
                        spec,
                        token.start,
                        token.end,
                        f"find and install the plugin distribution that provides '{token.name}'",
                    ) from error
                dist, version = pinned
                raise MissingPluginError(
                    f"component '{token.name}' comes from the plugin distribution {dist} "
                    f"(saved with version {version}), which is not installed here",
                    spec,
                    token.start,
                    token.end,
                    f"install it: pip install '{dist}>={version}'",
                ) from error
        raise


def _pinned(requirement: str) -> tuple[str, str] | None:
    """(name, version) of a saved ``name==version`` requirement, or None if it is not one.

    The install hint is built from what ``packaging`` parsed, never from the saved text, so a
    tampered file cannot put its own words (or a shell command) into the message.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return None
    specifiers = list(parsed.specifier)
    if parsed.url or parsed.extras or parsed.marker or len(specifiers) != 1:
        return None
    (pin,) = specifiers
    if pin.operator != "==":
        return None
    try:
        version = Version(pin.version)  # rejects wildcards such as 1.*
    except InvalidVersion:
        return None
    return parsed.name, str(version)


#: The name ``@keras.saving.register_keras_serializable(package="attnkit")`` gives the layer.
KERAS_NAME = "attnkit>AttentionLayer"


def _same_class(a: Any, b: type) -> bool:
    """``a`` is ``b``, or ``b`` imported again (importlib.reload, IPython's autoreload)."""
    return a is b or (
        isinstance(a, type) and (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
    )


def check_keras_registration(layer_class: type) -> None:
    """Keras' serializable name ``attnkit>AttentionLayer`` must still map to this layer class.

    ``keras.saving.register_keras_serializable`` silently overwrites a name, and load_model
    builds whatever the name maps to. One dictionary lookup, so it runs on every save and every
    load. It catches accidents, not an adversary in the same process: code that wants to can
    also fake a class's module and name. Plugins are checked when they are imported (see
    attnkit.registry); this catches anything else that registered the name.
    """
    found = keras.saving.get_registered_object(KERAS_NAME)
    if _same_class(found, layer_class):
        return
    what = (
        "nothing"
        if found is None
        else f"{getattr(found, '__module__', '?')}.{getattr(found, '__qualname__', found)!s}"
    )
    raise KerasRegistrationError(
        f"Keras' serializable name '{KERAS_NAME}' maps to {what}, not to attnkit's "
        f"{layer_class.__module__}.AttentionLayer: a saved file would load as that object. "
        "Code run after attnkit was imported registered that object under attnkit's name "
        "(keras.saving.register_keras_serializable overwrites silently); register it under its "
        "own package instead."
    )


def check_spec_loads(layer_name: str, spec: str) -> None:
    """The canonical spec a config saves must parse back when the file is loaded (the grammar
    caps a spec at ``MAX_SPEC_LENGTH`` characters); refused here, when saving, instead."""
    try:
        parse(spec)
    except SpecError as error:
        raise SerializationError(
            f"layer '{layer_name}': cannot save its spec, which could not be loaded back: "
            f"{error.reason}. Shorten it: fewer parameters away from their defaults"
        ) from error


def check_registered(layer_name: str, component: Any) -> None:
    """A component saved by its spec token must be what the registry resolves that token to."""
    cls = type(component)
    where = f"layer '{layer_name}': cannot save {component.kind} '{component.name}'"
    try:
        info = registry().get(component.name)
    except (UnknownComponentError, PluginConflictError) as error:
        problem = str(error).splitlines()[0]
    else:
        if _same_class(info.cls, cls):
            return
        problem = (
            f"the name belongs to {info.cls.__module__}.{info.cls.__qualname__} "
            f"from {info.distribution} {info.version}"
        )
    raise SerializationError(
        f"{where} ({cls.__module__}.{cls.__qualname__}): no installed plugin registers this "
        f"class ({problem}), so a saved file could not rebuild it from its spec. Register it "
        "as a plugin: a distribution with an 'attnkit' entry point whose "
        "@attnkit.hookimpl attnkit_add_components() returns it (docs/plugins.md); install it "
        "and build the layer from its spec text."
    )


def check_saved_activation(layer_name: Any, saved: Any) -> None:
    """A saved ``attention_activation`` must be one Keras can look up by name (safe mode)."""
    if saved is None:
        return
    if isinstance(saved, dict) and ("value" in saved or saved.get("class_name") == "__lambda__"):
        problem = "it is Python bytecode (Keras' form of a lambda), and attnkit runs no saved code"
    else:
        try:
            keras.activations.get(saved)  # the lookup __init__ does, without Keras' TypeError
            return
        except (TypeError, ValueError) as error:
            problem = str(error).splitlines()[0][:300]
    raise SerializationError(
        f"layer '{layer_name}': the saved attention_activation cannot be loaded: {problem}. "
        "Save the layer with an activation name such as 'tanh', or a module-level function "
        "registered with @keras.saving.register_keras_serializable(package='<yours>')."
    )


def activation_config(layer_name: str, activation: Any) -> Any:
    """``attention_activation`` as Keras saves it, refusing what Keras saves as code or as a
    name that means nothing outside this function (a lambda, a local function, an object of an
    unregistered class).

    A plain module-level function passes even when unregistered: Keras saves its name, and
    ``load_model(..., custom_objects={name: fn})`` brings it back without running saved code.
    """
    if activation is None:
        return None
    qualname = getattr(activation, "__qualname__", "")
    try:
        registered = keras.saving.get_registered_object(
            keras.saving.get_registered_name(activation)
        )
    except AttributeError:  # a callable without a __name__ (a partial, a layer instance)
        registered = None
    if getattr(activation, "__name__", "") == "<lambda>":
        problem = "a lambda is saved as Python bytecode, which load_model refuses in safe mode"
    elif "<locals>" in qualname and registered is not activation:
        problem = f"{qualname} is a local function; its name cannot be looked up when loading"
    else:
        try:
            saved = keras.activations.serialize(activation)
        except Exception as error:  # Keras' own message says what it could not do
            problem = f"Keras cannot serialize it ({type(error).__name__}: {error})"
        else:
            if (
                isinstance(saved, str)
                or registered is activation
                or isinstance(activation, types.FunctionType)
                or _keras_rebuilds(saved)
            ):
                return saved
            problem = (
                f"Keras saves it as an instance of {type(activation).__qualname__}, "
                "a class it cannot rebuild when loading"
            )
    raise SerializationError(
        f"layer '{layer_name}': cannot save attention_activation={activation!r}: {problem}. "
        "Pass an activation name such as 'tanh', or a module-level function registered with "
        "@keras.saving.register_keras_serializable(package='<yours>')."
    )


def _keras_rebuilds(saved: Any) -> bool:
    """Whether ``saved`` is the config of one of Keras' own classes (``keras.layers.ReLU()``),
    which Keras rebuilds when loading, in safe mode too."""
    if not isinstance(saved, dict):
        return False
    module = str(saved.get("module", ""))
    if module != "keras" and not module.startswith("keras."):
        return False
    try:
        keras.activations.get(saved)
    except (TypeError, ValueError):
        return False
    return True


def known(name: str) -> bool:
    return any(c.name == name for c in registry().components())
