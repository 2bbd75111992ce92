"""The spec grammar: text in, a :class:`Spec` of tokens out. Knows no registry and no Keras.

Grammar (whitespace is allowed around ``+ ( ) , =`` and at both ends, nowhere else)::

    spec   := token ('+' token)*
    token  := NAME [NUMBER] ['(' [arg (',' arg)*] ')']
    NAME   := [a-z] ([a-z0-9_]* [a-z_])?     never ends in a digit, so "local15" is unambiguous
    NUMBER := '0' | [1-9][0-9]*              ASCII digits only, at most 2**31 - 1
    arg    := NAME '=' value
    value  := int | float | 'true' | 'false' | 'none' | NAME | quoted string
    int    := ['-'] NUMBER                  no leading zeros, as NUMBER
    float  := ['-'] (NUMBER | '') ['.' [0-9]*] [('e' | 'E') ['+' | '-'] [0-9]+]

Examples: ``additive+local15+seq``, ``dot(scale=sqrt)+causal``,
``bahdanau(units=64)+last(units=128)``.

The tokenizer is a single left-to-right scan (linear time, no backtracking regex, no recursion),
never calls ``eval``/``import``, and caps the input at :data:`MAX_SPEC_LENGTH` characters. Every
failure is a :class:`~attnkit.errors.SpecSyntaxError` with a caret under the offending columns.
"""

from __future__ import annotations

import math
from typing import Union

import attrs

from attnkit.errors import SpecSyntaxError

__all__ = [
    "MAX_NUMBER",
    "MAX_SPEC_LENGTH",
    "Spec",
    "Token",
    "Value",
    "format_value",
    "parse",
    "unwritable",
]

MAX_SPEC_LENGTH = 256
MAX_NUMBER = 2**31 - 1
KEYWORDS = {"true": True, "false": False, "none": None}

Value = Union[int, float, bool, str, None]  # noqa: UP007 - a runtime alias, Python 3.9 syntax

_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
_NAME_BODY = _LOWER | _DIGITS | {"_"}
_SPACE = frozenset(" \t")


def is_name(text: str) -> bool:
    """True if ``text`` is a valid NAME of the grammar."""
    return (
        bool(text)
        and text[0] in _LOWER
        and all(c in _NAME_BODY for c in text)
        and text[-1] not in _DIGITS
    )


def format_value(value: Value) -> str:
    """The spec text of an argument value; ``parse`` reads it back to an equal value."""
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _shortest_float(value)
    if isinstance(value, str):
        if is_name(value) and value not in KEYWORDS:
            return value
        for quote in ("'", '"'):
            if quote not in value:
                return f"{quote}{value}{quote}"
    raise ValueError(f"cannot write {value!r} in a spec: expected int, float, bool, None or str")


def _shortest_float(value: float) -> str:
    """The shortest text that reads back as exactly ``value`` and still reads as a float:
    ``repr`` (``0.1``, ``2.0``) unless an exponent is shorter (``1e+15`` -> ``1e15``, where
    ``repr`` writes ``1000000000000000.0``)."""
    text = repr(value)
    if not math.isfinite(value):
        return text
    mantissa, _, exponent = f"{value:.16e}".partition("e")
    for digits in range(17):
        candidate = f"{value:.{digits}e}"
        if float(candidate) == value:
            mantissa, _, exponent = candidate.partition("e")
            break
    scientific = f"{mantissa}e{int(exponent)}"
    return scientific if len(scientific) < len(text) else text


def unwritable(value: Value) -> str | None:
    """Why ``value`` cannot stand in a spec as a parameter value (it would not read back as an
    equal value of the same type), or None when it can."""
    try:
        text = format_value(value)
    except ValueError as error:
        return str(error)
    try:
        ((_, back),) = parse(f"x(v={text})").tokens[0].args
    except SpecSyntaxError as error:
        return f"its text {text!r} is not a spec value: {error.reason}"
    if type(back) is not type(value) or back != value:
        return f"its text {text!r} reads back as {back!r}"
    return None


