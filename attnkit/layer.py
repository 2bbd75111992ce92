"""``AttentionLayer``: a Keras layer composed from a spec's scorer, masks and pooling."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import attrs
import keras
from keras import ops

from attnkit import debug, plans
from attnkit.dropout import WeightDropout
from attnkit.errors import ComponentError, InputShapeError
from attnkit.inputs import split_shapes, static, unpack, zero_padding
from attnkit.ops import hide_unseen, masked_softmax, score_dtype
from attnkit.resolution import Resolved
from attnkit.saving import (
    activation_config,
    check_keras_registration,
    check_registered,
    check_saved_activation,
    origin,
    resolve_spec,
)

__all__ = ["Attended", "AttentionLayer", "capture"]

#: Layer name -> list of weight arrays, while :func:`capture` is active.
_CAPTURE: contextvars.ContextVar[dict[str, list] | None] = contextvars.ContextVar(
    "attnkit_capture", default=None
)


@contextlib.contextmanager
def capture(*names: str) -> Iterator[dict[str, list]]:
    """Record the attention weights of the named ``AttentionLayer`` s while the block runs.

    Yields a dict layer name -> list with one NumPy array per eager call of that layer (what
    ``return_attention=True`` would return). The named layers run the dense plan meanwhile, so
    the weights exist; outputs are unchanged. Only eager calls record (``model(x)``, not
    ``model.predict``, which traces).
    """
    found: dict[str, list] = {name: [] for name in names}
    token = _CAPTURE.set(found)
    try:
        yield found
    finally:
        _CAPTURE.reset(token)


@attrs.define  # not frozen: torch.compile (dynamo) cannot trace object.__setattr__
class Attended:
    """What one pass of the layer computed.

    Attributes:
        output: the layer output, in the compute dtype.
        reported: the weights ``return_attention`` returns, in the compute dtype.
        weights: the raw attention (B, Tq', Tk) in the scoring dtype, after dropout.
        allowed: boolean (B or 1, Tq', Tk) of visible keys, or None when all were visible.
    """

    output: Any
    reported: Any
    weights: Any
    allowed: Any


class _Weights:
    """What a component's ``build`` gets as ``layer``: the host layer, with prefixed weight names.

    Weights default to ``autocast=False`` so that under mixed precision the components read
    them in float32, the dtype scores are computed in.
    """

    def __init__(self, layer: keras.layers.Layer, prefix: str) -> None:
        self._layer = layer
        self._prefix = prefix

    def add_weight(self, name: str, shape=(), initializer="glorot_uniform", **kwargs):
        kwargs.setdefault("autocast", False)
        return self._layer.add_weight(
            name=self._prefix + name, shape=shape, initializer=initializer, **kwargs
        )

    def __getattr__(self, item: str) -> Any:
        return getattr(self._layer, item)


@keras.saving.register_keras_serializable(package="attnkit")
class AttentionLayer(keras.layers.Layer):
    """Attention composed from a spec: one scorer, masks (ANDed) and a pooling.

    For queries q (B, Tq, Dq), keys k (B, Tk, Dk) and values v (B, Tk, Dv)::

        s_ij    = scorer(q_i, k_j)                           in float32 or wider
        a_ij    = masked_softmax(act(s_ij), allowed_ij)     allowed = AND(masks) & padding
        c_i     = sum_j a_ij v_j
        output  = pooling(c, a)

    A row with no allowed key gets zero weights and a zero output, never NaN. Padded keys get
    exactly zero weight; padded query steps output zeros.

    Args:
        spec: e.g. ``"additive+local15+seq"``, ``"dot+causal"``, ``"bahdanau+last(units=128)"``.
        return_attention: also return the attention weights: (B, Tq, Tk) for ``seq``,
            (B, Tk) for many-to-one poolings.
        dropout: rate of dropout on the attention weights during training.
        seed: seed of that dropout.
        attention_activation: activation applied to the raw scores before the softmax
            (keras-self-attention's option of the same name), e.g. ``"sigmoid"``.
        attention_regularizer_weight: lambda of keras-self-attention's penalty
            ``lambda * sum_b ||A A^T - I||_F^2 / B``, with padded query rows left out.
        plan: how to compute (see :mod:`attnkit.plans`): ``auto`` picks ``kernel`` (the
            backend's fused ``dot_product_attention``) on torch and on JAX with a GPU for dot
            scorers with ``full``/``causal`` masks, ``banded`` for masks with a bounded reach
            once the sequence is long enough for windows to pay off, ``chunked`` for long
            fixed lengths, else ``dense``; returned weights, the regulariser and
            many-to-one poolings always run ``dense``.
        **kwargs: the usual Layer arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: one tensor x (B, T, D) for self-attention (q = k = v = x), or
            ``[query, value]`` or ``[query, value, key]`` (Keras' order; key defaults to value).
        mask: Keras padding masks, (B, T) each; propagated from ``Embedding(mask_zero=True)``.
        training: enables dropout.

    Output:
        ``seq``: (B, Tq, Dv), carrying the query mask; many-to-one: (B, Dv) or (B, units), no
        mask; ``[output, weights]`` with ``return_attention=True``.
    """

    def __init__(
        self,
        spec: str,
        *,
        return_attention: bool = False,
        dropout: float = 0.0,
        seed: int | None = None,
        attention_activation: Any = None,
        attention_regularizer_weight: float = 0.0,
        plan: str = "auto",
        **kwargs: Any,
    ) -> None:
        plugins = kwargs.pop("plugins", None)
        super().__init__(**kwargs)
        self.resolved: Resolved = resolve_spec(spec, plugins or {})
        self.spec = self.resolved.canonical
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
        if float(attention_regularizer_weight) < 0.0:
            raise ValueError(
                "attention_regularizer_weight must be >= 0. "
                f"Received: attention_regularizer_weight={attention_regularizer_weight!r}"
            )
        if plan not in plans.PLANS:
            raise ValueError(
                f"plan must be one of {', '.join(plans.PLANS)}. Received: plan={plan!r}"
            )
        self.plan = plan
        self.return_attention = bool(return_attention)
        self.dropout = float(dropout)
        self.seed = seed
        self.attention_regularizer_weight = float(attention_regularizer_weight)
        activation = keras.activations.get(attention_activation)
        self.attention_activation = None if activation is keras.activations.linear else activation
        self.supports_masking = True
        self.seed_generator = keras.random.SeedGenerator(seed) if self.dropout > 0 else None
        self._scorer_params: dict[str, Any] = {}
        self._pooling_params: dict[str, Any] = {}

    # -- build --------------------------------------------------------------------------------
    def build(self, input_shape):
        query_shape, value_shape, key_shape = split_shapes(input_shape)
        pooling, scorer = self.resolved.pooling, self.resolved.scorer
        if len(query_shape) not in pooling.input_ranks:
            ranks = " or ".join(str(r) for r in pooling.input_ranks)
            raise InputShapeError(
                f"layer '{self.name}' ('{self.spec}'): pooling '{pooling.name}' takes inputs of "
                f"rank {ranks}; received an input of shape {tuple(query_shape)}"
            )
        try:
            query_dim, key_dim = pooling.dims(tuple(query_shape), tuple(key_shape))
            self._pooling_params = pooling.build(
                _Weights(self, "pooling_"), query_shape[-1], value_shape[-1]
            )
            self._scorer_params = scorer.build(_Weights(self, "scorer_"), query_dim, key_dim)
        except ValueError as error:
            raise ComponentError(f"layer '{self.name}' ('{self.spec}'): {error}") from error

    # -- call ---------------------------------------------------------------------------------
    def call(self, inputs, mask=None, training=None):
        attended = self.attend(inputs, mask=mask, training=training)
        captured = _CAPTURE.get()
        if captured is not None and self.name in captured and attended.reported is not None:
            captured[self.name].append(keras.ops.convert_to_numpy(attended.reported))
        if self.return_attention:
            return [attended.output, attended.reported]
        return attended.output

    def attend(self, inputs, mask=None, training=None) -> Attended:
        """Run the layer and return everything it computed (for tests and visualisation).

        Same arguments as ``call``; the layer must be built. Returns an :class:`Attended`
        whose ``weights`` are the raw (B, Tq', Tk) attention and ``allowed`` the boolean of
        keys each query could see (None when everything was visible).
        """
        query, value, key, query_mask, key_valid = unpack(self.name, inputs, mask)
        work = score_dtype(self.compute_dtype)
        # Zero padded steps before any arithmetic ("double where"): whatever they hold (1e30,
        # inf, NaN) then reaches neither the output nor any gradient, even though in
        # self-attention the same tensor also feeds the queries.
        query = zero_padding(query, query_mask)
        key = zero_padding(key, key_valid)
        value = zero_padding(value, key_valid)
        pooling, scorer = self.resolved.pooling, self.resolved.scorer
        checking = debug.enabled()  # read at trace time, like every Python branch here
        if checking:
            query = self._debug(query, "the query input (padding excluded)")
            if not isinstance(inputs, (list, tuple)):
                key = value = query
            else:
                key = self._debug(key, "the key input (padding excluded)")
                value = self._debug(value, "the value input (padding excluded)")
        # Under a pure float16 policy the variables are float16 too; components see `work`.
        pooling_params = {k: ops.cast(v, work) for k, v in self._pooling_params.items()}
        scorer_params = {k: ops.cast(v, work) for k, v in self._scorer_params.items()}
        prepared = pooling.prepare(pooling_params, query, key, query_mask)
        prepared = attrs.evolve(
            prepared, query=ops.cast(prepared.query, work), key=ops.cast(prepared.key, work)
        )
        single = not isinstance(inputs, (list, tuple))
        plan = self._plan(prepared, single, training=bool(training))
        dropout = None
        if training and self.dropout > 0:
            dropout = WeightDropout(self.dropout, self.seed_generator)
        if plan == "kernel":
            context = plans.kernel(
                scorer.dot_scale(scorer_params, prepared.query.shape[-1]),
                prepared,
                ops.cast(value, work),
                self._kernel_form(prepared, single) == "causal",
                key_valid,
            )
            if checking:
                context = self._debug(context, "the fused attention kernel's output", scorer)
            output, _ = pooling.pool(pooling_params, context, None, prepared, value)
            if checking:
                output = self._debug(output, "the output", pooling)
            return Attended(ops.cast(output, self.compute_dtype), None, None, None)
        if plan != "dense":
            try:
                context = plans.run(
                    plan,
                    scorer,
                    scorer_params,
                    prepared,
                    ops.cast(value, work),
                    self.resolved.masks,
                    key_valid,
                    self.attention_activation,
                    dropout,
                    pair_width=scorer.pair_width(prepared.query.shape[-1], prepared.key.shape[-1]),
                    training=bool(training),
                )
            except ComponentError as error:  # the plans know the scorer, not the layer
                raise ComponentError(f"layer '{self.name}': {error}") from error
            if checking:
                context = self._debug(context, f"the {plan} plan's context", scorer)
            output, _ = pooling.pool(pooling_params, context, None, prepared, value)
            if checking:
                output = self._debug(output, "the output", pooling)
            return Attended(ops.cast(output, self.compute_dtype), None, None, None)
        allowed = self._allowed(prepared, key_valid)
        if allowed is not None and self.resolved.masks:
            # Padding is zeroed above; keys the masks hide from every query (causal with
            # Tk > Tq, a many-to-one query's window) are zeroed here, before the scorer sees
            # them, so that what they hold reaches no output and no gradient either.
            hidden_key, value = hide_unseen(allowed, prepared.key, value)
            prepared = attrs.evolve(prepared, key=hidden_key)
        scores = scorer.score(scorer_params, prepared.query, prepared.key)
        self._check_scores(scores, prepared.query, prepared.key)
        scores = ops.cast(scores, work)
        if checking:  # only the scores the masks let through are ever used
            scores = self._debug(scores, "the scores", scorer, allowed)
        if self.attention_activation is not None:
            scores = self.attention_activation(scores)
        seen = pooling.aligned and plans.rows_see_a_key(
            self.resolved.masks, key_valid, prepared.valid
        )
        weights = masked_softmax(scores, allowed, rows_see_a_key=seen)
        if checking:
            weights = self._debug(weights, "the attention weights (activation, masked softmax)")
        if allowed is not None:
            # From here on "valid" means "sees at least one key": a many-to-one output whose
            # query saw nothing is zero, like a seq row with nothing visible.
            prepared = attrs.evolve(prepared, valid=ops.any(allowed, axis=-1))
        elif pooling.many_to_one and not (static(prepared.key.shape[1]) or 0) > 0:
            # Unmasked, a query sees every key: none at all when there are no keys (Tk = 0),
            # and then last(units)'s tanh(W_c [0; h_t]) must be zeroed too.
            seen = ops.greater(ops.shape(prepared.key)[1], 0)
            prepared = attrs.evolve(
                prepared, valid=ops.broadcast_to(seen, ops.shape(prepared.query)[:2])
            )
        if self.attention_regularizer_weight > 0:
            self.add_loss(self._regularizer(weights, prepared.valid))
        if dropout is not None:
            weights = dropout(weights)
        value = ops.cast(value, work)
        context = ops.matmul(weights, value) if pooling.uses_context else None
        output, reported = pooling.pool(pooling_params, context, weights, prepared, value)
        if checking:
            output = self._debug(output, "the output", pooling)
        return Attended(
            ops.cast(output, self.compute_dtype),
            ops.cast(reported, self.compute_dtype),
            weights,
            allowed,
        )

    def _debug(self, value, stage: str, component=None, valid=None):
        """``value``, checked for NaN/inf in debug mode (:mod:`attnkit.debug`)."""
        what = f"layer '{self.name}' ('{self.spec}'): {stage}"
        if component is not None:
            what += f" from {component.kind} '{component.name}' ({origin(component)})"
        return debug.check(value, what, valid)

    def _kernel_form(self, prepared, single: bool) -> str | None:
        tq, tk = (static(prepared.query.shape[1]), static(prepared.key.shape[1]))
        return plans.kernel_form(
            self.resolved.scorer,
            self.resolved.masks,
            self.resolved.pooling,
            same_length=single or (tq is not None and tq == tk),
        )

    def _plan(self, prepared, single: bool, training: bool = False) -> str:
        """The execution plan for these shapes (see attnkit.plans)."""
        # A length is known only when it is a Python int: JAX traces symbolic shapes with
        # jax.export dimension expressions, which refuse inconclusive comparisons.
        tq, tk = (static(prepared.query.shape[1]), static(prepared.key.shape[1]))
        pooling = self.resolved.pooling
        kernel_ok = (
            not (training and self.dropout > 0)
            and self.attention_activation is None
            and self._kernel_form(prepared, single) is not None
        )
        return plans.choose(
            self.plan,
            self.resolved.masks,
            pooling,
            self.resolved.scorer,
            prepared.query.shape[-1],
            prepared.key.shape[-1],
            tq,
            tk,
            needs_weights=self.return_attention
            or self.attention_regularizer_weight > 0
            or self.name in (_CAPTURE.get() or ()),
            same_length=single or (tq is not None and tq == tk),
            kernel_ok=kernel_ok,
            training=training,
        )

    def _allowed(self, prepared, key_valid):
        """The boolean (B or 1, Tq, Tk) of keys each query may see, or None for all."""
        allowed = None

        def both(a, b):
            return b if a is None else ops.logical_and(a, b)

        if self.resolved.masks:
            q_idx = ops.expand_dims(prepared.positions, -1)
            steps = ops.shape(prepared.key)[1]
            k_idx = ops.reshape(ops.arange(steps, dtype="int32"), (1, 1, -1))
            for mask in self.resolved.masks:
                allowed = both(allowed, mask.allowed(q_idx, k_idx))
        if key_valid is not None:
            allowed = both(allowed, ops.expand_dims(key_valid, 1))
        if prepared.valid is not None:
            allowed = both(allowed, ops.expand_dims(prepared.valid, -1))
        return allowed

    def _check_scores(self, scores, query, key) -> None:
        """ComponentError naming the scorer and its distribution unless the scores are floating
        and (B, Tq, Tk) for these queries and keys (see :func:`attnkit.plans.check_scores`)."""
        plans.check_scores(self.resolved.scorer, scores, query, key, "dense", layer=self.name)

    def _regularizer(self, weights, valid):
        """lambda * sum_b ||(A A^T - I) * V||_F^2 / B, V excluding pairs with a padded row."""
        gram = ops.matmul(weights, ops.swapaxes(weights, -1, -2))
        diff = gram - ops.eye(ops.shape(gram)[-1], dtype=gram.dtype)
        if valid is not None:
            pair = ops.logical_and(ops.expand_dims(valid, -1), ops.expand_dims(valid, 1))
            diff = ops.where(pair, diff, ops.zeros_like(diff))
        batch = ops.cast(ops.shape(weights)[0], diff.dtype)
        return self.attention_regularizer_weight * ops.sum(ops.square(diff)) / batch

    # -- masks, config ------------------------------------------------------------------------
    def compute_mask(self, inputs, mask=None):
        if mask is None or self.resolved.pooling.many_to_one:
            out = None
        else:
            out = mask[0] if isinstance(mask, (list, tuple)) else mask
        return [out, None] if self.return_attention else out

    def get_config(self) -> dict[str, Any]:
        # Refuse here what could not load back: at load time the same fault would surface as
        # Keras' generic "could not be deserialized" TypeError, far from its cause.
        check_keras_registration(AttentionLayer)
        for component in (self.resolved.scorer, *self.resolved.masks, self.resolved.pooling):
            check_registered(self.name, component)
        config = super().get_config()
        config.update(
            spec=self.spec,
            return_attention=self.return_attention,
            dropout=self.dropout,
            seed=self.seed,
            attention_activation=activation_config(self.name, self.attention_activation),
            attention_regularizer_weight=self.attention_regularizer_weight,
            plan=self.plan,
        )
        if self.resolved.plugins:
            config["plugins"] = dict(self.resolved.plugins)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AttentionLayer:
        # Check first: Keras' from_config turns every exception into a bare TypeError, and
        # a missing plugin must reach the user as itself, with the install hint.
        check_keras_registration(AttentionLayer)
        resolve_spec(config.get("spec"), config.get("plugins") or {})
        check_saved_activation(config.get("name"), config.get("attention_activation"))
        return super().from_config(config)
