"""The command line and the demo the README starts with."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys

import keras
import pytest

import attnkit
from attnkit import cli, demo
from attnkit.conformance import CHECKS

BUILTINS = {
    "dot",
    "general",
    "additive",
    "bahdanau",
    "gaussian",
    "dense",
    "full",
    "local",
    "causal",
    "seq",
    "last",
    "weighted",
    "gate",
}


def test_list_json_shows_every_builtin_with_origin(capsys):
    assert cli.main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in listing["components"]}
    assert BUILTINS <= set(rows)
    assert rows["local"]["kind"] == "mask" and rows["local"]["shorthand"] == "width"
    assert rows["additive"]["parameters"][0] == {
        "name": "units",
        "default": "32",
        "doc": "hidden size of the tanh layer",
    }
    assert all(rows[name]["distribution"] == "attnkit" for name in BUILTINS)


def test_list_text(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "scorer   additive" in out and "mask     local" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert attnkit.__version__ in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_every_spec(capsys):
    demo.main(epochs=1, samples=128)
    out = capsys.readouterr().out
    for spec in demo.SPECS:
        assert f"canonical {attnkit.resolve(spec).canonical!r}" in out
    assert "test accuracy" in out


CLOSING = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def _closing(out: str) -> tuple[int, int, int]:
    last = out.strip().splitlines()[-1]
    match = CLOSING.match(last)
    assert match, f"no closing line: {last!r}"
    return tuple(int(g) for g in match.groups())


def test_check_one_component_prints_progress_and_counts(capsys):
    assert cli.main(["check", "local", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "PASS  local3" in out and "check_mask_reach" in out
    passed, failed, skipped = _closing(out)
    from attnkit.conformance._engine import applies
    from attnkit.masks import Local

    asked = sum(applies(c, m, "cpu") for c in CHECKS for m in Local.examples())
    assert failed == 0 and passed > 20 and passed + skipped == asked


def test_check_gpu_without_a_gpu_skips_with_the_reason(capsys):
    assert cli.main(["check", "causal", "--device", "gpu"]) == 0
    out = capsys.readouterr().out
    passed, failed, skipped = _closing(out)
    from attnkit.conformance._engine import applies
    from attnkit.masks import Causal

    asked = sum(applies(c, m, "gpu") for c in CHECKS for m in Causal.examples())
    assert (passed, failed) == (0, 0) and skipped == asked
    assert f"no GPU visible to the {keras.backend.backend()} backend" in out


def test_check_json_and_single_check(capsys):
    argv = [
        "check",
        "dot",
        "local",
        "--device",
        "cpu",
        "--check",
        "check_mask_reach",
        "--check",
        "check_score_finite",
        "--json",
    ]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    statuses = {(r["component"], r["check"]): r["status"] for r in report["results"]}
    # Scorer checks are asked of scorers only, mask checks of masks only.
    assert statuses == {
        ("dot", "check_score_finite"): "passed",
        ("dot(scale=learned)", "check_score_finite"): "passed",
        ("local3", "check_mask_reach"): "passed",
        ("local4", "check_mask_reach"): "passed",
    }


def test_check_usage_errors(capsys):
    assert cli.main(["check"]) == 2
    assert cli.main(["check", "addtive"]) == 2
    assert "did you mean 'additive'" in capsys.readouterr().err
    assert cli.main(["check", "dot", "--check", "check_nothing"]) == 2


BROKEN_PLUGIN = '''
import attrs, attnkit
from keras import ops

@attrs.frozen
class Flat(attnkit.Scorer):
    """Returns (B, Tq) instead of (B, Tq, Tk)."""
    name = "flat_scores"
    def score(self, params, query, key):
        return ops.sum(query, axis=-1)

@attnkit.hookimpl
def attnkit_add_components():
    return [Flat]
'''


@pytest.mark.slow
def test_check_exits_non_zero_on_a_failing_plugin(tmp_path):
    """End to end through an entry point: a plugin with a broken scorer fails `attnkit check`."""
    (tmp_path / "flat_scores_plugin.py").write_text(BROKEN_PLUGIN)
    info = tmp_path / "attnkit_flat-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: attnkit-flat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[attnkit]\nflat = flat_scores_plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnkit.cli",
            "check",
            "flat_scores",
            "--device",
            "cpu",
            "--check",
            "check_score_shape_self",
            "--check",
            "check_score_shape_cross",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  flat_scores" in done.stdout
    assert _closing(done.stdout) == (0, 2, 0)


@pytest.mark.slow
def test_check_all_passes_on_every_installed_component():
    """`attnkit check --all`: every built-in and every installed plugin passes on CPU."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "attnkit.cli", "check", "--all"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    passed, failed, skipped = _closing(done.stdout)
    assert failed == 0 and passed > 300
    for name in BUILTINS:
        assert re.search(rf"^PASS  {name}", done.stdout, re.M), name
    for dist, name in (("attnkit-cosine", "cosine"), ("attnkit-dilated", "dilated")):
        installed = any(d.metadata["Name"] == dist for d in metadata.distributions())
        assert bool(re.search(rf"^PASS  {name}", done.stdout, re.M)) == installed, name
