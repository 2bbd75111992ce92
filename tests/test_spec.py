"""The spec grammar and its resolution: round trips, canonical text, errors with carets.

Holds guarantees G1-G6 (docs/guarantees.md) and the grammar of the README. Everything here runs
against the built-in components only, through the process-wide registry.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import math
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import attnkit
import attnkit.masks
import attnkit.poolings
import attnkit.scorers
from attnkit import (
    SpecError,
    SpecParameterError,
    SpecSlotError,
    SpecSyntaxError,
    UnknownComponentError,
    parse,
)
from attnkit.spec import MAX_NUMBER, MAX_SPEC_LENGTH, Spec, format_value

SCORER_NAMES = {"dot", "general", "additive", "bahdanau", "gaussian", "dense", "concat"}


def resolve(spec):
    return attnkit.registry().resolve(spec)


def caret_span(message: str) -> tuple[int, int]:
    """(start, end) of the spec columns the caret line of an error message points at."""
    lines = [line for line in message.splitlines() if line.strip() and set(line.strip()) == {"^"}]
    assert len(lines) == 1, f"expected exactly one caret line in:\n{message}"
    line = lines[0]
    first = line.index("^")
    return first - 2, first - 2 + line.count("^")


def assert_points_at(error: SpecError, spec: str, start: int, end: int | None = None) -> None:
    """The message quotes the spec and puts its carets under columns start..end."""
    message = str(error)
    assert "  " + spec in message.splitlines(), message
    got_start, got_end = caret_span(message)
    assert got_start == start, message
    assert error.start == start
    if end is not None:
        assert got_end == end, message
        assert error.end == end


# -- round trip and canonical form (G2) --------------------------------------------------------

CANONICAL = [
    ("additive+local15+seq", "additive+local15"),
    (" dot ( scale = sqrt ) + causal ", "dot(scale=sqrt)+causal"),
    ("seq+local15+additive", "additive+local15"),
    ("bahdanau(units=64)+last(units=128)", "bahdanau(units=64)+last(units=128)"),
    ("gaussian(sigma=0.5)", "gaussian(sigma=0.5)"),
    ("dot+weighted", "dot+weighted"),
    ("dense+gate(shared=true)", "dense+gate(shared=true)"),
    ("general(use_bias=true)+causal15+local5", "general(use_bias=true)+causal15+local5"),
    ("local5+general(use_bias=true)+causal15", "general(use_bias=true)+causal15+local5"),
    ("dot+full+seq", "dot"),
    ("dot+full", "dot"),
    ("additive(units=32)", "additive"),
    ("additive(units=32, use_additive_bias=true, use_attention_bias=true)", "additive"),
    (
        "additive(use_attention_bias=false, units=64)",
        "additive(units=64, use_attention_bias=false)",
    ),
    ("dot(scale=none)", "dot"),
    ("dot(scale='sqrt')", "dot(scale=sqrt)"),
    ('dot(scale="learned")', "dot(scale=learned)"),
    ("dot(scale=2)", "dot(scale=2.0)"),
    ("dot()", "dot"),
    ("local(width=3)+dot", "dot+local3"),
    ("causal(width=none)+dot", "dot+causal"),
    ("causal(width=7)+dot", "dot+causal7"),
    ("last+dot", "dot+last"),
    ("last(units=none)+dot", "dot+last"),
    ("gate(shared=false)+dense", "dense+gate"),
    ("bahdanau(units=none)", "bahdanau"),
    ("gaussian(sigma=none)", "gaussian"),
    ("\tdot\t+\tlocal3\t", "dot+local3"),
]


@pytest.mark.parametrize(("spec", "canonical"), CANONICAL)
def test_g2_canonical_text(spec, canonical):
    resolved = resolve(spec)
    assert resolved.canonical == canonical
    assert str(resolved) == canonical
    again = resolve(resolved.canonical)
    assert again == resolved
    assert again.canonical == canonical
    # The canonical text is already normalised: parsing it gives it back unchanged.
    assert str(parse(canonical)) == canonical


@pytest.mark.parametrize("spec", [s for s, _ in CANONICAL])
def test_g2_str_of_parse_reparses_to_an_equal_spec(spec):
    parsed = parse(spec)
    assert isinstance(parsed, Spec)
    assert parsed.text == spec
    reparsed = parse(str(parsed))
    assert reparsed == parsed
    assert str(reparsed) == str(parsed)


def test_g2_token_order_does_not_matter():
    tokens = ["general(use_bias=true)", "causal15", "local5", "last(units=8)"]
    results = {
        "+".join(order): resolve("+".join(order)) for order in itertools.permutations(tokens)
    }
    assert len(results) == 24
    first = next(iter(results.values()))
    for spec, resolved in results.items():
        assert resolved == first, spec
        assert resolved.canonical == "general(use_bias=true)+causal15+local5+last(units=8)"
    assert len(set(results.values())) == 1  # Resolved is hashable and equal across orders


def test_g6_resolved_holds_builtin_instances_and_defaults_fill_omitted_slots():
    resolved = resolve("bahdanau(units=64)+local15+causal+last(units=128)")
    assert resolved.scorer == attnkit.scorers.Bahdanau(units=64)
    assert resolved.masks == (attnkit.masks.Causal(), attnkit.masks.Local(width=15))
    assert resolved.pooling == attnkit.poolings.Last(units=128)
    assert resolved.plugins == {}
    default = resolve("dot")
    assert default.masks == ()  # no mask means full
    assert default.pooling == attnkit.poolings.Seq()


def test_g2_policy_order_and_whitespace_are_normalised_case_is_rejected():
    """The documented policy: token order and whitespace are canonicalised; upper case is an
    error (never silently folded), at the first offending column."""
    assert resolve(" additive + local15 ").canonical == "additive+local15"
    assert resolve("additive+local15+seq") == resolve("seq+local15+additive")
    with pytest.raises(SpecSyntaxError, match="lower case") as info:
        resolve(" Additive + LOCAL15 ")
    assert info.value.start == 1


def test_g2_get_config_stores_the_canonical_spec():
    layer = attnkit.AttentionLayer(" seq + local15 + additive(units=32) ")
    assert layer.spec == "additive+local15"
    assert layer.get_config()["spec"] == "additive+local15"
    clone = attnkit.AttentionLayer.from_config(layer.get_config())
    assert clone.resolved == layer.resolved


def test_g2_resolve_accepts_a_parsed_spec():
    parsed = parse("seq+local15+additive")
    assert resolve(parsed) == resolve("additive+local15")
    assert resolve(parsed).canonical == "additive+local15"


def test_g2_whitespace_and_positions_are_not_part_of_equality():
    assert parse("dot+local3") == parse("  dot +  local3 ")
    tokens = parse("  dot +  local3 ").tokens
    assert [(t.start, t.end) for t in tokens] == [(2, 5), (9, 15)]


# -- errors: type, caret, suggestions (G1, G4, G6) ----------------------------------------------

# (spec, expected class, start, end) of the offending columns.
ERRORS = [
    # unknown names
    ("addtive+local15", UnknownComponentError, 0, 7),
    ("dot+lcoal15", UnknownComponentError, 4, 9),
    ("xyzzy", UnknownComponentError, 0, 5),
    ("dot+xyzzy", UnknownComponentError, 4, 9),
    # parameters
    ("dot(scal=1)", SpecParameterError, 0, 11),
    ("local", SpecParameterError, 0, 5),
    ("local0", SpecParameterError, 0, 6),
    ("dot3", SpecParameterError, 0, 4),
    ("dot(scale=-1)", SpecParameterError, 0, 13),
    ("dot(scale=0)", SpecParameterError, 0, 12),
    ("dot(scale=cube)", SpecParameterError, 0, 15),
    ("additive(units=0)", SpecParameterError, 0, 17),
    ("additive(units=true)", SpecParameterError, 0, 20),
    ("additive(units=1.5)", SpecParameterError, 0, 19),
    ("additive(units='64')", SpecParameterError, 0, 20),
    ("local15(width=3)", SpecParameterError, 0, 16),
    ("dot+local15(width=3)", SpecParameterError, 4, 20),
    ("dot+gate(shared=1)", SpecParameterError, 4, 18),
    ("gaussian(sigma=0)", SpecParameterError, 0, 17),
    ("dot+causal0", SpecParameterError, 4, 11),
    # slots
    ("dot+additive", SpecSlotError, 4, 12),
    ("dot+last+seq", SpecSlotError, 9, 12),
    ("dot+full+causal", SpecSlotError, 4, 8),
    ("dot+causal+full", SpecSlotError, 11, 15),
    ("dot+causal+causal", SpecSlotError, 11, 17),
    ("dot+causal+causal5", SpecSlotError, 11, 18),
    ("local15", SpecSlotError, 0, 7),
    ("dense+local3+gate", SpecSlotError, 13, 17),
    # syntax
    ("", SpecSyntaxError, 0, 1),
    ("   ", SpecSyntaxError, 0, 1),
    ("dot+", SpecSyntaxError, 4, 5),
    ("+dot", SpecSyntaxError, 0, 1),
    ("dot++local3", SpecSyntaxError, 4, 5),
    ("dot(scale=1", SpecSyntaxError, 11, 12),
    ("dot(scale)", SpecSyntaxError, 9, 10),
    ("dot(scale='sqrt)", SpecSyntaxError, 10, 16),
    ("dot(scale=1, scale=2)", SpecSyntaxError, 13, 18),
    ("dot(scale=1e999)", SpecSyntaxError, 10, 15),
    ("dot(scale=3000000000)", SpecSyntaxError, 10, 20),
    ("dot\n+local3", SpecSyntaxError, 3, 4),
    ("DOT", SpecSyntaxError, 0, 1),
]


@pytest.mark.parametrize(("spec", "cls", "start", "end"), ERRORS)
def test_g1_error_class_and_caret(spec, cls, start, end):
    with pytest.raises(cls) as info:
        resolve(spec)
    error = info.value
    assert type(error) is cls
    assert isinstance(error, SpecError)
    assert isinstance(error, ValueError)
    assert isinstance(error, attnkit.AttnkitError)
    assert error.spec == spec
    if "\n" in spec:  # the quoted spec spans two lines; check the columns only
        assert error.start == start and error.end == end
        return
    assert_points_at(error, spec, start, end)


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [
        ("addtive+local15", "additive"),
        ("dot+lcoal15", "local"),
        ("dot(scal=1)", "scale"),
        ("gausian", "gaussian"),
        ("dot+casual", "causal"),
        ("dot+wieghted", "weighted"),
        ("additive(unit=3)", "units"),
    ],
)
def test_g4_did_you_mean(spec, suggestion):
    with pytest.raises(SpecError) as info:
        resolve(spec)
    assert f"did you mean {suggestion!r}" in str(info.value)


def test_g4_nonsense_name_lists_valid_options_without_a_suggestion():
    with pytest.raises(UnknownComponentError) as info:
        resolve("xyzzy")
    message = str(info.value)
    assert "did you mean" not in message
    scorer_line = next(line for line in message.splitlines() if line.startswith("valid scorers:"))
    for name in ("dot", "general", "additive", "bahdanau", "gaussian", "dense"):
        assert name in scorer_line
    lines = message.splitlines()
    assert any(line.startswith("valid masks:") and "local" in line for line in lines)
    assert any(line.startswith("valid poolings:") and "seq" in line for line in lines)


def test_g4_message_format():
    """The whole message: reason, the spec with carets, suggestions, then the valid names of
    every slot, one line each (the names are the registry's, so the snapshot stays true)."""
    reg = attnkit.Registry(autoload=False)
    valid = [
        f"valid {kind}s: " + ", ".join(c.name for c in reg.components(kind))
        for kind in ("scorer", "mask", "pooling")
    ]
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("addtive+local15")
    assert str(info.value).splitlines() == [
        "unknown component 'addtive'",
        "  addtive+local15",
        "  ^^^^^^^",
        "did you mean 'additive'?",
        *valid,
    ]
    with pytest.raises(UnknownComponentError) as info:
        reg.resolve("dot+xyzzy")
    assert str(info.value).splitlines() == [
        "unknown component 'xyzzy'",
        "  dot+xyzzy",
        "      ^^^^^",
        *valid,
    ]


def test_g6_no_scorer_is_a_slot_error_listing_the_scorers():
    with pytest.raises(SpecSlotError) as info:
        resolve("local15+last")
    message = str(info.value)
    assert "no scorer" in message
    for name in ("dot", "additive", "gaussian"):
        assert name in message


NON_SCORERS = {
    "full": "mask",
    "local3": "mask",
    "causal": "mask",
    "causal5": "mask",
    "seq": "pooling",
    "last": "pooling",
    "weighted": "pooling",
    "gate": "pooling",
}


def _pair_is_valid(a: str, b: str) -> bool:
    """The slot rules of the grammar, as an oracle for every pair after a scorer."""
    masks = [t for t in (a, b) if NON_SCORERS[t] == "mask"]
    mask_names = [m.rstrip("0123456789") for m in masks]
    if [NON_SCORERS[a], NON_SCORERS[b]].count("pooling") > 1:
        return False  # at most one pooling
    if len(set(mask_names)) != len(mask_names):
        return False  # one mask of each name
    if "full" in masks and len(masks) > 1:
        return False  # full is exclusive
    return not ("gate" in (a, b) and [m for m in masks if m != "full"])  # gate takes no masks


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(NON_SCORERS, 2)))
def test_g6_every_pair_of_tokens(a, b):
    """G6: every pair of mask/pooling tokens beside a scorer resolves or is a slot error that
    names both tokens and points at one of them."""
    spec = f"dense+{a}+{b}"
    if _pair_is_valid(a, b):
        resolved = resolve(spec)
        assert resolve(resolved.canonical) == resolved
        assert resolved.canonical.startswith("dense")
        return
    with pytest.raises(SpecSlotError) as info:
        resolve(spec)
    message = str(info.value)
    for token in (a, b):
        assert repr(token.rstrip("0123456789")) in message
    start, end = caret_span(message)
    assert spec[start:end] in (a, b)
    # Without the scorer the same pair is still a slot error (no scorer first, or the conflict).
    with pytest.raises(SpecSlotError):
        resolve(f"{a}+{b}")


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(sorted(SCORER_NAMES), 2)))
def test_g6_two_scorers_are_a_slot_error_naming_both(a, b):
    with pytest.raises(SpecSlotError) as info:
        resolve(f"{a}+local3+{b}")
    message = str(info.value)
    assert f"'{a}'" in message and f"'{b}'" in message
    assert caret_span(message)[0] == len(f"{a}+local3+")


