"""Slot rules: from a parsed spec and a registry to a :class:`Resolved` set of components.

One scorer; zero or more masks, ANDed (none means ``full``; ``full`` cannot be combined with
another mask; a mask may not appear twice); at most one pooling (none means ``seq``). The
canonical text is scorer, masks sorted, pooling, with every default left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from attnkit.components import KINDS, Component, Mask, Pooling, Scorer
from attnkit.errors import SpecSlotError, UnknownComponentError
from attnkit.spec import Spec, Token

if TYPE_CHECKING:
    from attnkit.registry import Registry

__all__ = ["DEFAULT_POOLING", "IDENTITY_MASK", "Resolved", "fill_slots"]

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


def fill_slots(registry: Registry, spec: Spec) -> Resolved:
    """Look every token up in ``registry`` and check the slot rules.

    Raises:
        UnknownComponentError, SpecParameterError, SpecSlotError: with a caret under the token.
    """
    text = spec.text or str(spec)
    found: dict[str, list[tuple[Component, Token]]] = {k: [] for k in KINDS}
    plugins: dict[str, str] = {}
    for token in spec.tokens:
        try:
            info = registry.get(token.name)
        except UnknownComponentError:
            raise UnknownComponentError(
                f"unknown component '{token.name}'",
                text,
                token.start,
                token.start + len(token.name),
                registry.suggest(token.name),
            ) from None
        found[info.kind].append((info.cls.from_token(token, text), token))
        if not info.builtin:
            plugins[info.name] = f"{info.distribution}=={info.version}"

    def slot_error(reason: str, token: Token, hint: str | None = None) -> SpecSlotError:
        return SpecSlotError(reason, text, token.start, token.end, hint)

    scorers, masks, poolings = found["scorer"], found["mask"], found["pooling"]
    if not scorers:
        raise SpecSlotError(
            f"spec {text!r} names no scorer",
            text,
            0,
            len(text),
            "add one: " + ", ".join(c.name for c in registry.components("scorer")),
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
    default_pooling = registry.get(DEFAULT_POOLING).cls()
    pooling = poolings[0][0] if poolings else default_pooling
    if mask_list and not pooling.accepts_masks:
        raise slot_error(
            f"pooling '{pooling.name}' takes no masks; found '{mask_list[0].name}'",
            poolings[0][1],
        )
    return Resolved.of(scorers[0][0], tuple(mask_list), pooling, plugins)
