"""Reading an ``AttentionLayer`` call: its inputs, their padding masks and build shapes.

One tensor means self-attention; a list is Keras' ``[query, value]`` or ``[query, value, key]``.
Everything a user can get wrong here raises an :class:`attnkit.errors.AttnkitError` that names
the layer and the shape it expected, before any arithmetic.
"""

from __future__ import annotations

import sys
from typing import Any

import attrs
from keras import ops

from attnkit.errors import InputShapeError, InputTypeError, MaskShapeError

__all__ = [
    "Sides",
    "as_bool_mask",
    "check_mask",
    "is_ragged",
    "split_shapes",
    "static",
    "unpack",
    "zero_padding",
]


@attrs.define  # not frozen: torch.compile (dynamo) cannot trace object.__setattr__
class Sides:
    """A call's inputs, read: query (B, Tq, Dq), value (B, Tk, Dv), key (B, Tk, Dk), the
    queries' padding (B, Tq) and the keys' (B, Tk) as booleans or None, and whether the call
    was self-attention (one tensor)."""

    query: Any
    value: Any
    key: Any
    query_mask: Any
    key_valid: Any
    single: bool


def unpack(layer: str, inputs, mask):
    """(query, value, key, query_mask, key_valid) of a call of layer ``layer``, with masks as
    booleans (B, T); bad inputs raise an :class:`AttnkitError` naming the layer."""
    listed = isinstance(inputs, (list, tuple))
    roles = ("query", "value", "key") if listed else ("",)
    for role, tensor in zip(roles, inputs if listed else [inputs], strict=False):
        if is_ragged(tensor):
            # The contract is dense + mask (one code path for every backend); a ragged
            # tensor would otherwise fail deep inside with "Attempt to convert None".
            what = f"the {role} input" if role else "the input"
            raise InputTypeError(
                f"layer '{layer}': {what} is a tf.RaggedTensor; attnkit takes dense "
                "tensors with a padding mask. Pass x.to_tensor() and "
                "mask=tf.sequence_mask(x.row_lengths()) instead"
            )
    if isinstance(inputs, (list, tuple)):
        _check_list_length(len(inputs), f"layer '{layer}'")
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) == 3 else value
        _check_steps(layer, query, value, key)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask, None, None]
        masks += [None] * (3 - len(masks))
        query_mask, value_mask, key_mask = masks[:3]
    else:
        if isinstance(mask, (list, tuple)):
            raise MaskShapeError(
                f"layer '{layer}': self-attention (one input tensor) takes one padding mask of "
                f"shape (batch, steps); received a list of {len(mask)}. Pass mask=m, or the "
                "inputs as [query, value] with mask=[query_mask, value_mask]"
            )
        query = value = key = inputs
        query_mask = value_mask = mask
        key_mask = None
    query_mask = check_mask(layer, query_mask, query, "query")
    value_mask = check_mask(layer, value_mask, value, "value")
    key_mask = check_mask(layer, key_mask, key, "key")
    if value_mask is not None and key_mask is not None:
        key_valid = ops.logical_and(value_mask, key_mask)
    else:
        key_valid = value_mask if value_mask is not None else key_mask
    return query, value, key, query_mask, key_valid


def _check_steps(layer: str, query, value, key) -> None:
    """The inputs of a list agree on the batch, and the value and key on the steps (Tk), as far
    as their shapes are known."""
    shapes = {"query": query.shape, "value": value.shape, "key": key.shape}
    batches = {role: shape[0] for role, shape in shapes.items() if isinstance(shape[0], int)}
    if len(set(batches.values())) > 1:
        raise InputShapeError(
            f"layer '{layer}': the query, value and key inputs must have the same batch size; "
            f"received shapes {_describe(shapes)}"
        )
    steps = [shapes[role][1] for role in ("value", "key") if len(shapes[role]) > 1]
    if len(steps) == 2 and all(isinstance(t, int) for t in steps) and steps[0] != steps[1]:
        raise InputShapeError(
            f"layer '{layer}': the value and key inputs must have the same number of steps "
            f"(one value per key); received shapes {_describe(shapes)}"
        )


def _describe(shapes: dict) -> str:
    return ", ".join(f"{role} {tuple(shape)}" for role, shape in shapes.items())


def check_mask(layer: str, mask, tensor, role: str):
    """``mask`` as booleans, after checking it is (batch, steps) for ``tensor``."""
    if mask is None:
        return None
    expected = tuple(tensor.shape[:2])
    received = tuple(mask.shape)
    compatible = len(received) == 2 and all(
        a is None or b is None or a == b for a, b in zip(received, expected, strict=False)
    )
    if len(tensor.shape) < 3 or not compatible:
        raise MaskShapeError(
            f"layer '{layer}': the {role} mask must have shape (batch, steps) = "
            f"{expected}; received shape {received}"
        )
    return as_bool_mask(mask)


def static(dim):
    """``dim`` as an int, or None when it is unknown or symbolic."""
    return dim if isinstance(dim, int) else None


def zero_padding(tensor, valid):
    """``tensor`` with its padded steps (``valid`` False) set to zero; None: unchanged."""
    if valid is None:
        return tensor
    return ops.where(ops.expand_dims(valid, -1), tensor, ops.zeros_like(tensor))


def split_shapes(input_shape):
    """(query_shape, value_shape, key_shape) from what Keras passes to build()."""
    if (
        isinstance(input_shape, (list, tuple))
        and input_shape
        and isinstance(input_shape[0], (list, tuple))
    ):
        shapes = [tuple(s) for s in input_shape]
        _check_list_length(len(shapes), "AttentionLayer")
        query, value = shapes[0], shapes[1]
        return query, value, shapes[2] if len(shapes) == 3 else value
    shape = tuple(input_shape)
    return shape, shape, shape


def _check_list_length(count: int, owner: str) -> None:
    if count not in (2, 3):
        raise InputShapeError(
            f"{owner} takes one tensor, [query, value] or [query, value, key]; "
            f"received a list of {count}"
        )


def as_bool_mask(mask: Any) -> Any:
    """A padding mask as booleans: bool as is, integers nonzero, floats above 0.5 (Keras' rule)."""
    dtype = str(ops.dtype(mask))
    if "bool" in dtype:
        return mask
    if "int" in dtype:
        return ops.not_equal(mask, 0)
    return ops.greater(mask, 0.5)


def is_ragged(tensor: Any) -> bool:
    """True for a ``tf.RaggedTensor`` (or a symbolic input declared ragged).

    Looked up in ``sys.modules``: when TensorFlow was never imported no ragged tensor exists,
    and the other backends must not pay for importing it.
    """
    if getattr(tensor, "ragged", False) is True:  # keras.Input(..., ragged=True)
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(tensor, tf.RaggedTensor)
