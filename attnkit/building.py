"""The weights an ``AttentionLayer`` creates for an input shape: the components' (each made
through a host, :mod:`attnkit.hosts`) and, with heads, the projections (:mod:`attnkit.heads`).

One function decides them for both uses: ``build`` creates them as variables, ``attnkit
explain`` records their shapes without allocating anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from attnkit.errors import ComponentError, InputShapeError
from attnkit.heads import build_projections
from attnkit.inputs import split_shapes

__all__ = ["Built", "build"]


@attrs.frozen
class Built:
    """A layer's weights by owner: the pooling's, the scorer's and the heads' projections
    (``query_kernel`` ...; empty without heads). ``per_head`` names the components' entries
    that hold a leading head axis (``"scorer_w_q"``): the weights the host made. Anything
    else a ``build`` returns (a constant tensor, say) is shared by every head as it is."""

    pooling: dict[str, Any]
    scorer: dict[str, Any]
    projections: dict[str, Any]
    per_head: frozenset = frozenset()


def _made_here(prefix: str, params: dict, host) -> set[str]:
    made = getattr(host, "made", ())
    return {prefix + name for name, value in params.items() if any(value is m for m in made)}


def build(layer, input_shape, host: Callable[..., Any]) -> Built:
    """The weights of ``layer`` (an AttentionLayer) for ``input_shape``, each made by
    ``host(prefix, heads)``: the ``layer`` argument a component's ``build`` receives, with
    ``heads`` the number of heads to stack each weight for (None: no heads axis).

    Raises:
        InputShapeError: the pooling does not take inputs of this rank.
        ComponentError: a component refused the shape (its ``ValueError``, naming the layer).
    """
    query_shape, value_shape, key_shape = split_shapes(input_shape)
    resolved, heads, owner = layer.resolved, layer.heads, layer.owner
    pooling, scorer = resolved.pooling, resolved.scorer
    if len(query_shape) not in pooling.input_ranks:
        ranks = " or ".join(str(r) for r in pooling.input_ranks)
        raise InputShapeError(
            f"{owner}: pooling '{pooling.name}' takes inputs of rank {ranks}; "
            f"received an input of shape {tuple(query_shape)}"
        )
    try:
        if heads is None:
            query_dim, key_dim = pooling.dims(tuple(query_shape), tuple(key_shape))
            value_dim, count = value_shape[-1], None
        else:
            query_dim = key_dim = heads.key_dim
            value_dim, count = heads.value_dim, heads.num_heads
        pooling_host, scorer_host = host("pooling_", count), host("scorer_", count)
        pooling_params = pooling.build(pooling_host, query_dim, value_dim)
        scorer_params = scorer.build(scorer_host, query_dim, key_dim)
    except ValueError as error:
        raise ComponentError(f"{owner}: {error}") from error
    per_head = _made_here("pooling_", pooling_params, pooling_host) | _made_here(
        "scorer_", scorer_params, scorer_host
    )
    projections = {}
    if heads is not None:
        dims = (query_shape[-1], key_shape[-1], value_shape[-1])
        size = pooling.output_size(heads.key_dim, heads.value_dim)
        projections = build_projections(host("", None), heads, dims, size, pooling.reads_query)
    return Built(pooling_params, scorer_params, projections, frozenset(per_head))
