"""``AttentionLayer``: a Keras layer composed from a spec's scorer, masks and pooling.

A call unpacks its inputs, lets the pooling prepare the queries, asks :mod:`attnkit.plans`
which plan runs it and runs that plan, then pools what the plan computed.
"""

from __future__ import annotations

from typing import Any

import attrs
import keras
from keras import ops

from attnkit import capture, plans
from attnkit.debug import check_stage
from attnkit.errors import ComponentError, InputShapeError
from attnkit.inputs import split_shapes, static, unpack, zero_padding
from attnkit.numerics import attention_penalty, score_dtype
from attnkit.resolution import Resolved
from attnkit.saving import (
    activation_config,
    check_keras_registration,
    check_registered,
    check_saved_activation,
    check_spec_loads,
    resolve_spec,
)

__all__ = ["Attended", "AttentionLayer"]


@attrs.define  # not frozen: torch.compile (dynamo) cannot trace object.__setattr__
class Attended:
    """What one pass of the layer computed.

    Attributes:
        output: the layer output, in the compute dtype.
        reported: the weights ``return_attention`` returns, in the compute dtype, or None
            when the plan that ran holds no weights.
        weights: the raw attention (B, Tq', Tk) in the scoring dtype, after dropout (dense
            plan only, else None).
        allowed: boolean (B or 1, Tq', Tk) of visible keys, or None when all were visible
            (dense plan only).
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


class _Shapes:
    """A stand-in for the host layer in ``build``: records each weight's name, shape and dtype
    in ``found`` and returns a symbolic tensor instead of allocating a variable."""

    def __init__(self, prefix: str, layer: keras.layers.Layer, found: list) -> None:
        self._prefix, self._layer, self._found = prefix, layer, found

    def add_weight(self, name: str, shape=(), initializer=None, dtype=None, **kwargs):
        dtype = keras.backend.standardize_dtype(dtype or self._layer.variable_dtype)
        shape = tuple(int(d) for d in shape)
        self._found.append({"name": self._prefix + name, "shape": list(shape), "dtype": dtype})
        return keras.KerasTensor(shape, dtype=dtype)

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
            many-to-one poolings always run ``dense``. :meth:`choice` says which plan a call
            takes, and why.
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
        self._pooling_params, self._scorer_params = self._build_components(
            input_shape, lambda prefix: _Weights(self, prefix)
        )

    def weight_shapes(self, input_shape) -> list[dict[str, Any]]:
        """The weights :meth:`build` would create for ``input_shape`` (name, shape, dtype),
        found without allocating any: what ``attnkit explain`` shows."""
        found: list[dict[str, Any]] = []
        self._build_components(input_shape, lambda prefix: _Shapes(prefix, self, found))
        return found

    def _build_components(self, input_shape, host):
        """(pooling params, scorer params) built with ``host(prefix)`` as the components'
        ``layer``; a shape the spec cannot take raises an AttnkitError naming the layer."""
        query_shape, value_shape, key_shape = split_shapes(input_shape)
        pooling, scorer = self.resolved.pooling, self.resolved.scorer
        if len(query_shape) not in pooling.input_ranks:
            ranks = " or ".join(str(r) for r in pooling.input_ranks)
            raise InputShapeError(
                f"{self._owner}: pooling '{pooling.name}' takes inputs of rank {ranks}; "
                f"received an input of shape {tuple(query_shape)}"
            )
        try:
            query_dim, key_dim = pooling.dims(tuple(query_shape), tuple(key_shape))
            pooling_params = pooling.build(host("pooling_"), query_shape[-1], value_shape[-1])
            return pooling_params, scorer.build(host("scorer_"), query_dim, key_dim)
        except ValueError as error:
            raise ComponentError(f"{self._owner}: {error}") from error

    # -- call ---------------------------------------------------------------------------------
    def call(self, inputs, mask=None, training=None):
        attended = self.attend(inputs, mask=mask, training=training)
        capture.record(self.name, attended.reported)
        if self.return_attention:
            return [attended.output, attended.reported]
        return attended.output

    def attend(self, inputs, mask=None, training=None) -> Attended:
        """Run the layer and return everything it computed (for tests and visualisation).

        Same arguments as ``call``; the layer must be built. Returns an :class:`Attended`
        whose ``weights`` are the raw (B, Tq', Tk) attention and ``allowed`` the boolean of
        keys each query could see (None when everything was visible, or when a plan other
        than dense ran).
        """
        work, prepared, pooling_params = self._work(inputs, mask, bool(training))
        outcome = plans.run(plans.choose(self._request(work, inputs, bool(training))), work)
        if self.attention_regularizer_weight > 0:
            weight = self.attention_regularizer_weight
            self.add_loss(attention_penalty(outcome.softmax, outcome.query_valid, weight))
        prepared = attrs.evolve(prepared, query=work.query, key=work.key, valid=outcome.query_valid)
        pooling = self.resolved.pooling
        output, reported = pooling.pool(
            pooling_params, outcome.context, outcome.weights, prepared, work.value
        )
        output = check_stage(output, self._owner, "the output", pooling)
        reported = None if reported is None else ops.cast(reported, self.compute_dtype)
        return Attended(
            ops.cast(output, self.compute_dtype), reported, outcome.weights, outcome.allowed
        )

    def choice(self, inputs, mask=None, training=False) -> plans.Choice:
        """The execution plan this layer runs for ``inputs``, and why (what
        :func:`attnkit.plans.choose` says for the call). The layer must be built."""
        work, _, _ = self._work(inputs, mask, bool(training))
        return plans.choose(self._request(work, inputs, bool(training)))

    @property
    def _owner(self) -> str:
        return f"layer '{self.name}' ('{self.spec}')"

    def _work(self, inputs, mask, training: bool):
        """(the plans' :class:`Work`, the pooling's Prepared, the pooling's weights)."""
        query, value, key, query_mask, key_valid = unpack(self.name, inputs, mask)
        dtype = score_dtype(self.compute_dtype)
        # Zero padded steps before any arithmetic ("double where"): whatever they hold (1e30,
        # inf, NaN) then reaches neither the output nor any gradient, even though in
        # self-attention the same tensor also feeds the queries.
        query = zero_padding(query, query_mask)
        key = zero_padding(key, key_valid)
        value = zero_padding(value, key_valid)
        query = check_stage(query, self._owner, "the query input (padding excluded)")
        if not isinstance(inputs, (list, tuple)):
            key = value = query
        else:
            key = check_stage(key, self._owner, "the key input (padding excluded)")
            value = check_stage(value, self._owner, "the value input (padding excluded)")
        # Under a pure float16 policy the variables are float16 too; components see `dtype`.
        pooling_params = {k: ops.cast(v, dtype) for k, v in self._pooling_params.items()}
        scorer_params = {k: ops.cast(v, dtype) for k, v in self._scorer_params.items()}
        resolved = self.resolved
        prepared = resolved.pooling.prepare(pooling_params, query, key, query_mask)
        dropout = None
        if training and self.dropout > 0:
            dropout = plans.WeightDropout(self.dropout, self.seed_generator)
        work = plans.Work(
            scorer=resolved.scorer,
            masks=resolved.masks,
            pooling=resolved.pooling,
            params=scorer_params,
            query=ops.cast(prepared.query, dtype),
            key=ops.cast(prepared.key, dtype),
            value=ops.cast(value, dtype),
            positions=prepared.positions,
            query_valid=prepared.valid,
            key_valid=key_valid,
            activation=self.attention_activation,
            dropout=dropout,
            training=training,
            owner=self._owner,
        )
        return work, prepared, pooling_params

    def _request(self, work: plans.Work, inputs, training: bool) -> plans.Request:
        # A length is known only when it is a Python int: JAX traces symbolic shapes with
        # jax.export dimension expressions, which refuse inconclusive comparisons.
        tq, tk = static(work.query.shape[1]), static(work.key.shape[1])
        single = not isinstance(inputs, (list, tuple))
        return plans.Request(
            scorer=work.scorer,
            masks=work.masks,
            pooling=work.pooling,
            query_dim=work.query.shape[-1],
            key_dim=work.key.shape[-1],
            steps_q=tq,
            steps_k=tk,
            same_length=single or (tq is not None and tq == tk),
            requested=self.plan,
            training=training,
            needs_weights=self.return_attention
            or self.attention_regularizer_weight > 0
            or capture.wanted(self.name),
            activation=self.attention_activation is not None,
            dropout=work.dropout is not None,
        )

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
        check_spec_loads(self.name, self.spec)
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
