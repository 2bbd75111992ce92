"""Debug mode (attnkit.debug): off by default; on, the first NaN or inf a layer sees or makes
raises, naming the layer, the stage and the component with its distribution."""

from __future__ import annotations

import attrs
import keras
import numpy as np
import pytest
from keras import ops

import attnkit
from attnkit import debug
from attnkit.errors import NonFiniteError
from attnkit.masks import Causal
from attnkit.poolings import Seq
from attnkit.scorers import Dot


@pytest.fixture(autouse=True)
def _process_setting_restored(monkeypatch):
    monkeypatch.delenv("ATTNKIT_DEBUG", raising=False)
    yield
    debug._GLOBAL.clear()


@attrs.frozen
class NaNAtZero(attnkit.Scorer):
    """s_ij = q_i . k_j, except NaN for key 0 (a broken third-party scorer)."""

    name = "nan_at_zero"

    def score(self, params, query, key):
        scores = ops.matmul(query, ops.swapaxes(key, -1, -2))
        first = ops.arange(ops.shape(key)[1]) == 0
        return ops.where(first, ops.full_like(scores, float("nan")), scores)


def _data(poison=None):
    x = np.random.RandomState(0).normal(size=(2, 5, 4)).astype("float32")
    if poison is not None:
        x[poison] = np.nan
    return x


def test_off_by_default_nan_passes_through():
    assert not debug.enabled()
    out = attnkit.AttentionLayer("dot", name="quiet")(_data(poison=(0, 1, 2)))
    assert np.isnan(ops.convert_to_numpy(out)[0]).any()


def test_nan_in_a_visible_input_names_the_layer_and_the_input():
    layer = attnkit.AttentionLayer("dot", name="att_in")
    with debug.numerics(), pytest.raises(NonFiniteError, match=r"layer 'att_in'.*input"):
        layer(_data(poison=(0, 1, 2)))
    assert isinstance(NonFiniteError("x"), FloatingPointError)


def test_nan_in_padding_is_not_reported():
    """Padding may hold anything: attnkit never reads it (README, Guarantees)."""
    x = _data(poison=(1, 4, 0))
    mask = np.ones((2, 5), bool)
    mask[1, 4] = False
    with debug.numerics():
        out = attnkit.AttentionLayer("additive+causal")(x, mask=mask)
    assert np.isfinite(ops.convert_to_numpy(out)).all()


def test_a_scorer_making_nan_is_named_with_its_origin():
    resolved = attnkit.Resolved(NaNAtZero(), (), Seq(), canonical="nan_at_zero")
    layer = attnkit.AttentionLayer(resolved, name="att_sc")
    with debug.numerics(), pytest.raises(NonFiniteError) as caught:
        layer(_data())
    message = str(caught.value)
    assert "layer 'att_sc'" in message and "scores" in message
    assert "from scorer 'nan_at_zero'" in message and "not registered" in message


def test_builtin_components_are_named_with_their_distribution():
    layer = attnkit.AttentionLayer(attnkit.Resolved(Dot(), (Causal(),), Seq(), "dot+causal"))
    layer.build((None, 5, 4))
    with debug.numerics():
        out = layer(_data())  # finite: nothing raised, output unchanged
    np.testing.assert_array_equal(
        ops.convert_to_numpy(out),
        ops.convert_to_numpy(attnkit.AttentionLayer("dot+causal")(_data())),
    )


@pytest.mark.parametrize("plan", ["dense", "banded", "chunked"])
def test_every_plan_checks(plan):
    resolved = attnkit.Resolved(NaNAtZero(), (Causal(3),), Seq(), canonical="nan_at_zero+causal3")
    layer = attnkit.AttentionLayer(resolved, name=f"att_{plan}", plan=plan)
    x = np.random.RandomState(1).normal(size=(2, 12, 4)).astype("float32")
    with debug.numerics(), pytest.raises(NonFiniteError, match=rf"layer 'att_{plan}'"):
        layer(x)


def test_compiled_calls_check_too():
    """Inside a traced function the backend's runtime error carries the same message."""
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, attnkit.AttentionLayer("dot", name="att_jit")(inputs))
    debug.enable()  # before tracing: the mode is read when a function is traced
    with pytest.raises(Exception, match=r"layer 'att_jit'.*input"):
        model.predict(_data(poison=(0, 0, 0)), verbose=0)


def test_switches_environment_enable_disable_and_block(monkeypatch):
    monkeypatch.setenv("ATTNKIT_DEBUG", "1")
    assert debug.enabled()
    with debug.numerics(False):
        assert not debug.enabled()
    debug.disable()
    assert not debug.enabled()  # disable() outranks the environment
    debug.enable()
    assert debug.enabled()
    with debug.numerics(False):
        assert not debug.enabled()
    assert debug.enabled()
