"""Multi-head and grouped-query attention around a spec:
``AttentionLayer(spec, num_heads=H, key_dim=dk, ...)``, with ``keras.layers.MultiHeadAttention``'s
arguments and meaning.

For query (B, Tq, Dq), value (B, Tk, Dv) and key (B, Tk, Dk)::

    q = query @ Wq + bq      (B, Tq, H, dk)   Wq (Dq, H, dk), bq (H, dk)
    k = key @ Wk + bk        (B, Tk, G, dk)   G = num_key_value_heads (H % G == 0; default H)
    v = value @ Wv + bv      (B, Tk, G, dv)   dv = value_dim (default dk)
    o_h = spec(q_h, k_g, v_g), g = h // (H / G)
                             the spec per head, with head h's own scorer and pooling weights:
                             (B, Tq, p) for seq, (B, p) many-to-one, p the pooling's size
    output = sum_h o_h @ Wo[h] + bo      Wo (H, p, Dout), bo (Dout,); Dout = output_shape or Dq

A pooling that asks with a query of its own (``weighted``: a learned vector per head) reads only
the query input's shape and padding, so the query gets no projection. ``last(units)`` asks with
each head's projected last step and returns ``units`` features per head
(:meth:`Pooling.output_size`), which Wo projects back.

A component's weights get a leading head axis (``scorer_w_q``: (H, dk, units)), each head's
slice initialised as one head's; a component written for one head runs unchanged, with its own
weights per head. Where the spec has no weights at all, the heads are folded into the batch
and the plans run once over (B H, T, d); the kernel plan then hands them to the backend's
``dot_product_attention`` as its heads axis.
"""

from __future__ import annotations

from typing import Any

import attrs
from keras import ops

from attnkit.errors import ArgumentError, ComponentError

__all__ = ["HeadRun", "Heads", "build_projections", "head_runs", "output", "stack_heads", "unfold"]


