"""Base classes of the three component kinds: :class:`Scorer`, :class:`Mask`, :class:`Pooling`.

A component is an ``attrs`` frozen class whose fields are exactly its spec parameters: the token
``additive(units=64)`` builds ``Additive(units=64)``, and ``Additive(units=64).token`` writes it
back. Components hold no weights and no Keras state; the host layer passes them an object with an
``add_weight`` method in ``build`` and the weights (a dict) back in every call.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from attnkit.errors import SpecParameterError, did_you_mean
from attnkit.spec import Token, Value, format_value

__all__ = ["Component", "Mask", "Pooling", "Prepared", "Scorer", "param"]

KINDS = ("scorer", "mask", "pooling")


def param(default: Any = attrs.NOTHING, *, doc: str, converter=None, validator=None) -> Any:
    """An attrs field that is a spec parameter; ``doc`` is shown by ``attnkit list``."""
    return attrs.field(
        default=default, converter=converter, validator=validator, metadata={"doc": doc}
    )


class Component:
    """Common behaviour: building from a spec token and writing the canonical token back.

    Class attributes a subclass sets:
        name: the spec name, e.g. ``"additive"``.
        shorthand: the field filled by a number written right after the name
            (``local15`` sets ``width=15``), or None.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    shorthand: ClassVar[str | None] = None
    #: How the conformance suite places this component in a spec, ``{}`` standing for it
    #: (e.g. ``"{}+gate"``); None uses the default partners (``dot``, ``seq``).
    conformance_spec: ClassVar[str | None] = None
    #: True if a layer using this component needs a fixed number of steps.
    fixed_length: ClassVar[bool] = False

    @classmethod
    def examples(cls) -> list[Component]:
        """Instances the conformance suite checks; the default is ``[cls()]``."""
        return [cls()]

    @classmethod
    def from_token(cls, token: Token, spec: str | None = None):
        """Build an instance from a parsed token; a bad parameter raises SpecParameterError."""

        def fail(reason: str, hint: str | None = None):
            return SpecParameterError(reason, spec, token.start, token.end, hint)

        fields = {f.name: f for f in attrs.fields(cls) if f.init}
        kwargs: dict[str, Value] = dict(token.args)
        if token.number is not None:
            if cls.shorthand is None:
                raise fail(
                    f"'{cls.name}' takes no number after its name (got {token.number})",
                    f"write '{cls.name}'"
                    + (f" with parameters {_signature(cls)}" if fields else ""),
                )
            if cls.shorthand in kwargs:
                raise fail(
                    f"'{cls.name}': {cls.shorthand!r} given twice (as the number and by name)"
                )
            kwargs[cls.shorthand] = token.number
        for key in kwargs:
            if key not in fields:
                close = did_you_mean(key, fields)
                raise fail(
                    f"'{cls.name}' has no parameter {key!r}",
                    (f"did you mean {close[0]!r}? " if close else "")
                    + f"parameters: {_signature(cls)}",
                )
        missing = [n for n, f in fields.items() if f.default is attrs.NOTHING and n not in kwargs]
        if missing:
            example = (
                f"{cls.name}15" if cls.shorthand in missing else f"{cls.name}({missing[0]}=...)"
            )
            raise fail(f"'{cls.name}' needs {', '.join(map(repr, missing))}", f"e.g. '{example}'")
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise fail(
                f"bad parameter for '{cls.name}': {error}", f"parameters: {_signature(cls)}"
            ) from error

    @property
    def token(self) -> Token:
        """The canonical token: parameters at their default are left out."""
        number = None
        args: list[tuple[str, Value]] = []
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            default = field.default
            if isinstance(
                default, attrs.Factory
            ):  # pragma: no cover - components use plain defaults
                default = attrs.NOTHING
            if default is not attrs.NOTHING and type(value) is type(default) and value == default:
                continue
            if (
                field.name == self.shorthand
                and isinstance(value, int)
                and not isinstance(value, bool)
                and value >= 0
            ):
                number = value
            else:
                args.append((field.name, value))
        return Token(self.name, number, tuple(args))

    def __str__(self) -> str:
        return str(self.token)


def _signature(cls: type) -> str:
    parts = []
    for field in attrs.fields(cls):
        if field.default is attrs.NOTHING:
            parts.append(field.name)
        else:
            try:
                parts.append(f"{field.name}={format_value(field.default)}")
            except ValueError:  # a default no spec can hold: plugins with one are rejected
                parts.append(f"{field.name}={field.default!r}")
    return "(" + ", ".join(parts) + ")" if parts else "none"