@attrs.frozen
class Token:
    """One component reference, e.g. ``local15`` or ``additive(units=64)``.

    Attributes:
        name: the component name.
        number: the shorthand number written right after the name, or None.
        args: ``(key, value)`` pairs in the order written.
        start, end: the columns the token spans in the spec text (not part of equality).
    """

    name: str
    number: int | None = None
    args: tuple[tuple[str, Value], ...] = ()
    start: int = attrs.field(default=0, eq=False)
    end: int = attrs.field(default=0, eq=False)

    def __str__(self) -> str:
        text = self.name + ("" if self.number is None else str(self.number))
        if self.args:
            text += "(" + ", ".join(f"{k}={format_value(v)}" for k, v in self.args) + ")"
        return text


@attrs.frozen
class Spec:
    """A parsed spec: the tokens in the order written. ``str(spec)`` is the normalised text."""

    tokens: tuple[Token, ...]
    text: str = attrs.field(default="", eq=False)

    def __str__(self) -> str:
        return "+".join(str(t) for t in self.tokens)


def parse(text: str) -> Spec:
    """Parse spec text into a :class:`Spec`.

    Raises:
        SpecSyntaxError: the text is not a string, too long, or not in the grammar.
    """
    if not isinstance(text, str):
        raise SpecSyntaxError(
            f"a spec must be a string such as 'additive+local15+seq'. Received: {text!r}"
        )
    if len(text) > MAX_SPEC_LENGTH:
        raise SpecSyntaxError(
            f"spec is {len(text)} characters long; the limit is {MAX_SPEC_LENGTH}",
            text[:MAX_SPEC_LENGTH],
            MAX_SPEC_LENGTH - 1,
            MAX_SPEC_LENGTH,
        )
    return _Parser(text).spec()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- helpers ----------------------------------------------------------------------------
    def fail(self, reason: str, start: int | None = None, end: int | None = None, hint=None):
        start = self.pos if start is None else start
        end = start + 1 if end is None else end
        raise SpecSyntaxError(reason, self.text, start, end, hint)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek() in _SPACE and self.peek():
            self.pos += 1

    def describe(self) -> str:
        char = self.peek()
        return "the end of the spec" if not char else repr(char)

    def expect(self, char: str, what: str) -> None:
        self.skip_space()
        if self.peek() != char:
            self.fail(f"expected {what}, found {self.describe()}")
        self.pos += 1

    # -- grammar ----------------------------------------------------------------------------
    def spec(self) -> Spec:
        self.skip_space()
        if not self.peek():
            self.fail(
                "empty spec: name at least a scorer, e.g. 'dot' or 'additive+local15+seq'", 0, 1
            )
        tokens = [self.token()]
        while True:
            self.skip_space()
            char = self.peek()
            if not char:
                break
            if char != "+":
                hint = None
                if char in _DIGITS and tokens[-1].args == ():
                    hint = "a number belongs right after the name, without spaces: 'local15'"
                self.fail(
                    f"expected '+' or the end of the spec, found {self.describe()}", hint=hint
                )
            self.pos += 1
            self.skip_space()
            tokens.append(self.token())
        return Spec(tuple(tokens), self.text)

    def name(self, what: str) -> tuple[str, str]:
        """Read a NAME run; returns (name, trailing digits) split per the grammar."""
        start = self.pos
        char = self.peek()
        if char not in _LOWER or not char:
            hint = None
            if char.isalpha() and char.lower() in _LOWER:
                hint = "names are lower case"
            elif char == "+":
                hint = "two '+' in a row, or a '+' at an end"
            self.fail(f"expected {what} (a lower-case name), found {self.describe()}", hint=hint)
        while self.peek() in _NAME_BODY and self.peek():
            self.pos += 1
        run = self.text[start : self.pos]
        body = run.rstrip("0123456789")
        if self.peek().isalnum():  # e.g. 'local١٥' or 'Local': a character outside the grammar
            self.fail(
                f"unexpected character {self.describe()} in {what} {run!r}",
                hint="names use a-z, 0-9 and '_'; numbers use the ASCII digits 0-9",
            )
        return body, run[len(body) :]

    def token(self) -> Token:
        start = self.pos
        name, digits = self.name("a component name")
        number = self.number(digits, start + len(name)) if digits else None
        args: list[tuple[str, Value]] = []
        save = self.pos
        self.skip_space()
        if self.peek() == "(":
            self.pos += 1
            args = self.arguments(name)
        else:
            self.pos = save
        return Token(name, number, tuple(args), start, self.pos)

    def number(self, digits: str, start: int) -> int:
        end = start + len(digits)
        if len(digits) > 1 and digits[0] == "0":
            self.fail(
                f"leading zero in {digits!r}",
                start,
                end,
                hint=f"write {digits.lstrip('0') or '0'}",
            )
        if len(digits) > 10 or int(digits) > MAX_NUMBER:
            self.fail(f"number {digits} is too large; the limit is {MAX_NUMBER}", start, end)
        return int(digits)

    def arguments(self, component: str) -> list[tuple[str, Value]]:
        args: list[tuple[str, Value]] = []
        seen: set[str] = set()
        self.skip_space()
        if self.peek() == ")":
            self.pos += 1
            return args
        while True:
            self.skip_space()
            key_start = self.pos
            key, digits = self.name(f"a parameter name of '{component}'")
            key += digits  # a parameter name may end in digits; only component names may not
            if key in seen:
                self.fail(f"parameter {key!r} given twice", key_start, self.pos)
            seen.add(key)
            self.expect("=", f"'=' after parameter {key!r}")
            self.skip_space()
            args.append((key, self.value()))
            self.skip_space()
            char = self.peek()
            if char == ",":
                self.pos += 1
                continue
            if char == ")":
                self.pos += 1
                return args
            self.fail(
                f"expected ',' or ')' in the arguments of '{component}', found {self.describe()}"
            )

    def value(self) -> Value:
        start = self.pos
        char = self.peek()
        if char in ("'", '"'):
            close = self.text.find(char, start + 1)
            if close < 0:
                self.fail("unterminated string", start, len(self.text))
            self.pos = close + 1
            return self.text[start + 1 : close]
        if char in _LOWER and char:
            name, digits = self.name("a value")
            word = name + digits
            return KEYWORDS[word] if word in KEYWORDS else word
        if char and char in "0123456789-.":
            return self.numeric_value()
        self.fail(
            f"expected a value (number, true, false, none, a name or a quoted string), "
            f"found {self.describe()}"
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def numeric_value(self) -> int | float:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
        int_start = self.pos
        while self.peek() in _DIGITS and self.peek():
            self.pos += 1
        has_int = self.pos > int_start
        digits = self.text[int_start : self.pos]
        if len(digits) > 1 and digits[0] == "0":  # the rule NUMBER has: no leading zeros
            self.fail(
                f"leading zero in {digits!r}",
                int_start,
                self.pos,
                hint=f"write {digits.lstrip('0') or '0'}",
            )
        is_float = False
        if self.peek() == ".":
            is_float = True
            self.pos += 1
            frac_start = self.pos
            while self.peek() in _DIGITS and self.peek():
                self.pos += 1
            if not has_int and self.pos == frac_start:
                self.fail("malformed number", start, self.pos)
        elif not has_int:
            self.fail("malformed number", start, self.pos + 1)
        if self.peek() in ("e", "E"):
            is_float = True
            self.pos += 1
            if self.peek() in ("+", "-"):
                self.pos += 1
            exp_start = self.pos
            while self.peek() in _DIGITS and self.peek():
                self.pos += 1
            if self.pos == exp_start:
                self.fail("malformed exponent", start, self.pos)
        text = self.text[start : self.pos]
        if self.peek().isalnum() or self.peek() == "_":
            self.fail(f"unexpected character {self.describe()} after number {text!r}")
        if not is_float:
            value = int(text)
            if abs(value) > MAX_NUMBER:
                self.fail(f"number {text} is too large; the limit is {MAX_NUMBER}", start, self.pos)
            return value
        number = float(text)
        if not math.isfinite(number):
            self.fail(f"number {text} is not finite", start, self.pos)
        return number
