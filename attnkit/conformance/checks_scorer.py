"""Checks on a scorer by itself: the shape, dtype and finiteness of its scores (at the suite's
sizes and at the magnitudes real models feed it), its weights, batch independence, determinism,
and each way it declares a faster computation of the same numbers (``project``/``pair``,
``window``)."""

from __future__ import annotations

import numpy as np

from attnkit.components import Scorer
from attnkit.conformance._harness import (
    BATCH,
    FEATURES,
    CheckFailure,
    SkipCheck,
    Subject,
    numpy,
    variables_made,
)
from attnkit.conformance._runs import realistic

__all__ = [
    "check_batch_independence",
    "check_deterministic",
    "check_pair_matches_score",
    "check_score_finite",
    "check_score_shape_cross",
    "check_score_shape_self",
    "check_scorer_weights_only_in_build",
    "check_window_matches_pair",
]


class _Host:
    """A stand-in host layer that records weights and refuses new ones once built."""

    def __init__(self) -> None:
        import keras

        self.layer = keras.layers.Layer()
        self.built = False
        self.names: list[str] = []

    def add_weight(self, name: str, shape=(), initializer="glorot_uniform", **kwargs):
        if self.built:
            raise CheckFailure(f"created weight {name!r} outside build()")
        self.names.append(name)
        kwargs.setdefault("autocast", False)
        return self.layer.add_weight(name=name, shape=shape, initializer=initializer, **kwargs)


def _scorer(subject: Subject) -> Scorer:
    if not isinstance(subject.component, Scorer):
        raise SkipCheck("not a scorer")
    if subject.fixed_length:
        raise SkipCheck(f"'{subject.label}' scores positions, not query-key pairs")
    return subject.component


def _scores(scorer: Scorer, tq: int, tk: int, seed: int = 0, batch: int = BATCH, inputs=None):
    """(scores, (host, params, query, key, variables made in score())) for the suite's inputs
    (uniform in [-1.5, 1.5], FEATURES features) or ``inputs`` = (query, key)."""
    from keras import ops

    rng = np.random.RandomState(seed)
    if inputs is None:
        query = rng.uniform(-1.5, 1.5, (batch, tq, FEATURES)).astype("float32")
        key = rng.uniform(-1.5, 1.5, (batch, tk, FEATURES)).astype("float32")
    else:
        query, key = inputs
    host = _Host()
    params = scorer.build(host, query.shape[-1], key.shape[-1])
    host.built = True
    with variables_made() as made:
        out = scorer.score(params, ops.convert_to_tensor(query), ops.convert_to_tensor(key))
    return numpy(out), (host, params, query, key, made)


def _expect_score_shape(subject: Subject, tq: int, tk: int) -> None:
    scores, _ = _scores(_scorer(subject), tq, tk)
    if scores.shape != (BATCH, tq, tk):
        raise CheckFailure(
            f"{subject.label}: scores of shape {scores.shape}, expected {(BATCH, tq, tk)} "
            f"for queries (B, Tq, D) = {(BATCH, tq, FEATURES)} and keys {(BATCH, tk, FEATURES)}"
        )


def check_score_shape_self(subject: Subject, device: str) -> None:
    """score() of (B, T, D) against itself is (B, T, T)."""
    _expect_score_shape(subject, 5, 5)


def check_score_shape_cross(subject: Subject, device: str) -> None:
    """score() of (B, Tq, D) against (B, Tk, D) with Tq != Tk is (B, Tq, Tk)."""
    _expect_score_shape(subject, 3, 6)


def check_score_finite(subject: Subject, device: str) -> None:
    """Finite inputs give finite scores: the suite's small ones, and the magnitudes real models
    feed a scorer (64 features, unit-normal, three times that, and about a common offset)."""
    scorer = _scorer(subject)
    cases = [("inputs in [-1.5, 1.5]", None)]
    for kind in ("unit", "wide", "offset"):
        x = realistic(kind, 9, seed=1)
        cases.append((f"{kind} inputs over {x.shape[-1]} features", (x[:, :5], x[:, 3:])))
    for what, inputs in cases:
        scores, _ = _scores(scorer, 5, 6, inputs=inputs)
        if not np.isfinite(scores).all():
            raise CheckFailure(
                f"{subject.label}: {np.size(scores) - np.isfinite(scores).sum()} "
                f"non-finite scores of {np.size(scores)} for finite {what}"
            )


def check_scorer_weights_only_in_build(subject: Subject, device: str) -> None:
    """Every weight is made in build(); score() makes none, through the host or as a
    ``keras.Variable`` of its own (it would be neither trained nor saved)."""
    made = _scores(_scorer(subject), 4, 4)[1][-1]  # _Host raises on add_weight in score()
    if made:
        raise CheckFailure(
            f"{subject.label}: score() created keras.Variable {made[0]!r} ({len(made)} in all); "
            "a variable made outside build() is neither trained nor saved. Create every weight "
            "in build() with layer.add_weight(...) and read it from params"
        )