def _positive(name: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer. Received: {name}={value!r}")


@attrs.frozen
class Heads:
    """How a layer splits into heads (``keras.layers.MultiHeadAttention``'s arguments).

    Attributes:
        num_heads: H, the query heads.
        key_dim: dk, the size of each head's queries and keys.
        value_dim: dv, the size of each head's values.
        kv_heads: G, the key and value heads (H for multi-head, fewer for grouped-query).
        output_dim: the output's features, or None for the query's.
        use_bias: whether the projections have biases.
    """

    num_heads: int
    key_dim: int
    value_dim: int
    kv_heads: int
    output_dim: int | None = None
    use_bias: bool = True

    @classmethod
    def from_arguments(
        cls,
        num_heads,
        key_dim,
        value_dim=None,
        output_shape=None,
        use_bias=True,
        num_key_value_heads=None,
    ) -> Heads | None:
        """The heads the layer's arguments ask for, or None without ``num_heads``.

        Raises:
            ArgumentError: an argument out of its range, or given without ``num_heads``.
        """
        if num_heads is None:
            given = {
                "key_dim": key_dim,
                "value_dim": value_dim,
                "output_shape": output_shape,
                "num_key_value_heads": num_key_value_heads,
            }
            stray = [name for name, value in given.items() if value is not None]
            if stray:
                raise ArgumentError(
                    f"{stray[0]} is an argument of multi-head attention; pass num_heads too "
                    f"(e.g. num_heads=8, key_dim=64). Received: {stray[0]}={given[stray[0]]!r}"
                )
            return None
        _positive("num_heads", num_heads)
        if key_dim is None:
            raise ArgumentError("num_heads needs key_dim, the size of each head, e.g. key_dim=64")
        _positive("key_dim", key_dim)
        _positive("value_dim", value_dim, optional=True)
        _positive("num_key_value_heads", num_key_value_heads, optional=True)
        kv_heads = num_heads if num_key_value_heads is None else num_key_value_heads
        if num_heads % kv_heads:
            raise ArgumentError(
                f"num_heads must be a multiple of num_key_value_heads. Received: "
                f"num_heads={num_heads}, num_key_value_heads={num_key_value_heads}"
            )
        return cls(
            num_heads,
            key_dim,
            value_dim or key_dim,
            kv_heads,
            _output_dim(output_shape),
            bool(use_bias),
        )

    def check_spec(self, resolved, owner: str) -> None:
        """Refuse a spec with nothing to project per head: a pooling that weighs the input
        itself (``gate``) or a scorer of the input's positions (``dense``)."""
        pooling, scorer = resolved.pooling, resolved.scorer
        if pooling.uses_context and not scorer.positional:
            return
        what = (
            f"pooling '{pooling.name}' weighs the input itself"
            if not pooling.uses_context
            else f"scorer '{scorer.name}' scores the input's positions"
        )
        raise ComponentError(
            f"{owner}: {what}, which has no heads to project; use it without num_heads"
        )

    @property
    def group(self) -> int:
        """Query heads per key and value head."""
        return self.num_heads // self.kv_heads

    def config(self) -> dict[str, Any]:
        """The layer arguments that make these heads (what ``get_config`` saves)."""
        return {
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "output_shape": self.output_dim,
            "use_bias": self.use_bias,
            "num_key_value_heads": self.kv_heads,
        }


def _output_dim(output_shape) -> int | None:
    if output_shape is None:
        return None
    if isinstance(output_shape, (list, tuple)):
        if len(output_shape) != 1:
            raise ArgumentError(
                "output_shape must be one size (the output's features); an output of several "
                f"axes is not covered. Received: output_shape={tuple(output_shape)!r}"
            )
        (output_shape,) = output_shape
    _positive("output_shape", output_shape)
    return int(output_shape)


def build_projections(
    layer, heads: Heads, dims: tuple[int, int, int], size: int, query: bool = True
) -> dict:
    """The projection weights on ``layer`` for query, key and value features ``dims`` (Dq, Dk,
    Dv) and the pooling's per-head output ``size``: shaped as MultiHeadAttention's. Without
    ``query`` (a pooling that asks with its own query) the query gets no projection."""
    dq, dk, dv = dims
    shapes = {
        "query": ((dq, heads.num_heads, heads.key_dim), (heads.num_heads, heads.key_dim)),
        "key": ((dk, heads.kv_heads, heads.key_dim), (heads.kv_heads, heads.key_dim)),
        "value": ((dv, heads.kv_heads, heads.value_dim), (heads.kv_heads, heads.value_dim)),
        "output": ((heads.num_heads, size, heads.output_dim or dq), (heads.output_dim or dq,)),
    }
    if not query:
        del shapes["query"]
    weights = {}
    for role, (kernel, bias) in shapes.items():
        weights[f"{role}_kernel"] = layer.add_weight(
            name=f"{role}_kernel", shape=kernel, initializer="glorot_uniform"
        )
        if heads.use_bias:
            weights[f"{role}_bias"] = layer.add_weight(
                name=f"{role}_bias", shape=bias, initializer="zeros"
            )
    return weights


def _project(x, weights: dict, role: str):
    """(B, T, D) -> (B, T, heads, size): ``x @ W + b``."""
    kernel = ops.cast(weights[f"{role}_kernel"], x.dtype)
    out = ops.einsum("btd,dhk->bthk", x, kernel)
    if f"{role}_bias" in weights:
        out = out + ops.cast(weights[f"{role}_bias"], x.dtype)
    return out


@attrs.define
class HeadRun:
    """The inputs of the spec for one head (or for every head folded into the batch)."""

    query: Any
    value: Any
    key: Any
    query_mask: Any
    key_valid: Any
    scorer_params: dict | None
    pooling_params: dict | None
    folded: int = 1


def head_runs(heads: Heads, built, sides) -> list[HeadRun]:
    """The spec's runs over ``sides`` (the layer's unpacked inputs) with the layer's weights
    ``built`` (:class:`attnkit.building.Built`): one per head, each with its slice of the
    components' per-head weights, or one over every head folded into the batch when the
    components have no weights."""
    weights = built.projections
    if "query_kernel" in weights:
        q = _project(sides.query, weights, "query")
    else:  # the pooling asks with its own query: only the input's shape and padding count
        q = ops.repeat(ops.expand_dims(sides.query, 2), heads.num_heads, axis=2)
    k = _project(sides.key, weights, "key")
    v = _project(sides.value, weights, "value")
    if heads.group > 1:  # grouped-query: each key and value head serves `group` query heads
        k, v = ops.repeat(k, heads.group, axis=2), ops.repeat(v, heads.group, axis=2)
    h = heads.num_heads
    if not built.scorer and not built.pooling:
        fold = lambda t: _fold(t, h)  # noqa: E731
        repeat = lambda m: None if m is None else ops.repeat(m, h, axis=0)  # noqa: E731
        masks = (repeat(sides.query_mask), repeat(sides.key_valid))
        return [HeadRun(fold(q), fold(v), fold(k), *masks, None, None, h)]

    def head(params: dict, prefix: str, i: int) -> dict:
        return {name: w[i] if prefix + name in built.per_head else w for name, w in params.items()}

    return [
        HeadRun(
            q[:, :, i],
            v[:, :, i],
            k[:, :, i],
            sides.query_mask,
            sides.key_valid,
            head(built.scorer, "scorer_", i),
            head(built.pooling, "pooling_", i),
        )
        for i in range(h)
    ]


def _fold(t, heads: int):
    """(B, T, H, d) -> (B H, T, d), sample-major."""
    batch, steps, _, depth = ops.shape(t)
    return ops.reshape(ops.transpose(t, (0, 2, 1, 3)), (batch * heads, steps, depth))


def stack_heads(values: list, folded: int):
    """One tensor (B, H, ...) from the runs' results: the one folded run's (B H, ...)
    unfolded, or the per-head runs' stacked; None when the runs returned None."""
    if values[0] is None:
        return None
    if folded > 1:
        return unfold(values[0], folded)
    return ops.stack(values, axis=1)


def unfold(t, heads: int):
    """(B H, ...) -> (B, H, ...), every size read from the tensor (at run time where it is
    unknown while tracing; a -1 cannot be resolved for a tensor with no elements)."""
    shape = ops.shape(t)
    return ops.reshape(t, (shape[0] // heads, heads, *shape[1:]))


def output(heads: Heads, weights: dict, per_head, owner: str, pooling) -> Any:
    """``sum_h o_h @ Wo[h] + bo`` for per-head outputs (B, H, Tq, p) or (B, H, p)."""
    kernel = weights["output_kernel"]
    size = kernel.shape[1]
    if per_head.shape[-1] != size:
        raise ComponentError(
            f"{owner}: pooling '{pooling.name}' returned {per_head.shape[-1]} features per "
            f"head where its output_size() said {size}; with heads the output projection is "
            "built from output_size()"
        )
    kernel = ops.cast(kernel, per_head.dtype)
    equation = "bhtp,hpo->bto" if len(per_head.shape) == 4 else "bhp,hpo->bo"
    out = ops.einsum(equation, per_head, kernel)
    if "output_bias" in weights:
        out = out + ops.cast(weights["output_bias"], out.dtype)
    return out
