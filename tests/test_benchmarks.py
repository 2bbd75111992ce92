"""A smoke run of the benchmark script on tiny shapes (the benchmarks themselves are not CI's)."""

from __future__ import annotations

import re

import keras
import pytest

from benchmarks import compare, train_memory


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="benchmarks/compare.py times tf.function"
)
def test_compare_script_runs_and_prints_ratios(capsys):
    assert compare.main(["--tiny", "--only", "dot causal", "--modes", "fwd"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("dot causal"))
    assert re.search(r"\d+\.\d ms\s+\d+\.\d ms\s+\d+\.\d\d", row), row


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
