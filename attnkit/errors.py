"""The exceptions and warnings attnkit raises; every one names what failed, where, and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ArgumentError",
    "AttnkitError",
    "AttnkitPluginWarning",
    "CaptureError",
    "ComponentError",
    "InputShapeError",
    "InputTypeError",
    "KerasRegistrationError",
    "LayerNotFoundError",
    "MaskShapeError",
    "MissingDependencyError",
    "MissingPluginError",
    "NonFiniteError",
    "PlotError",
    "PluginConflictError",
    "PluginLoadError",
    "SerializationError",
    "SpecError",
    "SpecParameterError",
    "SpecSlotError",
    "SpecSyntaxError",
    "UnknownComponentError",
    "did_you_mean",
]


class AttnkitError(Exception):
    """Base class of every error attnkit raises on purpose."""


class SpecError(AttnkitError, ValueError):
    """A spec string that cannot be parsed or resolved.

    The message shows the spec with a caret under the offending columns.

    Attributes:
        spec: the text as given.
        start: first offending column (0-based), or None when the whole spec is at fault.
        end: one past the last offending column.
        reason: the first line of the message, without the caret block.
    """

    def __init__(
        self,
        reason: str,
        spec: str | None = None,
        start: int | None = None,
        end: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = reason
        self.spec = spec
        self.start = start
        self.end = end
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        lines = [self.reason]
        if self.spec is not None:
            shown, start, end = _window(self.spec, self.start, self.end)
            lines.append(f"  {shown!s}")
            if start is not None and start <= len(shown):
                width = max(1, min(end, len(shown)) - start)
                lines.append("  " + " " * start + "^" * width)
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)

    def __reduce__(self):  # keep pickling (multiprocessing, pytest-xdist) working
        return (type(self), (self.reason, self.spec, self.start, self.end, self.hint))


#: Columns of spec text an error message shows around the bad token.
SHOWN = 120


def _window(spec: str, start: int | None, end: int | None) -> tuple[str, int | None, int]:
    """(the text shown, the caret's start and end in it): the whole spec when it fits in
    :data:`SHOWN` columns, else a window around the bad columns with ``...`` where it is cut."""
    end = (start + 1 if start is not None else 0) if end is None else end
    if len(spec) <= SHOWN:
        return spec, start, end
    if start is None:
        return spec[: SHOWN - 3] + "...", None, 0
    # Keep the bad columns (up to 60 of them) with some context on the left.
    first = max(0, min(start - 40, len(spec) - SHOWN))
    last = min(len(spec), first + SHOWN)
    shown = spec[first:last]
    offset = first
    if first > 0:
        shown, offset = "..." + shown[3:], first
    if last < len(spec):
        shown = shown[:-3] + "..."
    return shown, start - offset, min(end, last) - offset


class SpecSyntaxError(SpecError):
    """The text does not follow the spec grammar (a character, a number, a bracket)."""


class UnknownComponentError(SpecError):
    """A token names no registered component."""


class MissingPluginError(UnknownComponentError):
    """A saved spec names a component whose plugin distribution is not installed here."""


class SpecParameterError(SpecError):
    """A component was given a parameter it does not have, or a value it does not accept."""


class SpecSlotError(SpecError):
    """The tokens do not fill the slots: not exactly one scorer, two poolings, a conflict."""


class ArgumentError(AttnkitError, ValueError):
    """An argument of ``AttentionLayer`` out of its range, or one attnkit does not take."""


class ComponentError(AttnkitError, ValueError):
    """A component misbehaved at build or call time (wrong shape, bad weights)."""


class InputShapeError(AttnkitError, ValueError):
    """The inputs of a layer do not have a shape its spec can take."""


class MaskShapeError(AttnkitError, ValueError):
    """A mask passed to a layer does not match the shape of its inputs."""


class LayerNotFoundError(AttnkitError, ValueError):
    """A model holds no ``AttentionLayer`` of the name asked for (or the name is another layer's).

    The message lists the ``AttentionLayer`` names the model does hold and the closest ones.
    """


class CaptureError(AttnkitError, RuntimeError):
    """A layer's weights could not be recorded: it did not run eagerly, or ran several times in
    one call of its model."""


class PlotError(AttnkitError, ValueError):
    """Weights or arguments :mod:`attnkit.viz` cannot draw or save: a shape, a label count, a
    file suffix."""


class MissingDependencyError(AttnkitError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class PluginLoadError(AttnkitError, ImportError):
    """A plugin could not be loaded (raised instead of a warning in strict mode)."""


class PluginConflictError(AttnkitError, ValueError):
    """Two distributions provide a component under the same name."""


class AttnkitPluginWarning(UserWarning):
    """A plugin was skipped; the message names its entry point, distribution and version."""


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``word`` among ``candidates``, best first (difflib, cutoff 0.6)."""
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=0.6)


class NonFiniteError(AttnkitError, FloatingPointError):
    """Debug mode (:mod:`attnkit.debug`) found a NaN or an infinity; the message names the
    layer, the stage (input, scores, weights, output) and the component with its distribution."""


class SerializationError(AttnkitError, ValueError):
    """A layer cannot be saved so that it loads back safely (a component no plugin registers, an
    activation Keras cannot name), or a saved config holds a field attnkit refuses to use."""


class KerasRegistrationError(PluginConflictError):
    """Keras' serializable registry maps attnkit's own name (``attnkit>AttentionLayer``) to
    another object, so a saved file would load as that object."""


class InputTypeError(AttnkitError, TypeError):
    """An input of a type the layer does not take (a ``tf.RaggedTensor``); the message says
    what to pass instead."""
