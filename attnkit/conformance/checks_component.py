"""Checks on a component by itself: its API, a scorer's scores, a mask's predicate.

Each check is ``check_<property>(subject, device)``: it returns None, raises
:class:`CheckFailure` naming the component and what it saw, or :class:`SkipCheck` with why.
"""

from __future__ import annotations

import attrs
import numpy as np

from attnkit.components import Mask, Scorer
from attnkit.conformance._harness import (
    BATCH,
    FEATURES,
    CheckFailure,
    SkipCheck,
    Subject,
    numpy,
    variables_made,
)
from attnkit.errors import SpecParameterError

__all__ = [
    "check_batch_independence",
    "check_deterministic",
    "check_frozen_and_hashable",
    "check_mask_boolean_broadcast",
    "check_mask_pure",
    "check_mask_reach",
    "check_name_is_valid",
    "check_score_finite",
    "check_score_shape_cross",
    "check_score_shape_self",
    "check_scorer_weights_only_in_build",
    "check_token_round_trip",
    "check_unknown_parameter_rejected",
]


# -- API ------------------------------------------------------------------------------------------
def check_frozen_and_hashable(subject: Subject, device: str) -> None:
    """The component is an attrs frozen class, hashable, equal to a copy of itself."""
    component = subject.component
    if not attrs.has(type(component)):
        raise CheckFailure(f"{subject.label}: {type(component).__name__} is not an attrs class")
    fields = attrs.fields(type(component))
    if fields:
        try:
            setattr(component, fields[0].name, getattr(component, fields[0].name))
        except attrs.exceptions.FrozenInstanceError:
            pass
        else:
            raise CheckFailure(
                f"{subject.label}: assigning field {fields[0].name!r} succeeded; "
                "decorate the class with @attrs.frozen"
            )
    try:
        hash(component)
    except TypeError as error:
        raise CheckFailure(f"{subject.label}: not hashable ({error})") from error
    if attrs.evolve(component) != component:
        raise CheckFailure(f"{subject.label}: a copy with the same fields compares unequal")


def check_name_is_valid(subject: Subject, device: str) -> None:
    """``name`` is a lower-case spec NAME that does not end in a digit."""
    from attnkit.spec import is_name

    name = type(subject.component).name
    if not isinstance(name, str) or not is_name(name):
        raise CheckFailure(
            f"{subject.label}: name {name!r} is not a valid spec name "
            "([a-z][a-z0-9_]*, not ending in a digit)"
        )


def check_token_round_trip(subject: Subject, device: str) -> None:
    """The canonical token parses back (through the grammar) to an equal component."""
    from attnkit.spec import parse

    component = subject.component
    text = str(component)
    try:
        parsed = parse(text)
        again = type(component).from_token(parsed.tokens[0], text)
    except Exception as error:
        raise CheckFailure(
            f"{subject.label}: its token {text!r} does not parse back: "
            f"{type(error).__name__}: {error}"
        ) from error
    if len(parsed.tokens) != 1 or again != component:
        raise CheckFailure(f"{subject.label}: token {text!r} parses back to {again!r}")


def check_unknown_parameter_rejected(subject: Subject, device: str) -> None:
    """An unknown parameter raises the grammar's SpecParameterError."""
    from attnkit.spec import Token

    cls = type(subject.component)
    token = Token(cls.name, None, (("no_such_parameter", 1),))
    try:
        cls.from_token(token, str(token))
    except SpecParameterError:
        return
    except Exception as error:
        raise CheckFailure(
            f"{subject.label}: an unknown parameter raised "
            f"{type(error).__name__}, not SpecParameterError"
        ) from error
    raise CheckFailure(f"{subject.label}: accepted the unknown parameter 'no_such_parameter'")


# -- scorers --------------------------------------------------------------------------------------
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


def _scores(scorer: Scorer, tq: int, tk: int, seed: int = 0, batch: int = BATCH):
    from keras import ops

    rng = np.random.RandomState(seed)
    host = _Host()
    params = scorer.build(host, FEATURES, FEATURES)
    host.built = True
    query = rng.uniform(-1.5, 1.5, (batch, tq, FEATURES)).astype("float32")
    key = rng.uniform(-1.5, 1.5, (batch, tk, FEATURES)).astype("float32")
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
    """Finite inputs give finite scores."""
    scores, _ = _scores(_scorer(subject), 5, 6)
    if not np.isfinite(scores).all():
        raise CheckFailure(
            f"{subject.label}: {np.size(scores) - np.isfinite(scores).sum()} "
            "non-finite scores for finite inputs in [-1.5, 1.5]"
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


# -- masks ----------------------------------------------------------------------------------------
def _mask(subject: Subject) -> Mask:
    if not isinstance(subject.component, Mask):
        raise SkipCheck("not a mask")
    return subject.component


def _grid(mask: Mask, tq: int, tk: int, q_shape=(1, -1, 1), k_shape=(1, 1, -1)) -> np.ndarray:
    from keras import ops

    q_idx = ops.reshape(ops.arange(tq, dtype="int32"), q_shape)
    k_idx = ops.reshape(ops.arange(tk, dtype="int32"), k_shape)
    return numpy(mask.allowed(q_idx, k_idx))


def check_mask_boolean_broadcast(subject: Subject, device: str) -> None:
    """allowed() returns booleans of the broadcast shape of its index grids."""
    mask = _mask(subject)
    for q_shape, k_shape, expected in (
        ((1, -1, 1), (1, 1, -1), (1, 6, 9)),
        ((-1, 1), (1, -1), (6, 9)),
    ):
        grid = _grid(mask, 6, 9, q_shape, k_shape)
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
    """allowed() depends only on (q_idx, k_idx): the same pair gives the same answer anywhere."""
    from keras import ops

    mask = _mask(subject)
    full = _grid(mask, 9, 9)[0]
    if not np.array_equal(full, _grid(mask, 9, 9)[0]):
        raise CheckFailure(f"{subject.label}: two calls of allowed() differ")
    # The same pairs asked in another layout: one flat list of (i, j).
    qs, ks = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")
    flat = numpy(
        mask.allowed(
            ops.convert_to_tensor(qs.reshape(-1).astype("int32")),
            ops.convert_to_tensor(ks.reshape(-1).astype("int32")),
        )
    )
    if not np.array_equal(flat.reshape(9, 9), full):
        raise CheckFailure(
            f"{subject.label}: allowed() answers differently for the same "
            "(query, key) pairs when they are laid out differently"
        )


def check_mask_reach(subject: Subject, device: str) -> None:
    """The declared reach() never allows less than allowed(): no allowed key lies outside it."""
    mask = _mask(subject)
    back, ahead = mask.reach()
    grid = _grid(mask, 16, 16)[0]
    for i, j in zip(*np.nonzero(grid), strict=True):
        offset = int(j) - int(i)
        if (back is not None and offset < -back) or (ahead is not None and offset > ahead):
            raise CheckFailure(
                f"{subject.label}: declares reach (back={back}, ahead={ahead}) but allows query "
                f"{i} to see key {j} (offset {offset:+d}); the execution plans would drop it"
            )
