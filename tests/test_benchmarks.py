"""A smoke run of the benchmark scripts on tiny shapes (the benchmarks themselves are not CI's),
and the peers they time checked against the formula they stand in for."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from attnkit import AttentionLayer
from benchmarks import compare, peers, train_memory


@pytest.mark.slow
def test_compare_script_runs_and_prints_ratios(capsys):
    """Every worker runs on the backend under test (a GPU image may have no TensorFlow)."""
    backend = keras.backend.backend()
    argv = ["--tiny", "--only", "dot causal sdpa", "MHA dot causal", "--backend", backend]
    argv += ["--modes", "train"]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert first.startswith("machine: ") and "cores" in first, first
    assert second.startswith((f"{backend} on cpu", f"{backend} on gpu")), out
    assert second.endswith("memory: not measured (--tiny)"), second  # no baseline processes
    rows = [line for line in out.splitlines() if line.startswith(("dot causal", "MHA dot causal"))]
    # dot causal against dot_product_attention, and multi-head against MultiHeadAttention
    assert len(rows) == 2, out
    for row in rows:
        assert re.search(r"\d+\.\d ms\s+\d+\.\d ms\s+\d+\.\d\d", row), row


def _reference(x, causal):
    scores = np.einsum("btd,bsd->bts", x, x)
    if causal:
        scores = np.where(np.tril(np.ones(scores.shape[1:], bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return np.einsum("bts,bsd->btd", weights / weights.sum(-1, keepdims=True), x)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dot_product_attention_peer_computes_attnkits_dot(causal):
    """The ``sdpa`` peer is the formula of attnkit's ``dot`` (scale 1), so its row compares
    like with like: both equal softmax(x x^T) x, causal or not."""
    x = np.random.default_rng(0).standard_normal((2, 12, 8)).astype("float32") * 0.5
    expected = _reference(x.astype("float64"), causal)
    peer = peers.build("keras:sdpa-causal" if causal else "keras:sdpa")
    ours = AttentionLayer("dot+causal" if causal else "dot")
    for layer in (peer, ours):
        out = keras.ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_missing_peer_is_reported_not_raised_deep():
    if keras.backend.backend() == "tensorflow":
        pytest.importorskip("keras_self_attention", reason="keras-self-attention not installed")
        assert peers.build("ksa:additive15").attention_width == 15
    else:
        with pytest.raises(peers.PeerMissing, match="tensorflow backend only"):
            peers.build("ksa:additive15")


# torch.compile of Keras' torch training step warns so for a model of plain Keras layers too.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_train_memory_script_runs_compiled_steps(capsys):
    """``benchmarks/train_memory.py`` on any backend, the step compiled as a whole."""
    train_memory.main(
        ["chunked", "40", "2", "additive+causal", "--jit", "--steps", "2", "--dropout", "0.1"]
    )
    out = capsys.readouterr().out
    assert f"backend={keras.backend.backend()} jit=True dropout=0.1" in out
    assert re.search(r"peak RSS \d+\.\d\d GiB; first step \d+\.\d s, then \d+ ms per step", out)
    train_memory.main(["chunked", "40", "2", "additive", "--jit", "--predict"])
    assert "jit=True predict: peak RSS" in capsys.readouterr().out
