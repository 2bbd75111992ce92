"""Meta-tests of the conformance suite (scikit-learn's rule: for every check, a deliberately broken
component that it must fail), and of its engine and pytest front end.

The built-in components are run through every check in tests/test_builtins_conform.py; here
one cheap built-in exercises the engine API end to end.

Tests named ``FINDING`` (a table entry's id, or a test name) record weaknesses of the checks
themselves: a plain failure where a check breaks its own contract or cannot fail at all, a strict
xfail where a defect slips past the suite (it turns red once a check catches it: drop the mark).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from support import broken as B
from support import planted as P

from attnkit import backend
from attnkit.conformance import CHECKS, CheckResult, check_component, parametrize_with_checks
from attnkit.conformance._engine import SLOW, run_case
from attnkit.conformance._harness import layer_for, make_data, numpy, subject_for
from attnkit.conformance._pytest import BoundCheck
from attnkit.errors import UnknownComponentError
from attnkit.masks import Causal, Local
from attnkit.registry import registry
from attnkit.resolution import Resolved
from attnkit.scorers import Dot

CHECK = {check.__name__: check for check in CHECKS}
#: Checks that only run with a GPU; covered below by a CPU skip and a simulated-GPU failure.
GPU_ONLY = {"check_device_agreement"}
#: Broken components exercised by dedicated tests instead of the table.
OUTSIDE_TABLE = {"broken_gpu_path", "broken_cosine", "broken_variable_in_score"}


def case(check, broken, fragment, control, *, finding=None, marks=()):
    """One row: ``check`` must fail on ``broken`` with ``fragment`` in its message, and pass on
    ``control`` (a well-behaved component of the same kind; None where no cheap one exists)."""
    name = f"{check}-{broken}" + (f"-FINDING_{finding.split(':')[0]}" if finding else "")
    return pytest.param(check, broken, fragment, control, finding, id=name, marks=marks)


G_SCORER, G_MASK, G_CAUSAL = B.GoodScorer(), B.GoodMask(), B.GoodCausal()
G_POOL, G_MEAN = B.GoodPooling(), B.GoodMeanPool()

TABLE = [
    # -- API ------------------------------------------------------------------------------------
    case("check_frozen_and_hashable", B.BrokenMutable(), "assigning field 'scale'", G_SCORER),
    case("check_name_is_valid", B.BrokenName(), "name 'bad2' is not a valid spec name", G_SCORER),
    case("check_token_round_trip", B.BrokenToken(), "parses back to", G_SCORER),
    case("check_token_round_trip", B.BrokenName(), "does not parse back", G_SCORER),
    case(
        "check_unknown_parameter_rejected",
        B.BrokenLenient(),
        "accepted the unknown parameter",
        G_SCORER,
    ),
    # -- scorers --------------------------------------------------------------------------------
    case("check_score_shape_self", B.BrokenShape(), "scores of shape (3, 5, 1)", G_SCORER),
    case("check_score_shape_cross", B.BrokenShape(), "scores of shape (3, 3, 1)", G_SCORER),
    case("check_score_shape_cross", B.BrokenTransposed(), "scores of shape (3, 6, 3)", G_SCORER),
    case("check_score_finite", B.BrokenNaN(), "non-finite scores", G_SCORER),
    case(
        "check_scorer_weights_only_in_build",
        B.BrokenLazyWeight(),
        "created weight 'late' outside build()",
        G_SCORER,
    ),
    case("check_batch_independence", B.BrokenBatchMean(), "scored alone differs", G_SCORER),
    case("check_deterministic", B.BrokenRandom(), "two calls on the same inputs differ", G_SCORER),
    case("check_pair_matches_score", B.BrokenPair(), "pair(project(q, k)) differs", G_SCORER),
    # -- masks ----------------------------------------------------------------------------------
    case("check_mask_boolean_broadcast", B.BrokenIntMask(), "dtype int32, expected bool", G_MASK),
    case("check_mask_pure", B.BrokenLayoutMask(), "laid out as one flat list", G_MASK),
    case("check_mask_reach", B.BrokenLeakyCausal(), "(back=None, ahead=0)", G_CAUSAL),
    case("check_mask_reach", B.BrokenBand(), "(back=1, ahead=1) but allows", G_MASK),
    case(
        "check_symbolic_length",
        B.BrokenStaticLength(),
        "symbolic length",
        G_MASK,
        marks=pytest.mark.skipif(
            keras.backend.backend() == "torch",
            reason="Keras' torch backend traces a None length with a concrete size",
        ),
    ),
    case("check_plans_agree", B.BrokenBand(), "the banded plan", G_MASK),
    # -- in a layer -----------------------------------------------------------------------------
    case(
        "check_weights_only_in_build",
        B.BrokenLateWeight(),
        "You cannot add new elements of state",  # Keras' lock on a built layer trips first
        G_POOL,
    ),
    case("check_weights_sum_to_one", B.BrokenThreshold(), "weight rows sum to 1 +-", G_SCORER),
    case("check_weights_sum_to_one", B.BrokenNaN(), "sum to 1 +- nan", G_SCORER),
    case(
        "check_masked_keys_zero",
        B.BrokenSmoothedReport(),
        "returned by return_attention",
        G_POOL,
    ),
    case(
        "check_fully_masked_row_zero",
        B.BrokenRenormalize(),
        "non-finite output or weights with a fully masked sample",
        G_POOL,
    ),
    case("check_fully_masked_row_zero", B.BrokenNaN(), "non-finite output", G_SCORER),
    case("check_no_future_leak", B.BrokenLeakyCausal(), "changing steps after 0", G_CAUSAL),
    case("check_no_future_leak", B.BrokenGlobalContext(), "changed the output", G_SCORER),
    case("check_no_future_leak", B.BrokenPositions(), "changing steps after 0", G_POOL),
    case("check_window_respected", B.BrokenBand(), "outside its window [-1, 1]", G_MASK),
    case("check_window_respected", B.BrokenGlobalContext(), "outside its window", G_SCORER),
    case("check_window_respected", B.BrokenPeekingPool(), "outside its window", G_MEAN),
    case("check_padding_invariance", B.BrokenMeanPool(), "padding 3 more steps", G_MEAN),
    case("check_padding_invariance", B.BrokenGlobalContext(), "padding 3 more steps", G_SCORER),
    case(
        "check_gradients",
        B.BrokenUnusedWeight(),
        "scorer_bias got no gradient",
        G_SCORER,
        # Keras warns about the missing gradient first; under filterwarnings=error that
        # warning would be the failure. Let the check's own comparison speak.
        marks=pytest.mark.filterwarnings("ignore:Gradients do not exist:UserWarning"),
    ),
    case("check_training_lowers_loss", B.BrokenWherePower(), "to nan", G_SCORER),
    case("check_training_lowers_loss", B.BrokenNaN(), "from nan to nan", G_SCORER),
    case(
        "check_jit_equals_eager",
        B.BrokenPythonFloat(),
        None,  # raises when traced
        G_SCORER,
        marks=pytest.mark.skipif(
            keras.backend.backend() == "torch",
            reason="torch.compile breaks the graph at float(tensor) and runs that part eagerly",
        ),
    ),
    case(
        "check_jit_equals_eager",
        B.BrokenRandom(),
        # JAX refuses unseeded random ops while tracing: the check fails, with JAX's words
        "seeded random ops" if keras.backend.backend() == "jax" else "differs from eager",
        G_SCORER,
    ),
    case("check_mixed_float16", B.BrokenFp16Overflow(), "non-finite outputs under", G_POOL),
    case(
        "check_mixed_bfloat16",
        B.BrokenBf16Cancel(),
        "under mixed_bfloat16, for inputs in [-1.5, 1.5] the output differs from the",
        G_POOL,
    ),
    case(
        "check_config_round_trip",
        B.BrokenUnregistered(),
        "does not resolve through the registry",
        Dot(),
    ),
    case("check_config_round_trip", B.ImpostorDot(), "not to the component checked", Dot()),
    # -- at the sizes, plans and magnitudes users run ---------------------------------------------
    case("check_mask_reach", P.BrokenLateLeak(), "on a grid of 1024 steps", G_MASK),
    case("check_mask_reach", P.BrokenVeryLateLeak(), "on a grid of 65536 steps", G_MASK),
    case("check_mask_pure", P.BrokenSizeDependent(), "answers differently", G_MASK),
    case(
        "check_mask_kernel_form",
        P.BrokenKernelForm(),
        "declares kernel_form() 'causal' but allowed() says False",
        P.GoodKernelCausal(),
    ),
    case("check_no_future_leak", P.BrokenLateFuture(), "changing steps after 38", G_CAUSAL),
    case("check_score_finite", P.BrokenOverflow(), "non-finite scores", G_SCORER),
    case(
        "check_realistic_magnitudes",
        P.BrokenPowerPool(),
        "non-finite outputs under float32, for offset inputs",
        G_POOL,
    ),
    case("check_plans_agree", P.BrokenDotScale(), "the kernel plan", P.GoodDotScale()),
    case("check_plans_agree", P.BrokenKeyCount(), "the chunked plan", G_SCORER),
    case("check_window_matches_pair", P.BrokenWindow(), "in scores", G_SCORER),
    case(
        "check_window_matches_pair",
        P.BrokenWindowGradient(),
        "in the gradient of the key features",
        G_SCORER,
    ),
    case(
        "check_gradients_match_finite_differences",
        P.BrokenGradient(),
        "the gradient of the query",
        G_SCORER,
    ),
    case("check_pooling_batch_independence", P.BrokenBatchMixPool(), "computed alone", G_POOL),
    case("check_heads", P.BrokenOutputSize(), "output_size() said 2", P.GoodOutputSize()),
    case(
        "check_pooling_zeroes_padded_queries",
        P.BrokenBiasedSeq(),
        "padded steps of a partially padded sample",
        G_POOL,
    ),
    # Fails before its subprocess starts; the passing run is test_check_component_on_a_builtin.
    case(
        "check_save_load_fresh_process",
        B.BrokenUnregistered(),
        "does not resolve through the registry",
        None,
    ),
]


# == the meta-test table ========================================================================
@pytest.mark.parametrize("check, broken, fragment, control, finding", TABLE)
def test_check_fails_on_broken_component(check, broken, fragment, control, finding):
    result = run_case(subject_for(broken), CHECK[check], "cpu")
    note = f"\nFINDING: {finding}" if finding else ""
    assert result.status == "failed", (
        f"{check} did not fail on {broken}: {result.status} {result.message!r}{note}"
    )
    if fragment is not None:
        assert fragment in result.message, (
            f"{check} failed on {broken} for another reason: {result.message!r}"
        )
    assert str(broken) in result.message, (
        f"{check}'s failure message does not name '{broken}': {result.message!r}{note}"
    )


@pytest.mark.parametrize(
    "check, broken, fragment, control, finding",
    [p for p in TABLE if p.values[3] is not None],
)
def test_check_passes_on_the_well_behaved_twin(check, broken, fragment, control, finding):
    """The same check passes (not skips) on a correct component of the same kind: the broken
    component fails for its defect, not for being unregistered or built by hand."""
    result = run_case(subject_for(control), CHECK[check], "cpu")
    assert result.status == "passed", f"{check} on {control}: {result.status} {result.message}"


def test_every_check_has_a_broken_component():
    covered = {p.values[0] for p in TABLE}
    assert covered == set(CHECK) - GPU_ONLY, set(CHECK) - GPU_ONLY ^ covered
    assert GPU_ONLY <= set(CHECK)


def test_every_broken_component_is_used():
    in_table = {str(p.values[1]) for p in TABLE}
    unused = {
        name
        for name in {**B.BROKEN, **P.PLANTED}
        if not any(label == name or label.startswith(f"{name}(") for label in in_table)
    }
    assert unused == OUTSIDE_TABLE


def test_broken_components_are_not_registered():
    for name in B.BROKEN:
        if name == "dot":  # the impostor: the name resolves, to the built-in class
            assert registry().get(name).cls is Dot
            continue
        with pytest.raises(UnknownComponentError):
            registry().get(name)


# == check_device_agreement: GPU only ===========================================================
def test_device_agreement_skips_in_the_cpu_case():
    result = run_case(subject_for(B.BrokenGpuPath()), CHECK["check_device_agreement"], "cpu")
    assert result.status == "skipped"
    assert "runs in the gpu case" in result.message


def test_device_agreement_gpu_case_skips_without_a_gpu(monkeypatch):
    reason = backend.gpu_available()
    if reason is None:  # a GPU is visible here: take it away to exercise the skip
        reason = "no GPU visible (hidden by the test)"
        monkeypatch.setattr(backend, "gpu_available", lambda: reason)
    assert "GPU" in reason
    result = run_case(subject_for(B.BrokenGpuPath()), CHECK["check_device_agreement"], "gpu")
    assert (result.status, result.message) == ("skipped", reason)


@pytest.fixture
def simulated_gpu(monkeypatch):
    """Pretend a GPU is there: the harness sees one, and ``keras.device`` only records the name.

    Both devices are then the CPU, so this shows the check's comparison, not real hardware; the
    broken scorer reads the recorded name to take its faulty "GPU path".
    """
    monkeypatch.setattr(backend, "gpu_available", lambda: None)
    monkeypatch.setattr(keras, "device", B.simulated_device)


def test_device_agreement_fails_on_a_simulated_gpu(simulated_gpu):
    broken = B.BrokenGpuPath()
    result = run_case(subject_for(broken), CHECK["check_device_agreement"], "gpu")
    assert result.status == "failed", result.message
    assert result.message.startswith(f"{broken}: GPU error")


def test_device_agreement_passes_on_a_simulated_gpu(simulated_gpu):
    result = run_case(subject_for(B.GoodScorer()), CHECK["check_device_agreement"], "gpu")
    assert result.status == "passed", result.message


# == FINDINGS: defects no check catches =========================================================
def _padded_training_step(scorer) -> list[np.ndarray]:
    """One SGD step of Dense -> attention -> mean -> Dense on the padded batch of make_data()."""
    x, mask = make_data()
    inputs = keras.Input((None, x.shape[-1]))
    valid = keras.Input((None,), dtype="bool")
    hidden = keras.layers.Dense(x.shape[-1])(inputs)
    from attnkit.layer import AttentionLayer

    attended = AttentionLayer(Resolved.of(scorer))(hidden, mask=valid)
    model = keras.Model(
        [inputs, valid], keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(attended))
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    model.train_on_batch([x, mask], np.ones((x.shape[0], 1), "float32"))
    return [numpy(w) for w in model.weights]


def test_broken_cosine_really_gets_nan_weights_from_padded_training():
    assert not all(np.isfinite(w).all() for w in _padded_training_step(B.BrokenCosine()))
    assert all(np.isfinite(w).all() for w in _padded_training_step(B.GoodScorer()))


def test_nan_gradient_through_padding_is_caught():
    """check_gradients and check_training_lowers_loss train on a padded batch, so a scorer whose
    gradient is NaN at padded keys (cosine without epsilon) fails them."""
    subject = subject_for(B.BrokenCosine())
    statuses = {
        name: run_case(subject, CHECK[name], "cpu").status
        for name in ("check_gradients", "check_training_lowers_loss")
    }
    assert "failed" in statuses.values(), statuses


def test_broken_variable_in_score_really_makes_untracked_weights(monkeypatch):
    made = []
    original = keras.Variable

    def counting(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(keras, "Variable", counting)
    layer = layer_for(Resolved.of(B.BrokenVariableInScore()))
    x, mask = make_data()
    layer(x, mask=mask)
    layer(x, mask=mask)
    assert len(made) == 2  # a new variable per call...
    assert not any(w is v for w in layer.weights for v in made)  # ...that the layer never owns


def test_p9_variable_created_in_score_is_caught_by_both_weight_checks():
    """A ``keras.Variable`` made inside score() (never trained, never saved) fails both
    weights-only-in-build checks, each saying what is wrong."""
    subject = subject_for(B.BrokenVariableInScore())
    for name in ("check_scorer_weights_only_in_build", "check_weights_only_in_build"):
        result = run_case(subject, CHECK[name], "cpu")
        assert result.status == "failed", (name, result.message)
        assert "keras.Variable" in result.message and "add_weight" in result.message, name


def test_good_mean_pool_output_is_made_of_window_respecting_steps():
    """The many-to-one mean pooling is the mean of ``seq`` outputs, each of which sees only its
    local3 window (check_window_respected passes for ``seq``)."""
    x, mask = make_data()
    seq = layer_for(Resolved.of(Dot(), (Local(3),)))
    pooled = layer_for(Resolved.of(Dot(), (Local(3),), B.GoodMeanPool()))
    per_step = numpy(seq(x, mask=mask))
    expected = (per_step * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(numpy(pooled(x, mask=mask)), expected, rtol=1e-6, atol=1e-6)


def test_window_check_follows_the_queries_a_many_to_one_pooling_asks_with():
    """A pooling that averages every step asks with every step: nothing is outside all of its
    queries' windows, and the check passes; one that asks with the last step alone may not read
    step 0 (the table's broken_peeking_pool)."""
    result = run_case(subject_for(B.GoodMeanPool()), CHECK["check_window_respected"], "cpu")
    assert result.status == "passed", result.message


def test_the_readme_lists_every_check():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [name for name in CHECK if f"| `{name}` |" not in readme]
    assert not missing, f"the README's table of checks lacks {missing}"


# == the engine API =============================================================================
@pytest.mark.slow  # check_save_load_fresh_process starts a Python process
def test_check_component_on_a_builtin():
    seen: list[CheckResult] = []
    results = check_component(Local(3), devices=("cpu",), on_result=seen.append)
    assert seen == results
    from attnkit.conformance._engine import applies

    assert [r.check for r in results] == [
        n for n, c in CHECK.items() if applies(c, Local(3), "cpu")
    ]
    assert all(isinstance(r, CheckResult) and r.ok for r in results), [
        (r.check, r.status, r.message) for r in results if not r.ok
    ]
    assert {r.status for r in results} <= {"passed", "skipped"}
    by_check = {r.check: r for r in results}
    for name in ("check_mask_reach", "check_window_respected", "check_save_load_fresh_process"):
        assert by_check[name].status == "passed", name
    assert by_check["check_mask_reach"].id == "local3-check_mask_reach-cpu"


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_expected_failure_needs_a_reason(reason):
    with pytest.raises(ValueError, match="needs a written reason"):
        check_component(
            Local(3), devices=("cpu",), expected_failed_checks={"check_mask_reach": reason}
        )
    with pytest.raises(ValueError, match="needs a written reason"):
        check_component(
            Local(3), devices=("cpu",), expected_failed_checks=lambda c: {"check_mask_pure": reason}
        )


def test_expected_failure_of_an_unknown_check():
    with pytest.raises(ValueError, match="unknown check 'check_mask_reech'"):
        check_component(
            Local(3), devices=("cpu",), expected_failed_checks={"check_mask_reech": "x"}
        )


def test_expected_failures_are_strict():
    broken = B.BrokenBand()
    results = check_component(
        broken,
        devices=("cpu",),
        expected_failed_checks={
            "check_mask_reach": "declares (1, 1) but allows |i - j| <= 2",
            "check_name_is_valid": "wrongly expected: the name is fine",
        },
    )
    by_check = {r.check: r for r in results}
    xfail, xpass = by_check["check_mask_reach"], by_check["check_name_is_valid"]
    assert (xfail.status, xfail.ok) == ("xfail", True)
    assert xfail.message.startswith("expected: declares (1, 1)")
    assert str(broken) in xfail.message
    assert (xpass.status, xpass.ok) == ("xpass", False)
    assert "wrongly expected" in xpass.message
    # A failure nobody expected still fails.
    unexpected = by_check["check_window_respected"]
    assert (unexpected.status, unexpected.ok) == ("failed", False)


def test_run_case_never_raises_for_a_crashing_component():
    result = run_case(subject_for(B.BrokenShape()), CHECK["check_weights_sum_to_one"], "cpu")
    assert result.status == "failed"
    assert result.message.startswith("broken_shape: ")  # the component, then the error type


# == the pytest front end =======================================================================
def _params(mark):
    assert mark.name == "parametrize"
    argnames, params = mark.args
    assert argnames == "component, check"
    return params


def _count(component, devices) -> int:
    from attnkit.conformance._engine import applies

    return sum(applies(c, component, d) for c in CHECKS for d in devices)


def _marks(param) -> dict:
    return {m.name: m for m in (getattr(m, "mark", m) for m in param.marks)}


def test_parametrize_ids_and_marks():
    params = _params(parametrize_with_checks([Local(3)], devices=("cpu", "gpu")).mark)
    assert len(params) == _count(Local(3), ("cpu", "gpu"))
    assert not any("check_score" in p.id for p in params)  # scorer checks are not asked of masks
    assert "local3-check_device_agreement-cpu" not in [p.id for p in params]
    ids = [p.id for p in params]
    assert "local3-check_mask_reach-cpu" in ids
    assert "local3-check_mask_reach-gpu" in ids
    assert len(set(ids)) == len(ids)
    for p in params:
        component, bound = p.values
        marks = _marks(p)
        assert component == Local(3)
        assert isinstance(bound, BoundCheck)
        assert p.id == f"local3-{bound.__name__}-{bound.device}"
        assert ("gpu" in marks) == (bound.device == "gpu")
        assert ("slow" in marks) == (bound.__name__ in SLOW)
        assert "xfail" not in marks


def test_decorator_makes_one_param_per_check_example_and_device(monkeypatch):
    @parametrize_with_checks([Local, "causal"], devices=("cpu", "gpu"))
    def test_plugin(component, check):
        check(component)

    examples = Local.examples() + Causal.examples()
    assert len(examples) == 4
    (mark,) = test_plugin.pytestmark
    assert len(_params(mark)) == sum(_count(c, ("cpu", "gpu")) for c in examples)

    monkeypatch.setenv("ATTNKIT_CHECK_DEVICE", "cpu")  # the default devices come from here

    @parametrize_with_checks([Local])
    def test_cpu_only(component, check):
        check(component)

    (mark,) = test_cpu_only.pytestmark
    params = _params(mark)
    assert len(params) == sum(_count(c, ("cpu",)) for c in Local.examples())
    assert {p.values[1].device for p in params} == {"cpu"}


def _bound(components, name, device="cpu", **options) -> tuple[object, BoundCheck, dict]:
    params = _params(parametrize_with_checks(components, devices=(device,), **options).mark)
    (param,) = [p for p in params if p.values[1].__name__ == name]
    return param.values[0], param.values[1], _marks(param)


def test_bound_check_passes():
    component, bound, _ = _bound([Local(3)], "check_mask_reach")
    assert bound(component) is None
    assert repr(bound) == "check_mask_reach[cpu]"


def test_bound_check_failure_is_a_pytest_failure():
    component, bound, _ = _bound([B.BrokenBand()], "check_mask_reach")
    with pytest.raises(pytest.fail.Exception, match=r"broken_band: declares reach"):
        bound(component)


def test_bound_check_skip_is_a_pytest_skip():
    """A check that does not apply to this instance skips through pytest, with its reason."""
    component, bound, _ = _bound([Causal()], "check_window_respected")
    with pytest.raises(pytest.skip.Exception, match="declares no bounded window"):
        bound(component)


def test_gpu_case_is_marked_and_skips_without_a_gpu(monkeypatch):
    reason = backend.gpu_available()
    if reason is None:  # a GPU is visible here: take it away to exercise the skip
        reason = "no GPU visible (hidden by the test)"
        monkeypatch.setattr(backend, "gpu_available", lambda: reason)
    component, bound, marks = _bound([Local(3)], "check_mask_reach", device="gpu")
    assert "gpu" in marks
    with pytest.raises(pytest.skip.Exception) as skipped:
        bound(component)
    assert str(skipped.value.msg) == reason
    assert "GPU" in reason


def test_expected_failure_becomes_a_strict_xfail():
    reason = "declares (1, 1) but allows |i - j| <= 2"
    expected = {"check_mask_reach": reason}
    for table in (expected, lambda component: expected):
        component, bound, marks = _bound(
            [B.BrokenBand()], "check_mask_reach", expected_failed_checks=table
        )
        xfail = marks["xfail"]
        assert xfail.kwargs == {"reason": reason, "strict": True}
        with pytest.raises(pytest.fail.Exception):  # so the strict xfail is satisfied
            bound(component)
        _, _, others = _bound([B.BrokenBand()], "check_mask_pure", expected_failed_checks=table)
        assert "xfail" not in others


def test_parametrize_rejects_bad_expected_failures():
    with pytest.raises(ValueError, match="unknown check"):
        parametrize_with_checks([Local(3)], expected_failed_checks={"check_nothing": "why"})
    with pytest.raises(ValueError, match="needs a written reason"):
        parametrize_with_checks([Local(3)], expected_failed_checks={"check_mask_reach": ""})