def check_batch_independence(subject: Subject, device: str) -> None:
    """Sample i's scores do not depend on the other samples: f(x)[i] == f(x[i:i+1])[0]."""
    from keras import ops

    scorer = _scorer(subject)
    scores, (host, params, query, key, _) = _scores(scorer, 4, 5)
    for i in range(BATCH):
        alone = numpy(
            scorer.score(
                params,
                ops.convert_to_tensor(query[i : i + 1]),
                ops.convert_to_tensor(key[i : i + 1]),
            )
        )
        if alone.shape != (1, 4, 5) or not np.allclose(alone[0], scores[i], rtol=1e-6, atol=1e-6):
            raise CheckFailure(
                f"{subject.label}: sample {i} scored alone differs from sample "
                f"{i} in a batch of {BATCH}"
            )


def check_deterministic(subject: Subject, device: str) -> None:
    """The same inputs and weights give bit-identical scores twice."""
    from keras import ops

    scorer = _scorer(subject)
    scores, (host, params, query, key, _) = _scores(scorer, 4, 5)
    again = numpy(scorer.score(params, ops.convert_to_tensor(query), ops.convert_to_tensor(key)))
    if not np.array_equal(scores, again, equal_nan=True):
        raise CheckFailure(
            f"{subject.label}: two calls on the same inputs differ by up to "
            f"{np.nanmax(np.abs(scores - again)):.3g}"
        )


def check_pair_matches_score(subject: Subject, device: str) -> None:
    """A scorer that splits (``project`` returns features) gives ``pair(q'_i, k'_j) ==
    score(q, k)[i, j]`` for every pair: the banded plan scores windows with the split."""
    from keras import ops

    scorer = _scorer(subject)
    scores, (host, params, query, key, _) = _scores(scorer, 4, 5)
    features = scorer.project(params, ops.convert_to_tensor(query), ops.convert_to_tensor(key))
    if features is None:
        raise SkipCheck(f"'{subject.label}' has no project()/pair() split")
    q_feat, k_feat = features
    shape = (BATCH, 4, 5, q_feat.shape[-1])
    try:
        paired = numpy(
            scorer.pair(
                params,
                ops.broadcast_to(ops.expand_dims(q_feat, 2), shape),
                ops.broadcast_to(ops.expand_dims(k_feat, 1), shape),
            )
        )
    except Exception as error:
        raise CheckFailure(
            f"{subject.label}: pair() on aligned features of shape {shape} fails: "
            f"{type(error).__name__}: {error}"
        ) from error
    if paired.shape != scores.shape:
        raise CheckFailure(
            f"{subject.label}: pair() on aligned features of shape {shape} returned shape "
            f"{paired.shape}, expected {scores.shape} (the features' leading axes)"
        )
    if not np.allclose(paired, scores, rtol=1e-5, atol=1e-5):
        raise CheckFailure(
            f"{subject.label}: pair(project(q, k)) differs from score(q, k) by up to "
            f"{np.abs(paired - scores).max():.3g}"
        )


def check_window_matches_pair(subject: Subject, device: str) -> None:
    """``window(q', k', W)`` gives what stacking ``pair()`` over the W offsets gives, in value
    and in the gradients of its features and the scorer's weights, op by op and inside a
    compiled computation (where ``additive`` and ``bahdanau`` take a hand-written gradient):
    the banded plan scores windows with it."""
    from keras import ops

    from attnkit.backend import value_and_grads
    from attnkit.conformance._runs import gradient_modes

    scorer = _scorer(subject)
    _, (host, params, query, key, _) = _scores(scorer, 9, 9)
    features = scorer.project(params, ops.convert_to_tensor(query), ops.convert_to_tensor(key))
    if features is None:
        raise SkipCheck(f"'{subject.label}' has no project()/pair() split")
    width = 4
    q_feat = numpy(features[0])
    k_feat = np.pad(numpy(features[1]), [(0, 0), (1, width - 2), (0, 0)])
    upstream = np.random.default_rng(7).normal(size=(*q_feat.shape[:2], width))
    weights = [params[name] for name in sorted(params)]

    def loss_of(window):
        def loss(q, k):
            scores = ops.cast(window(q, k), "float32")
            return ops.sum(scores * ops.convert_to_tensor(upstream, "float32")), [scores]

        return loss

    def stacked(q, k):
        steps = ops.shape(q)[1]
        return ops.stack(
            [scorer.pair(params, q, k[:, o : o + steps]) for o in range(width)], axis=-1
        )

    expected = value_and_grads(loss_of(stacked), [q_feat, k_feat], weights)
    for compiled in gradient_modes():
        got = value_and_grads(
            loss_of(lambda q, k: scorer.window(params, q, k, width)),
            [q_feat, k_feat],
            weights,
            compiled=compiled,
        )
        how = "inside a compiled computation" if compiled else "op by op"
        _compare_window(subject, got, expected, how, sorted(params))


def _compare_window(subject: Subject, got, expected, how: str, weights: list[str]) -> None:
    names = ["scores", "the gradient of the query features", "the gradient of the key features"]
    names += [f"the gradient of weight {name!r}" for name in weights]
    flat = lambda result: [*result[0], *result[1], *result[2]]  # noqa: E731
    for name, a, b in zip(names, flat(got), flat(expected), strict=True):
        a = np.zeros(np.shape(b)) if a is None else a
        b = np.zeros(np.shape(a)) if b is None else b
        if np.shape(a) != np.shape(b) or not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            difference = np.abs(a - b).max() if np.shape(a) == np.shape(b) else np.shape(a)
            raise CheckFailure(
                f"{subject.label}: window() {how} differs from pair() stacked over the offsets "
                f"in {name} (by up to {difference})"
            )
