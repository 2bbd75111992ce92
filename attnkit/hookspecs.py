"""The hooks a plugin implements. attnkit's own built-ins implement them the same way."""

from __future__ import annotations

import pluggy

__all__ = ["hookimpl", "hookspec"]

PROJECT = "attnkit"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marker for plugin functions: ``@attnkit.hookimpl def attnkit_add_components(): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def attnkit_add_components() -> list[type]:
    """Return the component classes this plugin provides.

    Each class subclasses :class:`attnkit.Scorer`, :class:`attnkit.Mask` or
    :class:`attnkit.Pooling`, is an ``attrs`` frozen class whose fields are its spec parameters,
    and has a class attribute ``name`` (lower case, not ending in a digit) unique across kinds.

    Declare the module that holds this hook in the plugin's ``pyproject.toml``::

        [project.entry-points.attnkit]
        cosine = "attnkit_cosine"

    A class that fails validation rejects the whole plugin, which is reported with its
    distribution and skipped; the other plugins still load.
    """