class Scorer(Component):
    """Computes raw attention scores for a block of queries against a block of keys.

    Subclasses override :meth:`score` (with ``keras.ops`` only) and, if they have weights,
    :meth:`build`. The layer calls ``score`` in float32 or wider, whatever the dtype policy.
    """

    kind: ClassVar[str] = "scorer"
    #: True if :meth:`score` gives each query one score per key *position* from the scorer's
    #: own weights, without reading the keys it is handed (``dense``). Only the dense plan,
    #: which hands it every position at once, can run such a scorer; the others hand a scorer
    #: windows and blocks of keys.
    positional: ClassVar[bool] = False

    def build(self, layer: Any, query_dim: int, key_dim: int) -> dict[str, Any]:
        """Create the weights with ``layer.add_weight(name=..., shape=..., initializer=...)``.

        Args:
            layer: the host layer (or a stand-in with its ``add_weight``); names are prefixed.
            query_dim: D of the queries the scorer will see.
            key_dim: D of the keys.

        Returns:
            A dict of the weights, passed back as ``params`` to :meth:`score`.
        """
        return {}

    def pair_width(self, query_dim: int, key_dim: int) -> int:
        """Floats the scorer holds per (query, key) pair while scoring (1 for a dot product,
        ``units`` for an additive tanh layer); the execution plans size their chunks by it."""
        return 1

    def score(self, params: dict[str, Any], query: Any, key: Any) -> Any:
        """Raw scores: query (B, Tq, Dq), key (B, Tk, Dk) -> (B, Tq, Tk)."""
        raise NotImplementedError(f"scorer {type(self).__name__} must implement score()")

    def dot_scale(self, params: dict[str, Any], query_dim: int) -> Any:
        """``c`` when ``score(params, q, k) == c * q k^T`` exactly (a float or a scalar tensor),
        else None (the default). A scorer that returns ``c`` lets the ``kernel`` plan run it with
        the backend's ``dot_product_attention`` kernel."""
        return None

    def project(self, params: dict[str, Any], query: Any, key: Any) -> tuple[Any, Any] | None:
        """Optional split of :meth:`score` into per-step features and a per-pair part.

        Return ``(q', k')``, features (B, Tq, P) and (B, Tk, P), such that
        ``score(params, q, k)[b, i, j] == pair(params, q'[b, i], k'[b, j])``, or None (the
        default: no split). With a split the banded plan projects every key once and scores
        a window one offset at a time, ``s_i,i+o = pair(q'_i, k'_i+o)``, instead of scoring
        gathered (B, T, W, D) windows: faster, and at any length memory stays O(B T (W + P)).
        ``project`` runs inside the plan's compiled pass, so it may decline per call. A
        scorer that returns a split must implement :meth:`pair`; the conformance suite holds
        the two to :meth:`score`.
        """
        return None

    def pair(self, params: dict[str, Any], query_features: Any, key_features: Any) -> Any:
        """Scores of aligned pairs: features (..., P) from :meth:`project` -> scores (...)."""
        raise NotImplementedError(
            f"scorer {type(self).__name__} returns a split from project() but does not "
            "implement pair()"
        )

    def window(
        self, params: dict[str, Any], query_features: Any, key_features: Any, width: int
    ) -> Any:
        """Scores of each query against a window of keys: ``s[b, i, o] = pair(q'[b, i],
        k'[b, i + o])`` for features (B, T, P) from :meth:`project` and keys padded to
        (B, T + width - 1, P) -> (B, T, width), the banded plan's offset pass.

        The default stacks :meth:`pair` over the offsets and lets the backend differentiate
        it. A scorer overrides it only to compute the same numbers faster (``additive`` and
        ``bahdanau`` write the tanh energy's gradient by hand,
        :mod:`attnkit.scorers._tanh_energy`); the plan tests hold every plan's values and
        gradients to the dense plan's."""
        from keras import ops

        steps = ops.shape(query_features)[1]
        return ops.stack(
            [
                self.pair(params, query_features, key_features[:, o : o + steps])
                for o in range(width)
            ],
            axis=-1,
        )


