"""Checks on a mask's predicate, at the lengths users run: every row of a 1024-step grid, and
sampled rows of grids up to 65536 steps (a mask that errs only past some index is shown it)."""

from __future__ import annotations

import numpy as np

from attnkit.components import Mask
from attnkit.conformance._harness import CheckFailure, SkipCheck, Subject, numpy

__all__ = [
    "check_mask_boolean_broadcast",
    "check_mask_kernel_form",
    "check_mask_pure",
    "check_mask_reach",
]

#: Every row of a grid this long is asked.
FULL_GRID = 1024
#: Rows of grids up to this long are sampled.
LONGEST = 65536


def _mask(subject: Subject) -> Mask:
    if not isinstance(subject.component, Mask):
        raise SkipCheck("not a mask")
    return subject.component


def _rows(mask: Mask, rows, steps: int) -> np.ndarray:
    """allowed() for queries ``rows`` against keys 0 .. steps - 1: (len(rows), steps)."""
    from keras import ops

    q_idx = ops.reshape(ops.convert_to_tensor(np.asarray(rows, "int32")), (1, -1, 1))
    k_idx = ops.reshape(ops.arange(steps, dtype="int32"), (1, 1, -1))
    return numpy(mask.allowed(q_idx, k_idx))[0]


def _grids():
    """(rows, steps): every row of FULL_GRID steps, then sampled rows (the first, the last, and
    some between) of longer grids up to LONGEST."""
    yield np.arange(FULL_GRID), FULL_GRID
    rng = np.random.default_rng(0)
    for steps in (4096, LONGEST):
        sampled = rng.choice(steps, 14, replace=False)
        yield np.unique(np.concatenate([[0, steps // 2, steps - 1], sampled])), steps


def check_mask_boolean_broadcast(subject: Subject, device: str) -> None:
    """allowed() returns booleans of the broadcast shape of its index grids."""
    from keras import ops

    mask = _mask(subject)
    for q_shape, k_shape, expected in (
        ((1, -1, 1), (1, 1, -1), (1, 6, 9)),
        ((-1, 1), (1, -1), (6, 9)),
    ):
        q_idx = ops.reshape(ops.arange(6, dtype="int32"), q_shape)
        k_idx = ops.reshape(ops.arange(9, dtype="int32"), k_shape)
        grid = numpy(mask.allowed(q_idx, k_idx))
        if grid.dtype != np.bool_:
            raise CheckFailure(
                f"{subject.label}: allowed() returned dtype {grid.dtype}, expected bool"
            )
        if grid.shape != expected:
            raise CheckFailure(
                f"{subject.label}: allowed() on grids {q_shape}/{k_shape} has "
                f"shape {grid.shape}, expected {expected}"
            )


def check_mask_pure(subject: Subject, device: str) -> None:
    """allowed() depends only on (q_idx, k_idx): the same pairs give the same answers asked
    twice, in a grid, as one flat list of pairs, and one row at a time, up to 65536 steps."""
    from keras import ops

    mask = _mask(subject)
    for rows, steps in _grids():
        grid = _rows(mask, rows, steps)
        picked = np.random.default_rng(steps).choice(len(rows), min(len(rows), 6), replace=False)
        if not np.array_equal(_rows(mask, rows[picked], steps), grid[picked]):
            raise CheckFailure(
                f"{subject.label}: allowed() answers differently for the same queries asked "
                f"as another set of rows ({steps} keys)"
            )
        # Each picked row against the keys around it and some anywhere, as one flat list.
        near = rows[picked][:, None] + np.arange(-8, 9)[None, :]
        anywhere = np.random.default_rng(1).integers(0, steps, (len(picked), 32))
        ks = np.clip(np.concatenate([near, anywhere], axis=1), 0, steps - 1)
        qs = np.broadcast_to(rows[picked][:, None], ks.shape)
        flat = numpy(
            mask.allowed(
                ops.convert_to_tensor(qs.reshape(-1), "int32"),
                ops.convert_to_tensor(ks.reshape(-1), "int32"),
            )
        )
        expected = grid[np.repeat(picked, ks.shape[1]), ks.reshape(-1)]
        if not np.array_equal(flat, expected):
            raise CheckFailure(
                f"{subject.label}: allowed() answers differently for the same (query, key) "
                f"pairs laid out as one flat list ({steps} keys)"
            )


def check_mask_reach(subject: Subject, device: str) -> None:
    """The declared reach() never allows less than allowed(): no allowed key lies outside it,
    on any row of 1024 steps or on sampled rows up to 65536."""
    mask = _mask(subject)
    back, ahead = mask.reach()
    for rows, steps in _grids():
        grid = _rows(mask, rows, steps)
        offsets = np.arange(steps)[None, :] - rows[:, None]
        outside = np.zeros_like(grid)
        if back is not None:
            outside |= offsets < -back
        if ahead is not None:
            outside |= offsets > ahead
        bad = np.argwhere(grid & outside)
        if len(bad):
            row, key = int(rows[bad[0][0]]), int(bad[0][1])
            raise CheckFailure(
                f"{subject.label}: declares reach (back={back}, ahead={ahead}) but allows query "
                f"{row} to see key {key} (offset {key - row:+d}, {len(bad)} such pairs on a grid "
                f"of {steps} steps); the execution plans would drop them"
            )


def check_mask_kernel_form(subject: Subject, device: str) -> None:
    """A mask declaring a ``kernel_form()`` allows exactly that (``full``: every key;
    ``causal``: j <= i) on every row of 1024 steps and sampled rows up to 65536: the kernel plan
    applies the form, not the predicate."""
    mask = _mask(subject)
    form = mask.kernel_form()
    if form is None:
        raise SkipCheck(f"'{subject.label}' declares no kernel form")
    if form not in ("full", "causal"):
        raise CheckFailure(f"{subject.label}: kernel_form() is {form!r}; expected full or causal")
    for rows, steps in _grids():
        grid = _rows(mask, rows, steps)
        expected = np.ones_like(grid)
        if form == "causal":
            expected = np.arange(steps)[None, :] <= rows[:, None]
        wrong = np.argwhere(grid != expected)
        if len(wrong):
            row, key = int(rows[wrong[0][0]]), int(wrong[0][1])
            raise CheckFailure(
                f"{subject.label}: declares kernel_form() {form!r} but allowed() says "
                f"{bool(grid[tuple(wrong[0])])} for query {row} and key {key} ({len(wrong)} "
                f"such pairs on a grid of {steps} steps)"
            )