# -- G3: numeric-suffix pitfalls ----------------------------------------------------------------

# (spec, expected class or None for success, start of the offending columns, text in the message)
NUMERIC = [
    ("dot+local15", None, None, None),
    ("dot+local1", None, None, None),
    (f"dot+local{MAX_NUMBER}", None, None, None),
    ("dot+local\u0661\u0665", SpecSyntaxError, 9, "ASCII"),  # Arabic-Indic 15
    ("dot+local1_5", UnknownComponentError, 4, "local1_"),  # a NAME 'local1_' and the number 5
    ("dot+local 15", SpecSyntaxError, 10, "without spaces"),
    ("dot+local015", SpecSyntaxError, 9, "leading zero"),
    ("dot+local0", SpecParameterError, 4, ">= 1"),
    ("dot+local-3", SpecSyntaxError, 9, "'-'"),
    ("dot+local1.5", SpecSyntaxError, 10, "'.'"),
    ("dot+local", SpecParameterError, 4, "needs 'width'"),
    ("dot+local99999999999999999999", SpecSyntaxError, 9, str(MAX_NUMBER)),
    (f"dot+local{MAX_NUMBER + 1}", SpecSyntaxError, 9, str(MAX_NUMBER)),
    ("dot+local\u00b2", SpecSyntaxError, 9, "ASCII"),  # superscript two: isdigit() but not [0-9]
    ("dot+local\uff11\uff15", SpecSyntaxError, 9, "ASCII"),  # fullwidth 15
    ("dot+Local15", SpecSyntaxError, 4, "lower case"),
    ("dot+LOCAL15", SpecSyntaxError, 4, "lower case"),
    ("Dot+local15", SpecSyntaxError, 0, "lower case"),
]