class Mask(Component):
    """Which keys a query may see: a pure predicate over broadcast index grids.

    ``allowed(q_idx, k_idx)`` gets integer tensors that broadcast against each other (for
    example (1, Tq, 1) and (1, 1, Tk)) and returns a boolean tensor of their broadcast shape,
    True where the query at position ``q_idx`` may attend to the key at ``k_idx``. Masks in a
    spec are ANDed; padding is applied by the layer on top.
    """

    kind: ClassVar[str] = "mask"

    def allowed(self, q_idx: Any, k_idx: Any) -> Any:
        raise NotImplementedError(f"mask {type(self).__name__} must implement allowed()")

    def reach(self) -> tuple[int | None, int | None]:
        """How far (back, ahead) of its own position a query can see; None means unbounded.

        The execution plans use this to skip work; it must never allow less than
        :meth:`allowed` does (a key outside the declared reach must not be allowed).
        """
        return (None, None)

    def kernel_form(self) -> str | None:
        """``"full"`` or ``"causal"`` when :meth:`allowed` is exactly that (every key, or
        ``j <= i``), so a fused attention kernel can apply it; None (the default) otherwise."""
        return None


@attrs.define  # not frozen: torch.compile (dynamo) cannot trace object.__setattr__
class Prepared:
    """What a pooling hands to the scorer: the queries it asks with and where they stand.

    Attributes:
        query: (B, Tq', Dq) the queries the scorer sees.
        key: (B, Tk, Dk) the keys the scorer sees.
        positions: integer (B or 1, Tq') positions of the queries, for the masks.
        valid: bool (B, Tq') or None: queries that are not padding.
    """

    query: Any
    key: Any
    positions: Any
    valid: Any = None


class Pooling(Component):
    """Turns attention into the layer output, and chooses the queries that attend.

    ``seq`` keeps one output per query step; many-to-one poolings ask with one query (the last
    valid step, a learned vector) and return (B, D) or (B, units), consuming the Keras mask.
    """

    kind: ClassVar[str] = "pooling"
    #: True if the output has no time axis (the Keras mask is consumed).
    many_to_one: ClassVar[bool] = False
    #: False if structural masks make no sense for this pooling (the spec is refused).
    accepts_masks: ClassVar[bool] = True
    #: Ranks of the input tensors this pooling accepts.
    input_ranks: ClassVar[tuple[int, ...]] = (3,)
    #: False if :meth:`pool` does not use the context (weights @ values), so it is not computed.
    uses_context: ClassVar[bool] = True
    #: Whether query i is input step i (positions 0..Tq-1) and the output is the context
    #: itself, as for ``seq``: then a fused attention kernel can stand in for the plans.
    aligned: ClassVar[bool] = False
    #: False if :meth:`prepare` asks with a query of its own (a learned vector, as
    #: ``weighted``) and reads only the query input's shape and padding: with heads, the query
    #: input then gets no projection.
    reads_query: ClassVar[bool] = True

    def dims(self, query_shape: tuple, key_shape: tuple) -> tuple[int, int]:
        """(query_dim, key_dim) the scorer will see, from the input shapes."""
        return query_shape[-1], key_shape[-1]

    def build(self, layer: Any, query_dim: int, value_dim: int) -> dict[str, Any]:
        """Create the pooling's weights, as :meth:`Scorer.build` does."""
        return {}

    def output_size(self, query_dim: int, value_dim: int) -> int:
        """Features of the output per query, for queries of ``query_dim`` and values of
        ``value_dim`` features: the value's (the default) for a pooling that returns a context.
        With heads, the output projection is built from it."""
        return value_dim

    def prepare(self, params: dict[str, Any], query: Any, key: Any, query_mask: Any) -> Prepared:
        """Choose the queries the scorer asks with, and where they stand: a :class:`Prepared`
        for query (B, Tq, Dq), key (B, Tk, Dk) and the query padding mask (B, Tq) or None.
        Every pooling implements it (``seq`` asks with every step)."""
        raise NotImplementedError(f"pooling {type(self).__name__} must implement prepare()")

    def pool(
        self, params: dict[str, Any], context: Any, weights: Any, prepared: Prepared, value: Any
    ) -> tuple[Any, Any]:
        """Return (output, weights to report) from context (B, Tq', Dv) and weights (B, Tq', Tk)."""
        raise NotImplementedError(f"pooling {type(self).__name__} must implement pool()")
