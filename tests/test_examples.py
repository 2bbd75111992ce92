"""The examples' shortened runs (``main(quick=True)``) make the claims their READMEs make.

Each example is imported from its file (``examples/`` is not a package) and trained on the
current Keras backend with seed 0. The thresholds were chosen from quick runs over several
seeds and the three backends, with a margin below the worst run measured (examples/README.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, output_dir: Path) -> dict:
    """Import ``examples/<name>.py`` by path and return its quick run's figures of merit."""
    spec = importlib.util.spec_from_file_location(
        f"attnkit_example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(quick=True, output_dir=output_dir, seed=0)
    plot = Path(results["plot"])
    assert plot.parent == output_dir and plot.stat().st_size > 1_000, plot
    return results


def test_dense_block(tmp_path):
    results = run("dense_block", tmp_path)
    assert results["peak"] == 1
    assert results["peak_weight"] > 3 / 32  # uniform is 1/32
    assert results["accuracy"] > 0.75


def test_recurrent_block(tmp_path):
    results = run("recurrent_block", tmp_path)
    for name in ("before LSTM, per feature", "before LSTM, shared"):
        assert results[name]["peak"] == 10, (name, results[name])
        assert results[name]["peak_weight"] > 2 / 20, (name, results[name])  # uniform: 1/20
    for name in ("after LSTM, per feature", "after LSTM, shared"):
        # The forward LSTM carries the target from step 10 on; earlier steps know nothing.
        assert results[name]["peak"] >= 10, (name, results[name])


def test_add_numbers(tmp_path):
    results = run("add_numbers", tmp_path)
    assert results["share"] > 0.5  # uniform: 2/20
    assert results["mae"] < 0.7 * results["baseline_mae"]
    frames = sorted(Path(results["frames"]).glob("epoch_*.png"))
    assert len(frames) == 7, frames


def test_find_max(tmp_path):
    results = run("find_max", tmp_path)
    assert results["hit_rate"] > 0.6  # chance: 1/10
    assert results["mae"] < 0.15  # answering 0.5: about 0.25


def test_sequence_labelling(tmp_path):
    results = run("sequence_labelling", tmp_path)
    for spec in ("additive+seq", "additive+local15+seq", "additive+causal+seq"):
        assert results[spec]["accuracy"] > results["majority"] + 0.2, (spec, results)


def test_seq2seq(tmp_path):
    results = run("seq2seq", tmp_path)
    assert results["accuracy"] > 0.8  # chance: 1/10
    assert results["anti_diagonal"] > 0.6  # uniform: about 1/7


def test_transformer_classifier(tmp_path):
    results = run("transformer_classifier", tmp_path)
    assert results["accuracy"] > 0.9  # chance: 1/8
    assert results["reads_next"] > 0.45  # uniform over the 3 keys of local3: 1/3
    assert results["on_marker"] > 0.6  # uniform: about 1/13
    assert (tmp_path / "transformer_encoder_heads.png").stat().st_size > 1_000