@pytest.mark.parametrize(("spec", "cls", "start", "text"), NUMERIC)
def test_g3_numeric_suffix_pitfalls(spec, cls, start, text):
    if cls is None:
        resolved = resolve(spec)
        width = int(spec[len("dot+local") :])
        assert resolved.masks == (attnkit.masks.Local(width=width),)
        assert resolved.canonical == spec
        return
    with pytest.raises(cls) as info:
        resolve(spec)
    assert text in str(info.value)
    assert_points_at(info.value, spec, start)


@given(st.integers(min_value=1, max_value=MAX_NUMBER))
def test_g3_every_width_in_range_round_trips(width):
    resolved = resolve(f"local{width}+dot")
    assert resolved.masks == (attnkit.masks.Local(width=width),)
    assert resolved.canonical == f"dot+local{width}"
    assert resolve(resolved.canonical) == resolved


@given(st.integers(min_value=MAX_NUMBER + 1, max_value=10**40))
def test_g3_widths_past_the_limit_are_rejected(width):
    spec = f"dot+local{width}"
    with pytest.raises(SpecSyntaxError) as info:
        parse(spec)
    assert str(MAX_NUMBER) in str(info.value)
    assert_points_at(info.value, spec, 9)


@given(
    st.text(
        st.characters(categories=["Nd"], exclude_characters="0123456789"), min_size=1, max_size=4
    ),
    st.sampled_from(["", "1", "15"]),
)
def test_g3_non_ascii_digits_are_rejected(digits, prefix):
    spec = "dot+local" + prefix + digits
    assert all(c.isdigit() for c in digits)  # so int() would take them: the grammar must not
    with pytest.raises(SpecSyntaxError) as info:
        resolve(spec)
    assert_points_at(info.value, spec, len("dot+local" + prefix))


