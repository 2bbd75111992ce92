"""What a spec means, for ``attnkit explain``: canonical form, components, weights, mask, plan.

    >>> from attnkit.explain import explain, render
    >>> report = explain("additive+local3", length=8, features=16)
    >>> report["plans"][0]["plan"]
    'dense'

:func:`explain` returns plain data (the ``--json`` output); :func:`render` writes it for a
terminal. Everything is read from the objects the layer itself uses: the resolved spec, an
``AttentionLayer`` built on the given shape, :func:`attnkit.plans.visible` and
:func:`attnkit.plans.choose` with the reason it gives, so the explanation cannot drift from
what the layer does.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import attrs

from attnkit import plans
from attnkit.spec import format_value

__all__ = [
    "GRID_MAX",
    "STANDARD_LENGTHS",
    "explain",
    "mask_grid",
    "plan_for",
    "render",
    "request_for",
]

#: Lengths the plan is also shown for, whatever ``--length`` is.
STANDARD_LENGTHS = (128, 1024, 16384)
#: The mask grid is drawn for at most this many steps (a terminal's worth of rows).
GRID_MAX = 12


def explain(spec: str, length: int = 8, features: int = 64, heads=None) -> dict[str, Any]:
    """Everything ``attnkit explain`` reports about ``spec`` for inputs of ``features`` features.

    Args:
        spec: spec text, e.g. ``"additive+local3"``.
        length: T, the number of steps the plan and the mask grid are computed for.
        features: D, the size of each step; the weights' shapes depend on it.
        heads: an :class:`attnkit.heads.Heads` for a multi-head layer, or None.

    Returns:
        A JSON-serialisable dict with keys ``spec``, ``canonical``, ``length``, ``features``,
        ``heads`` (the layer's head arguments, or None), ``components``, ``input_shape``,
        ``weights`` (with ``per_head`` true for those with a leading head axis), ``mask``,
        ``backend``, ``plans`` (per head with heads; the
        given length first, then :data:`STANDARD_LENGTHS`) and ``kernel_backends`` (where
        ``plan='auto'`` would take the fused-kernel plan for this spec; empty if none).

    Raises:
        AttnkitError: the spec does not resolve, or the layer cannot be built on that shape.
    """
    import keras

    from attnkit.registry import registry

    resolved = registry().resolve(spec)
    input_shape, weights = layer_weights(resolved, length, features, heads)
    lengths = [length] + [t for t in STANDARD_LENGTHS if t != length]
    kernel_exact = request_for(resolved, length, features, heads=heads).kernel_exact
    return {
        "spec": spec,
        "canonical": resolved.canonical,
        "length": length,
        "features": features,
        "heads": None if heads is None else heads.config(),
        "components": component_rows(resolved),
        "input_shape": list(input_shape),
        "weights": weights,
        "mask": mask_grid(resolved, length),
        "backend": keras.backend.backend(),
        "plans": [plan_for(resolved, t, features, heads=heads) for t in lengths],
        # The fused-kernel plan is taken automatically on some backends only.
        "kernel_backends": list(plans.KERNEL_BACKENDS) if kernel_exact else [],
    }


def component_rows(resolved) -> list[dict[str, Any]]:
    """One row per component (scorer, masks, pooling) with every parameter and its origin."""
    from attnkit.registry import registry

    parts = [resolved.scorer, *resolved.masks, resolved.pooling]
    if not resolved.masks and resolved.pooling.accepts_masks:
        parts.insert(1, registry().get("full").cls())  # what "no mask" means, made visible
    rows = []
    for component in parts:
        info = registry().get(component.name)
        params = []
        for field in attrs.fields(type(component)):
            value = getattr(component, field.name)
            required = field.default is attrs.NOTHING
            default = None if required else field.default
            params.append(
                {
                    "name": field.name,
                    "value": value,
                    "default": default,
                    "required": required,
                    "is_default": not required
                    and type(value) is type(default)
                    and value == default,
                    "doc": field.metadata.get("doc", ""),
                }
            )
        rows.append(
            {
                "kind": component.kind,
                "name": component.name,
                "token": str(component),
                "parameters": params,
                "plugin": info.plugin,
                "distribution": info.distribution,
                "version": info.version,
            }
        )
    return rows


def input_shape_for(resolved, length: int, features: int) -> tuple:
    """The shape the layer is built on: (None, T, D), or (None, D) for 2-D-only poolings."""
    if 3 not in resolved.pooling.input_ranks:
        return (None, features)
    return (None, length, features)


def layer_weights(resolved, length: int, features: int, heads=None) -> tuple[tuple, list[dict]]:
    """(input shape, the weights an ``AttentionLayer`` creates for it: name, shape, dtype,
    per_head), read off the components' ``build`` without allocating them."""
    from attnkit.layer import AttentionLayer

    shape = input_shape_for(resolved, length, features)
    options = {} if heads is None else heads.config()
    layer = AttentionLayer(resolved, **options)
    found = layer.weight_shapes(shape)
    component = ("scorer_", "pooling_")
    for weight in found:
        weight["per_head"] = heads is not None and weight["name"].startswith(component)
    return shape, found


def mask_grid(resolved, length: int) -> dict[str, Any]:
    """The AND of the spec's masks drawn on at most GRID_MAX steps, as rows of ``#`` and ``.``.

    Seq-like poolings get one row per query i over the first steps; many-to-one poolings ask
    with one query at the last step, so they get that row, over the last keys. Padding is not
    drawn: it depends on the data.
    """
    from keras import ops

    steps = min(length, GRID_MAX)
    back, ahead = plans.combined_reach(resolved.masks)
    pooling = resolved.pooling
    result: dict[str, Any] = {
        "steps": steps,
        "masks": [str(m) for m in resolved.masks] or ["full"],
        "reach": {"back": back, "ahead": ahead},
        "query_positions": None,
        "key_positions": None,
        "rows": None,
    }
    if not pooling.accepts_masks:
        result["masks"] = []
        return result
    if pooling.many_to_one:
        queries, keys = [length - 1], list(range(length - steps, length))
    else:
        queries, keys = list(range(steps)), list(range(steps))
    q_idx = ops.reshape(ops.convert_to_tensor(queries, dtype="int32"), (1, -1, 1))
    k_idx = ops.reshape(ops.convert_to_tensor(keys, dtype="int32"), (1, 1, -1))
    everything = ops.ones((1, len(queries), len(keys)), dtype="bool")
    grid = ops.convert_to_numpy(plans.visible(resolved.masks, q_idx, k_idx, everything))[0]
    result["query_positions"], result["key_positions"] = queries, keys
    result["rows"] = ["".join("#" if cell else "." for cell in row) for row in grid]
    return result


def request_for(
    resolved, length: int, features: int, training: bool = False, heads=None
) -> plans.Request:
    """The :class:`plans.Request` the layer makes for self-attention on (B, T, D) with its
    default options (plan='auto', no returned weights, no attention activation, no dropout);
    with heads, each head's (its queries and keys have ``key_dim`` features)."""
    shape = input_shape_for(resolved, length, features)
    query_dim, key_dim = resolved.pooling.dims(shape, shape)
    if heads is not None:
        query_dim = key_dim = heads.key_dim
    return plans.Request(
        scorer=resolved.scorer,
        masks=resolved.masks,
        pooling=resolved.pooling,
        query_dim=query_dim,
        key_dim=key_dim,
        steps_q=1 if resolved.pooling.many_to_one else length,
        steps_k=length,
        training=training,
    )


def plan_for(
    resolved, length: int, features: int, training: bool = False, heads=None
) -> dict[str, Any]:
    """The plan the layer runs at ``length`` steps (for inference, or a training step) and
    why: {length, plan, reason}, as :func:`attnkit.plans.choose` gives them."""
    choice = plans.choose(request_for(resolved, length, features, training, heads))
    return {"length": length, "plan": choice.plan, "reason": choice.reason}


# -- text ----------------------------------------------------------------------------------------


def _reach_text(back, ahead) -> str:
    if back is None and ahead is None:
        return "reach: unbounded both ways (every key)"
    side = {None: "unbounded", 0: "0"}
    text = f"reach: {side.get(back, back)} back, {side.get(ahead, ahead)} ahead"
    if back is not None and ahead is not None:
        text += f" (at most {back + 1 + ahead} keys per query)"
    elif ahead == 0:
        text += " (no future keys)"
    return text


def _param_text(param: dict[str, Any]) -> str:
    text = f"{param['name']}={format_value(param['value'])}"
    if not param["is_default"] and not param["required"]:
        text += f" (default {format_value(param['default'])})"
    return text


def render(report: dict[str, Any], width: int = 100) -> str:
    """``report`` (from :func:`explain`) as text wrapped to ``width`` columns."""
    width = max(width, 40)
    lines = [f"spec        {report['spec']}", f"canonical   {report['canonical']}", ""]
    lines.append("components")
    token_width = max(len(row["token"]) for row in report["components"])
    for row in report["components"]:
        params = ", ".join(_param_text(p) for p in row["parameters"]) or "no parameters"
        origin = f"[{row['distribution']} {row['version']}, entry point '{row['plugin']}']"
        head = f"  {row['kind']:<8} {row['token']:<{token_width}}  "
        lines += textwrap.wrap(
            f"{params}  {origin}",
            width,
            initial_indent=head,
            subsequent_indent=" " * len(head),
            break_on_hyphens=False,
        )
    lines += _heads_lines(report["heads"])
    lines += ["", f"weights for inputs {_shape(report['input_shape'])}"]
    weights = report["weights"]
    if not weights:
        lines.append("  none")
    name_width = max((len(w["name"]) for w in weights), default=0)
    for w in weights:
        line = f"  {w['name']:<{name_width}}  {_shape(w['shape']):<14} {w['dtype']}"
        lines.append(line + ("  (one per head)" if w.get("per_head") else ""))
    total = sum(math.prod(w["shape"]) for w in weights)
    if weights:
        lines.append(f"  {len(weights)} weights, {total:,} parameters")
    lines += [""] + _grid_lines(report["mask"], report["length"])
    per_head = ", per head" if report["heads"] else ""
    lines += [
        "",
        f"plan on {report['backend']} (plan='auto': what the layer runs for self-attention "
        f"on (B, T, D){per_head})",
    ]
    for entry in report["plans"]:
        head = f"  T={entry['length']:<7} {entry['plan']:<8} "
        lines += textwrap.wrap(
            entry["reason"], width, initial_indent=head, subsequent_indent=" " * len(head)
        )
    if report["kernel_backends"] and not any(p["plan"] == "kernel" for p in report["plans"]):
        lines += textwrap.wrap(
            "on torch, and on jax with a GPU, the fused kernel plan runs instead (the backend's "
            "dot_product_attention computes this spec exactly)",
            width,
            initial_indent="  ",
            subsequent_indent="  ",
        )
    return "\n".join(lines)


def _heads_lines(heads: dict[str, Any] | None) -> list[str]:
    if heads is None:
        return []
    h, g = heads["num_heads"], heads["num_key_value_heads"]
    kind = "multi-head" if h == g else f"grouped-query, {h // g} query heads per key head"
    output = heads["output_shape"] or "the query's features"
    return [
        "",
        f"heads       {h} query heads of {heads['key_dim']}, {g} key/value heads "
        f"(values of {heads['value_dim']}): {kind}; output {output}",
    ]


def _grid_lines(mask: dict[str, Any], length: int) -> list[str]:
    if mask["rows"] is None:
        return ["mask: none (the pooling takes no masks; every key is visible)"]
    keys = mask["key_positions"]
    shown = f"T={length}"
    if len(keys) < length:
        shown += f" (keys {keys[0]}..{keys[-1]} shown)"
    lines = [
        f"mask {'+'.join(mask['masks'])} at {shown}: rows query i, columns key j; "
        "'#' allowed, '.' masked"
    ]
    lines.append("        j " + "".join(str(j % 10) for j in keys))
    for position, row in zip(mask["query_positions"], mask["rows"], strict=True):
        lines.append(f"  i={position:<4}  {row}")
    if len(mask["rows"]) == 1 and length > 1:
        lines.append("  (a many-to-one pooling asks with one query, at the last valid step)")
    lines.append("  " + _reach_text(mask["reach"]["back"], mask["reach"]["ahead"]))
    return lines


def _shape(shape) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"
