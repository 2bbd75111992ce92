"""Checks on a component's API: an attrs frozen value with a valid name, whose token parses back
to it and whose class refuses parameters it does not have.

Each check is ``check_<property>(subject, device)``: it returns None, raises
:class:`CheckFailure` naming the component and what it saw, or :class:`SkipCheck` with why.
"""

from __future__ import annotations

import attrs

from attnkit.conformance._harness import CheckFailure, Subject
from attnkit.errors import SpecParameterError

__all__ = [
    "check_frozen_and_hashable",
    "check_name_is_valid",
    "check_token_round_trip",
    "check_unknown_parameter_rejected",
]


def check_frozen_and_hashable(subject: Subject, device: str) -> None:
    """The component is an attrs frozen class, hashable, equal to a copy of itself."""
    component = subject.component
    if not attrs.has(type(component)):
        raise CheckFailure(f"{subject.label}: {type(component).__name__} is not an attrs class")
    fields = attrs.fields(type(component))
    if fields:
        try:
            setattr(component, fields[0].name, getattr(component, fields[0].name))
        except attrs.exceptions.FrozenInstanceError:
            pass
        else:
            raise CheckFailure(
                f"{subject.label}: assigning field {fields[0].name!r} succeeded; "
                "decorate the class with @attrs.frozen"
            )
    try:
        hash(component)
    except TypeError as error:
        raise CheckFailure(f"{subject.label}: not hashable ({error})") from error
    if attrs.evolve(component) != component:
        raise CheckFailure(f"{subject.label}: a copy with the same fields compares unequal")


def check_name_is_valid(subject: Subject, device: str) -> None:
    """``name`` is a lower-case spec NAME that does not end in a digit."""
    from attnkit.spec import is_name

    name = type(subject.component).name
    if not isinstance(name, str) or not is_name(name):
        raise CheckFailure(
            f"{subject.label}: name {name!r} is not a valid spec name "
            "([a-z][a-z0-9_]*, not ending in a digit)"
        )


def check_token_round_trip(subject: Subject, device: str) -> None:
    """The canonical token parses back (through the grammar) to an equal component."""
    from attnkit.spec import parse

    component = subject.component
    text = str(component)
    try:
        parsed = parse(text)
        again = type(component).from_token(parsed.tokens[0], text)
    except Exception as error:
        raise CheckFailure(
            f"{subject.label}: its token {text!r} does not parse back: "
            f"{type(error).__name__}: {error}"
        ) from error
    if len(parsed.tokens) != 1 or again != component:
        raise CheckFailure(f"{subject.label}: token {text!r} parses back to {again!r}")


def check_unknown_parameter_rejected(subject: Subject, device: str) -> None:
    """An unknown parameter raises the grammar's SpecParameterError."""
    from attnkit.spec import Token

    cls = type(subject.component)
    token = Token(cls.name, None, (("no_such_parameter", 1),))
    try:
        cls.from_token(token, str(token))
    except SpecParameterError:
        return
    except Exception as error:
        raise CheckFailure(
            f"{subject.label}: an unknown parameter raised "
            f"{type(error).__name__}, not SpecParameterError"
        ) from error
    raise CheckFailure(f"{subject.label}: accepted the unknown parameter 'no_such_parameter'")