# -- G5: no eval, no injection -----------------------------------------------------------------

INJECTIONS = [
    "__import__('os').system('id')",
    "dot+{'a':1}",
    "${HOME}",
    "dot;rm -rf /",
    "dot+local15;import os",
    "dot(scale=__import__('os'))",
    "dot(scale=os.system)",
    "dot+`id`",
    "dot+$(id)",
    "dot\x00+local3",
    "x" * 10**6,
    "dot+" * 250_000,
]


@pytest.mark.parametrize("spec", INJECTIONS, ids=lambda s: repr(s[:30]))
def test_g5_injection_attempts_are_spec_errors(spec):
    with pytest.raises(SpecError):
        parse(spec)
    with pytest.raises(SpecError):
        resolve(spec)


def test_g1_overlong_spec_names_the_limit():
    spec = "dot+" + "local3+" * 100
    assert len(spec) > MAX_SPEC_LENGTH
    with pytest.raises(SpecSyntaxError) as info:
        parse(spec)
    assert str(MAX_SPEC_LENGTH) in str(info.value)
    assert str(len(spec)) in str(info.value)
    # Even a 1 MB spec gives a short message.
    with pytest.raises(SpecSyntaxError) as info:
        parse("d" * 10**6)
    assert len(str(info.value)) < 1000


