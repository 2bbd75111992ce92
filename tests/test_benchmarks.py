"""A smoke run of the benchmark script on tiny shapes (the benchmarks themselves are not CI's)."""

from __future__ import annotations

import re

import keras
import pytest

from benchmarks import compare


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="benchmarks/compare.py times tf.function"
)
def test_compare_script_runs_and_prints_ratios(capsys):
    assert compare.main(["--tiny", "--only", "dot causal", "--modes", "fwd"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("dot causal"))
    assert re.search(r"\d+\.\d ms\s+\d+\.\d ms\s+\d+\.\d\d", row), row
