"""Slot rules: from the components a spec's tokens name to a :class:`Resolved` set of them.

One scorer; zero or more masks, ANDed (none means ``full``; ``full`` cannot be combined with
another mask; a mask may not appear twice); at most one pooling (none means ``seq``). The
canonical text is scorer, masks sorted, pooling, with every default left out.
"""

from __future__ import annotations

import attrs

from attnkit.components import Component, Mask, Pooling, Scorer
from attnkit.errors import SpecSlotError
from attnkit.spec import Token

__all__ = ["DEFAULT_POOLING", "IDENTITY_MASK", "Resolved", "assemble"]

DEFAULT_POOLING = "seq"
IDENTITY_MASK = "full"


@attrs.frozen
class Resolved:
    """A spec resolved to component instances: one scorer, its masks (ANDed), one pooling.

    ``masks`` is empty for ``full``; it is sorted, so equal specs resolve to equal values.
    """

    scorer: Scorer
    masks: tuple[Mask, ...]
    pooling: Pooling
    canonical: str = attrs.field(eq=False)
    #: component name -> "distribution==version", for components that are not built in.
    plugins: dict[str, str] = attrs.field(eq=False, factory=dict, hash=False)

    def __str__(self) -> str:
        return self.canonical

    @classmethod
    def of(
        cls,
        scorer: Scorer,
        masks: tuple[Mask, ...] = (),
        pooling: Pooling | None = None,
        plugins: dict[str, str] | None = None,
    ) -> Resolved:
        """Assemble from instances (no registry lookup); masks are sorted, ``full`` dropped."""
        if pooling is None:
            from attnkit.poolings import Seq

            pooling = Seq()
        kept = tuple(sorted((m for m in masks if m.name != IDENTITY_MASK), key=str))
        parts = [str(scorer)] + [str(m) for m in kept]
        if str(pooling) != DEFAULT_POOLING:
            parts.append(str(pooling))
        return cls(scorer, kept, pooling, "+".join(parts), dict(plugins or {}))


def assemble(
    text: str,
    found: list[tuple[Component, Token]],
    default_pooling: Pooling,
    scorer_names: list[str],
    plugins: dict[str, str] | None = None,
) -> Resolved:
    """Check the slot rules on the components a spec's tokens named, and assemble them.

    Args:
        text: the spec text, for the caret.
        found: (component, its token) in the order written.
        default_pooling: the pooling when none is named (``seq``).
        scorer_names: the registered scorers, suggested when none is named.
        plugins: component name -> ``"distribution==version"`` for non-built-ins.

    Raises:
        SpecSlotError: with a caret under the token.
    """
    scorers = [(c, t) for c, t in found if c.kind == "scorer"]
    masks = [(c, t) for c, t in found if c.kind == "mask"]
    poolings = [(c, t) for c, t in found if c.kind == "pooling"]

    def slot_error(reason: str, token: Token, hint: str | None = None) -> SpecSlotError:
        return SpecSlotError(reason, text, token.start, token.end, hint)

    if not scorers:
        raise SpecSlotError(
            f"spec {text!r} names no scorer",
            text,
            0,
            len(text),
            "add one: " + ", ".join(scorer_names),
        )
    for what, entries, most in (("scorer", scorers, "one"), ("pooling", poolings, "at most one")):
        if len(entries) > 1:
            raise slot_error(
                f"a spec takes {most} {what}; found '{entries[0][1].name}' and "
                f"'{entries[1][1].name}'",
                entries[1][1],
            )
    seen: dict[str, Token] = {}
    for mask, token in masks:
        if mask.name in seen:
            raise slot_error(f"mask '{mask.name}' appears twice", token)
        seen[mask.name] = token
    if IDENTITY_MASK in seen and len(masks) > 1:
        other = next(t for m, t in masks if m.name != IDENTITY_MASK)
        raise slot_error(
            f"'{IDENTITY_MASK}' allows every key, so it cannot be combined with '{other.name}'",
            seen[IDENTITY_MASK],
            f"drop '{IDENTITY_MASK}' (no mask means full attention)",
        )
    mask_list = sorted((m for m, _ in masks if m.name != IDENTITY_MASK), key=str)
    pooling = poolings[0][0] if poolings else default_pooling
    if mask_list and not pooling.accepts_masks:
        raise slot_error(
            f"pooling '{pooling.name}' takes no masks; found '{mask_list[0].name}'",
            poolings[0][1],
        )
    return Resolved.of(scorers[0][0], tuple(mask_list), pooling, plugins)