class _Forbidden(Exception):
    pass


_AUDIT = {"on": False, "events": []}


def _audit_hook(event, args, _state=_AUDIT):
    # _state, not the global: the hook outlives the module, whose globals are None at exit.
    if _state["on"] and event in ("exec", "compile", "import"):
        _state["events"].append((event, repr(args)[:200]))


_audit_installed = False


def _install_audit_hook():
    global _audit_installed
    if not _audit_installed:
        sys.addaudithook(_audit_hook)  # cannot be removed; inert unless _AUDIT["on"]
        _audit_installed = True


NO_EVAL_SPECS = [
    "additive+local15+seq",
    " dot ( scale = sqrt ) + causal ",
    "gaussian(sigma=0.5)+causal7+last(units=3)",
    "dot(scale='1+1')",
    "__import__('os').system('id')",
    "dot+{'a':1}",
    "dot(scale=__import__)",
    "addtive+local15",
    "dot+local\u0661",
    "dot(scale=1e999)",
    "local15",
    "dot+additive",
]


def test_g5_parsing_and_resolution_never_eval_exec_compile_or_import(monkeypatch):
    resolve("dot")  # load the registry first: importing the built-in modules is not spec-driven
    _install_audit_hook()

    def forbidden(name):
        def boom(*args, **kwargs):
            raise _Forbidden(f"{name} called with {args!r:.100}")

        return boom

    outcomes = {}
    with monkeypatch.context() as patch:
        for name in ("eval", "exec", "compile", "__import__"):
            patch.setattr(builtins, name, forbidden(name))
        _AUDIT["events"].clear()
        _AUDIT["on"] = True
        try:
            for spec in NO_EVAL_SPECS:
                try:
                    outcomes[spec] = resolve(spec).canonical
                except SpecError as error:
                    outcomes[spec] = type(error)
        finally:
            _AUDIT["on"] = False
    assert _AUDIT["events"] == []
    assert outcomes["additive+local15+seq"] == "additive+local15"
    assert outcomes["gaussian(sigma=0.5)+causal7+last(units=3)"] == (
        "gaussian(sigma=0.5)+causal7+last(units=3)"
    )
    assert outcomes["dot(scale='1+1')"] is SpecParameterError  # a string, never evaluated
    assert outcomes["__import__('os').system('id')"] is SpecSyntaxError
    assert outcomes["addtive+local15"] is UnknownComponentError
    assert outcomes["dot+additive"] is SpecSlotError


