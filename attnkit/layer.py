"""``AttentionLayer``: a Keras layer composed from a spec's scorer, masks and pooling.

A call unpacks its inputs, lets the pooling prepare the queries, asks :mod:`attnkit.plans`
which plan runs it and runs that plan, then pools what the plan computed.
"""

from __future__ import annotations

from typing import Any

import attrs
import keras
from keras import ops

from attnkit import building, capture, plans
from attnkit.arguments import check_arguments
from attnkit.debug import check_stage
from attnkit.heads import HeadRun, Heads, head_runs, stack_heads, unfold
from attnkit.heads import output as heads_output
from attnkit.hosts import Recorder, Weights
from attnkit.inputs import Sides, static, unpack, zero_padding
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
        num_heads, key_dim, value_dim, output_shape, use_bias, num_key_value_heads:
            multi-head and grouped-query attention, as ``keras.layers.MultiHeadAttention``
            and ``GroupQueryAttention`` mean them (:mod:`attnkit.heads`): the inputs are
            projected into ``num_heads`` heads of ``key_dim`` (keys and values into
            ``num_key_value_heads``), the spec runs per head with its own weights, and the
            heads are projected back to ``output_shape`` (default: the query's features).
            Without ``num_heads`` the layer is single-head and has no projections.
        **kwargs: the usual Layer arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: one tensor x (B, T, D) for self-attention (q = k = v = x), or
            ``[query, value]`` or ``[query, value, key]`` (Keras' order; key defaults to value).
        mask: Keras padding masks, (B, T) each; propagated from ``Embedding(mask_zero=True)``.
        training: enables dropout.

    Output:
        ``seq``: (B, Tq, Dv), carrying the query mask; many-to-one: (B, Dv) or (B, units), no
        mask; ``[output, weights]`` with ``return_attention=True``. With heads the features
        are ``output_shape`` and the weights (B, H, Tq, Tk), or (B, H, Tk) many-to-one.
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
        num_heads: int | None = None,
        key_dim: int | None = None,
        value_dim: int | None = None,
        output_shape: Any = None,
        use_bias: bool = True,
        num_key_value_heads: int | None = None,
        **kwargs: Any,
    ) -> None:
        plugins = kwargs.pop("plugins", None)
        check_arguments(
            kwargs,
            dropout=dropout,
            regularizer_weight=attention_regularizer_weight,
            plan=plan,
            plans=plans.PLANS,
        )
        super().__init__(**kwargs)
        self.resolved: Resolved = resolve_spec(spec, plugins or {})
        self.spec = self.resolved.canonical
        self.heads = Heads.from_arguments(
            num_heads, key_dim, value_dim, output_shape, use_bias, num_key_value_heads
        )
        if self.heads is not None:
            self.heads.check_spec(self.resolved, self.owner)
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
        self._built: building.Built | None = None

    # -- build --------------------------------------------------------------------------------
    def build(self, input_shape):
        host = lambda prefix, heads: Weights(self, prefix, heads)  # noqa: E731
        built = building.build(self, input_shape, host)
        self._scorer_params, self._pooling_params = built.scorer, built.pooling
        self._built = built

    def weight_shapes(self, input_shape) -> list[dict[str, Any]]:
        """The weights :meth:`build` would create for ``input_shape`` (name, shape, dtype),
        found without allocating any: what ``attnkit explain`` shows."""
        found: list[dict[str, Any]] = []
        building.build(
            self, input_shape, lambda prefix, heads: Recorder(prefix, self, found, heads)
        )
        return found

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
        whose ``weights`` are the raw (B, Tq', Tk) attention ((B, H, Tq', Tk) with heads) and
        ``allowed`` the boolean of keys each query could see (None when everything was
        visible, or when a plan other than dense ran).
        """
        sides = self._sides(inputs, mask)
        runs = self._runs(sides)
        done = [self._attend_run(run, sides.single, bool(training)) for run in runs]
        if self.heads is None:
            return done[0]
        return self._combine(done, runs[0].folded, sides.query_mask)

    def choice(self, inputs, mask=None, training=False) -> plans.Choice:
        """The execution plan this layer runs for ``inputs``, and why (what
        :func:`attnkit.plans.choose` says for the call; per head with heads). The layer must
        be built."""
        sides = self._sides(inputs, mask)
        work, _, _ = self._work(self._runs(sides)[0], bool(training))
        return plans.choose(self._request(work, sides.single, bool(training)))

    @property
    def owner(self) -> str:
        """Names the layer and its spec in messages."""
        return f"layer '{self.name}' ('{self.spec}')"

    def _sides(self, inputs, mask) -> Sides:
        """The call's inputs, unpacked, padding zeroed, checked in debug mode."""
        query, value, key, query_mask, key_valid = unpack(self.name, inputs, mask)
        # Zero padded steps before any arithmetic ("double where"): whatever they hold (1e30,
        # inf, NaN) then reaches neither the output nor any gradient, even though in
        # self-attention the same tensor also feeds the queries.
        query = zero_padding(query, query_mask)
        key = zero_padding(key, key_valid)
        value = zero_padding(value, key_valid)
        query = check_stage(query, self.owner, "the query input (padding excluded)")
        single = not isinstance(inputs, (list, tuple))
        if single:
            key = value = query
        else:
            key = check_stage(key, self.owner, "the key input (padding excluded)")
            value = check_stage(value, self.owner, "the value input (padding excluded)")
        return Sides(query, value, key, query_mask, key_valid, single)

    def _runs(self, sides: Sides) -> list[HeadRun]:
        """The spec's runs over a call's inputs: one without heads, else :func:`head_runs`."""
        if self.heads is None:
            single = (sides.query, sides.value, sides.key, sides.query_mask, sides.key_valid)
            return [HeadRun(*single, None, None)]
        return head_runs(self.heads, self._built, sides)

    def _attend_run(self, run: HeadRun, single: bool, training: bool) -> Attended:
        """The spec over one run's inputs: prepare, choose, run the plan, pool."""
        work, prepared, pooling_params = self._work(run, training)
        outcome = plans.run(plans.choose(self._request(work, single, training)), work)
        if self.attention_regularizer_weight > 0:  # per head, summed
            weight = self.attention_regularizer_weight * run.folded
            self.add_loss(attention_penalty(outcome.softmax, outcome.query_valid, weight))
        prepared = attrs.evolve(prepared, query=work.query, key=work.key, valid=outcome.query_valid)
        pooling = self.resolved.pooling
        output, reported = pooling.pool(
            pooling_params, outcome.context, outcome.weights, prepared, work.value
        )
        output = check_stage(output, self.owner, "the output", pooling)
        reported = None if reported is None else ops.cast(reported, self.compute_dtype)
        return Attended(
            ops.cast(output, self.compute_dtype), reported, outcome.weights, outcome.allowed
        )

    def _combine(self, done: list[Attended], folded: int, query_mask) -> Attended:
        """The heads' results as one: outputs projected back (padded query steps zero, as
        without heads), weights (B, H, ...)."""
        heads_axis = lambda values: stack_heads(values, folded)  # noqa: E731
        per_head = heads_axis([d.output for d in done])
        pooling = self.resolved.pooling
        output = heads_output(self.heads, self._built.projections, per_head, self.owner, pooling)
        if query_mask is not None and pooling.aligned:
            output = zero_padding(output, query_mask)
        allowed = done[0].allowed
        if allowed is not None and folded > 1 and allowed.shape[0] not in (1, None):
            allowed = unfold(allowed, folded)[:, 0]
        return Attended(
            output,
            heads_axis([d.reported for d in done]),
            heads_axis([d.weights for d in done]),
            allowed,
        )

    def _work(self, run: HeadRun, training: bool):
        """(the plans' :class:`Work`, the pooling's Prepared, the pooling's weights)."""
        dtype = score_dtype(self.compute_dtype)
        scorer_params = self._scorer_params if run.scorer_params is None else run.scorer_params
        pooling_params = self._pooling_params if run.pooling_params is None else run.pooling_params
        # Under a pure float16 policy the variables are float16 too; components see `dtype`.
        pooling_params = {k: ops.cast(v, dtype) for k, v in pooling_params.items()}
        scorer_params = {k: ops.cast(v, dtype) for k, v in scorer_params.items()}
        resolved = self.resolved
        prepared = resolved.pooling.prepare(pooling_params, run.query, run.key, run.query_mask)
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
            value=ops.cast(run.value, dtype),
            positions=prepared.positions,
            query_valid=prepared.valid,
            key_valid=run.key_valid,
            activation=self.attention_activation,
            dropout=dropout,
            training=training,
            owner=self.owner,
            heads=run.folded,
        )
        return work, prepared, pooling_params

    def _request(self, work: plans.Work, single: bool, training: bool) -> plans.Request:
        # A length is known only when it is a Python int: JAX traces symbolic shapes with
        # jax.export dimension expressions, which refuse inconclusive comparisons.
        tq, tk = static(work.query.shape[1]), static(work.key.shape[1])
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
        if self.heads is not None:
            config.update(self.heads.config())
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
