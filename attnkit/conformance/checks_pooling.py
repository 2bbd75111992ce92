"""Checks on a pooling, held like a scorer: each sample's output depends on that sample alone,
and the padded query rows of a partially padded sample output exactly zero."""

from __future__ import annotations

import numpy as np

from attnkit.components import Pooling
from attnkit.conformance._harness import BATCH, CheckFailure, SkipCheck, Subject, make_data, numpy
from attnkit.conformance.checks_layer import build

__all__ = ["check_pooling_batch_independence", "check_pooling_zeroes_padded_queries"]


def _pooling(subject: Subject) -> Pooling:
    if not isinstance(subject.component, Pooling):
        raise SkipCheck("not a pooling")
    return subject.component


def check_pooling_batch_independence(subject: Subject, device: str) -> None:
    """Sample i's output (and its returned weights) computed in a padded batch equals it
    computed alone, within 1e-6: no pooling mixes samples."""
    _pooling(subject)
    layer = build(subject, return_attention=True)
    x, mask = make_data()
    out, weights = (numpy(t) for t in layer(x, mask=mask))
    for i in range(BATCH):
        alone, alone_weights = (numpy(t) for t in layer(x[i : i + 1], mask=mask[i : i + 1]))
        for what, batched, single in (("output", out, alone), ("weights", weights, alone_weights)):
            if not np.allclose(batched[i : i + 1], single, rtol=1e-6, atol=1e-6):
                raise CheckFailure(
                    f"{subject.label}: sample {i}'s {what} in a batch of {BATCH} differs from "
                    f"it computed alone by up to {np.abs(batched[i : i + 1] - single).max():.3g}"
                )


def check_pooling_zeroes_padded_queries(subject: Subject, device: str) -> None:
    """The padded steps of a partially padded sample output exactly zero (one output per step);
    a many-to-one pooling outputs zero for a sample with every step padded."""
    pooling = _pooling(subject)
    layer = build(subject)
    x, mask = make_data()
    if pooling.many_to_one:
        mask[2] = False
        out = numpy(layer(x, mask=mask))
        if (out[2] != 0).any():
            raise CheckFailure(
                f"{subject.label}: a sample with every step padded outputs up to "
                f"{np.abs(out[2]).max():.3g}, expected exact zeros"
            )
        return
    out = numpy(layer(x, mask=mask))
    padded = out[1][~mask[1]]  # sample 1 is padded after step 4
    if (padded != 0).any():
        raise CheckFailure(
            f"{subject.label}: the padded steps of a partially padded sample output up to "
            f"{np.abs(padded).max():.3g}, expected exact zeros"
        )