#: The only places a module is imported by a computed name: the registry (attnkit's own
#: modules, from a constant tuple, when no entry points are installed) and attnkit.viz's lazy
#: export. Entry points are imported by importlib.metadata, never by name from a spec.
DYNAMIC_IMPORTS = {("plugin_loading.py", "module"), ("__init__.py", "'attnkit.viz'")}


def test_g5_source_has_no_eval_exec_compile_or_stray_dynamic_import():
    """Statically, for all of attnkit: no eval/exec/compile/__import__ call, and importlib
    only where listed above; the spec modules import nothing that could load code."""
    package = Path(attnkit.__file__).parent
    dynamic = set()
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "compile", "__import__"), (
                    f"{path}:{node.lineno}"
                )
            if isinstance(node.func, ast.Attribute) and node.func.attr == "import_module":
                dynamic.add((path.name, ast.unparse(node.args[0])))
    assert dynamic == DYNAMIC_IMPORTS
    for name in ("spec.py", "resolution.py"):
        source = (package / name).read_text()
        assert "importlib" not in source and "getattr(" not in source, name


def test_g5_ruff_finds_no_eval_or_exec():
    """The lint rules the table names (S307 eval, S102 exec), when ruff is installed."""
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
    done = subprocess.run(  # noqa: S603 - ruff on our own package
        [ruff, "check", "--no-cache", "--select", "S307,S102", str(Path(attnkit.__file__).parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- G1: fuzzing --------------------------------------------------------------------------------

GRAMMAR_ALPHABET = "adlocsquetrfn01259_+()=,.-'\" \tLé١²"


@given(st.text())
def test_g1_any_text_is_a_spec_or_a_spec_error(text):
    try:
        result = parse(text)
    except SpecError as error:
        assert isinstance(error, ValueError)
        assert error.spec is None or isinstance(error.spec, str)
        return
    assert isinstance(result, Spec)
    assert parse(str(result)) == result


@given(st.text(alphabet=GRAMMAR_ALPHABET, max_size=40))
def test_g1_near_grammar_text_is_a_spec_or_a_spec_error_with_one_caret(text):
    try:
        result = parse(text)
    except SpecError as error:
        if error.start is not None and error.spec is not None and error.start < len(error.spec):
            caret_span(str(error))  # exactly one caret line
        return
    assert isinstance(result, Spec)
    assert parse(str(result)) == result


@given(st.one_of(st.text(), st.text(alphabet=GRAMMAR_ALPHABET, max_size=40)))
def test_g1_resolve_of_any_text_is_resolved_or_a_spec_error(text):
    try:
        result = resolve(text)
    except SpecError:
        return
    assert isinstance(result, attnkit.Resolved)
    assert resolve(result.canonical) == result


@pytest.mark.parametrize("value", [None, 3, 1.5, b"dot", ["dot"], ("dot",)], ids=repr)
def test_g1_parse_of_a_non_string_is_a_syntax_error(value):
    with pytest.raises(SpecSyntaxError) as info:
        parse(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [None, 3, b"dot"], ids=repr)
def test_g1_resolve_of_a_non_string_is_a_syntax_error(value):
    with pytest.raises(SpecSyntaxError) as info:
        resolve(value)
    assert repr(value) in str(info.value)


# -- G2 by construction: a strategy of valid specs --------------------------------------------

positive_floats = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
units = st.integers(min_value=1, max_value=4096)
bools = st.booleans()


def _text(value) -> str:
    """Spec text of a parameter value, written as a user might."""
    return format_value(value)


SCORERS = {
    "dot": (
        attnkit.scorers.Dot,
        {"scale": st.one_of(st.none(), st.sampled_from(["sqrt", "learned"]), positive_floats)},
    ),
    "general": (attnkit.scorers.General, {"use_bias": bools}),
    "additive": (
        attnkit.scorers.Additive,
        {"units": units, "use_additive_bias": bools, "use_attention_bias": bools},
    ),
    "bahdanau": (attnkit.scorers.Bahdanau, {"units": st.one_of(st.none(), units)}),
    "gaussian": (attnkit.scorers.Gaussian, {"sigma": st.one_of(st.none(), positive_floats)}),
    "dense": (attnkit.scorers.Dense, {"use_bias": bools}),
}
POOLINGS = {
    "seq": (attnkit.poolings.Seq, {}),
    "last": (attnkit.poolings.Last, {"units": st.one_of(st.none(), units)}),
    "weighted": (attnkit.poolings.Weighted, {}),
    "gate": (attnkit.poolings.Gate, {"shared": bools}),
}


@st.composite
def component(draw, table, name):
    cls, params = table[name]
    kwargs = {}
    for key, strategy in params.items():
        if draw(st.booleans()):
            kwargs[key] = draw(strategy)
    written = list(kwargs.items())
    written = draw(st.permutations(written))
    space = draw(st.sampled_from(["", " "]))
    if written or draw(st.booleans()):
        inner = f",{space}".join(f"{k}{space}={space}{_text(v)}" for k, v in written)
        text = f"{name}{space}({space}{inner}{space})"
    else:
        text = name
    return text, cls(**kwargs)


@st.composite
def width_mask(draw, name, cls, optional):
    width = draw(st.integers(min_value=1, max_value=10_000))
    form = draw(st.sampled_from(["number", "keyword"] + (["bare"] if optional else [])))
    if form == "number":
        return f"{name}{width}", cls(width=width)
    if form == "keyword":
        return f"{name}(width={width})", cls(width=width)
    return name, cls()


@st.composite
def valid_specs(draw):
    """(spec text, expected scorer, expected masks, expected pooling) built from the built-ins."""
    scorer_text, scorer = draw(
        st.sampled_from(sorted(SCORERS)).flatmap(lambda n: component(SCORERS, n))
    )
    pooling_name = draw(st.one_of(st.none(), st.sampled_from(sorted(POOLINGS))))
    masks = []
    if pooling_name != "gate":
        if draw(st.booleans()):
            masks.append(draw(width_mask("local", attnkit.masks.Local, optional=False)))
        if draw(st.booleans()):
            masks.append(draw(width_mask("causal", attnkit.masks.Causal, optional=True)))
    full = not masks and draw(st.booleans())
    tokens = [scorer_text] + [text for text, _ in masks] + (["full"] if full else [])
    if pooling_name is None:
        pooling = attnkit.poolings.Seq()
    else:
        pooling_text, pooling = draw(component(POOLINGS, pooling_name))
        tokens.append(pooling_text)
    tokens = draw(st.permutations(tokens))
    glue = draw(st.sampled_from(["+", " + ", "\t+ "]))
    lead, trail = draw(st.sampled_from(["", " "])), draw(st.sampled_from(["", "\t"]))
    text = lead + glue.join(tokens) + trail
    expected_masks = tuple(sorted((m for _, m in masks), key=str))
    return text, scorer, expected_masks, pooling


@given(valid_specs())
def test_g2_generated_valid_specs_resolve_and_round_trip(case):
    text, scorer, masks, pooling = case
    assume(len(text) <= MAX_SPEC_LENGTH)
    resolved = resolve(text)
    assert resolved.scorer == scorer
    assert resolved.masks == masks
    assert resolved.pooling == pooling
    canonical = resolved.canonical
    assert "\t" not in canonical
    assert " " not in canonical.replace(", ", ",")  # one space after a comma, nowhere else
    assert "full" not in canonical.split("+")
    again = resolve(canonical)
    assert again == resolved
    assert again.canonical == canonical
    assert parse(str(parse(text))) == parse(text)
    assert str(parse(canonical)) == canonical


@given(valid_specs())
def test_g2_canonical_text_leaves_defaults_out(case):
    text, _, _, _ = case
    assume(len(text) <= MAX_SPEC_LENGTH)
    tokens = parse(resolve(text).canonical).tokens
    names = [t.name for t in tokens]
    assert "full" not in names and "seq" not in names
    for token in tokens:
        defaults = {f.name: f.default for f in attrs.fields(attnkit.registry().get(token.name).cls)}
        written = dict(token.args)
        cls = attnkit.registry().get(token.name).cls
        if token.number is not None:
            written[cls.shorthand] = token.number
        for key, value in written.items():
            default = defaults[key]
            assert not (type(value) is type(default) and value == default), (token, key)


# -- components: token and from_token ----------------------------------------------------------


@pytest.mark.parametrize(
    ("instance", "text"),
    [
        (attnkit.scorers.Additive(units=64), "additive(units=64)"),
        (attnkit.scorers.Additive(), "additive"),
        (attnkit.scorers.Additive(use_additive_bias=False), "additive(use_additive_bias=false)"),
        (attnkit.scorers.Dot(), "dot"),
        (attnkit.scorers.Dot(scale="sqrt"), "dot(scale=sqrt)"),
        (attnkit.scorers.Dot(scale=2), "dot(scale=2.0)"),
        (attnkit.scorers.General(use_bias=True), "general(use_bias=true)"),
        (attnkit.scorers.Bahdanau(units=16), "bahdanau(units=16)"),
        (attnkit.scorers.Gaussian(sigma=0.25), "gaussian(sigma=0.25)"),
        (attnkit.scorers.Dense(use_bias=False), "dense(use_bias=false)"),
        (attnkit.masks.Full(), "full"),
        (attnkit.masks.Local(width=15), "local15"),
        (attnkit.masks.Causal(), "causal"),
        (attnkit.masks.Causal(width=4), "causal4"),
        (attnkit.poolings.Seq(), "seq"),
        (attnkit.poolings.Last(units=128), "last(units=128)"),
        (attnkit.poolings.Weighted(), "weighted"),
        (attnkit.poolings.Gate(shared=True), "gate(shared=true)"),
    ],
    ids=str,
)
def test_component_token_and_from_token(instance, text):
    assert str(instance.token) == text
    assert str(instance) == text
    token = parse(text).tokens[0]
    assert token == instance.token
    rebuilt = type(instance).from_token(token, text)
    assert rebuilt == instance
    assert hash(rebuilt) == hash(instance)


def test_components_are_frozen_and_hashable():
    a, b = attnkit.scorers.Additive(units=64), attnkit.scorers.Additive(units=64)
    assert a == b and a is not b
    assert hash(a) == hash(b)
    assert len({a, b, attnkit.scorers.Additive(units=32)}) == 2
    assert a != attnkit.scorers.Additive(units=65)
    assert attnkit.masks.Local(width=3) != attnkit.masks.Causal(width=3)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.units = 3
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        attnkit.masks.Local(width=3).width = 4
    assert a.units == 64


def test_component_validators_run_on_direct_construction():
    with pytest.raises(ValueError, match="positive integer"):
        attnkit.scorers.Additive(units=0)
    with pytest.raises(ValueError, match=">= 1"):
        attnkit.masks.Local(width=0)
    with pytest.raises(ValueError):
        attnkit.scorers.Gaussian(sigma=math.inf)


def test_from_token_errors_carry_the_spec_and_caret():
    spec = "dot+local15(width=3)"
    token = parse(spec).tokens[1]
    with pytest.raises(SpecParameterError) as info:
        attnkit.masks.Local.from_token(token, spec)
    assert "given twice" in str(info.value)
    assert_points_at(info.value, spec, 4, 20)


def test_g2_format_value_round_trips_through_parse():
    for value in [
        0,
        7,
        -3,
        0.5,
        1e-05,
        -2.5e16,
        True,
        False,
        None,
        "sqrt",
        "none",
        "a b",
        "x1",
        "it's",
        'say "hi"',
        "",
    ]:
        token = parse(f"c(v={format_value(value)})").tokens[0]
        ((key, parsed),) = token.args
        assert parsed == value and type(parsed) is type(value), (value, parsed)
    with pytest.raises(ValueError):
        format_value("both ' and \"")
    with pytest.raises(ValueError):
        format_value([1])
