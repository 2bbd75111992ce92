"""The command line and the demo the README starts with."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import attnkit
from attnkit import cli, demo, plans
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
    """Progress and counts; the whole suite on one component is test_conformance's engine test."""
    chosen = ["check_mask_reach", "check_no_future_leak", "check_window_respected"]
    argv = ["check", "causal", "--device", "cpu"] + [a for c in chosen for a in ("--check", c)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "PASS  causal3" in out and "check_mask_reach" in out
    passed, failed, skipped = _closing(out)
    from attnkit.conformance._engine import applies
    from attnkit.masks import Causal

    checks = [c for c in CHECKS if c.__name__ in chosen]
    asked = sum(applies(c, m, "cpu") for c in checks for m in Causal.examples())
    assert failed == 0 and passed == 5 and passed + skipped == asked


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
def test_check_all_runs_on_every_installed_component():
    """`attnkit check --all` reaches every built-in and every installed plugin, and passes (one
    cheap check each here: tests/test_builtins_conform.py runs every check on the built-ins,
    and each plugin's own tests on its components)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    argv = ["check", "--all", "--device", "cpu", "--check", "check_token_round_trip"]
    done = subprocess.run(
        [sys.executable, "-m", "attnkit.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    passed, failed, skipped = _closing(done.stdout)
    assert failed == 0 and passed >= len(BUILTINS)
    for name in BUILTINS:
        assert re.search(rf"^PASS  {name}", done.stdout, re.M), name
    for dist, name in (("attnkit-cosine", "cosine"), ("attnkit-dilated", "dilated")):
        installed = any(d.metadata["Name"] == dist for d in metadata.distributions())
        assert bool(re.search(rf"^PASS  {name}", done.stdout, re.M)) == installed, name


# -- list ----------------------------------------------------------------------------------------


def test_list_text_fits_the_terminal_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "64")
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 64
    # The whole first paragraph of the docstring, wrapped, not its first line cut short.
    text = " ".join(line.strip() for line in lines)
    assert "so there are as many keys as query features" in text


# -- explain -------------------------------------------------------------------------------------

EXPLAIN_KEYS = {
    "spec",
    "canonical",
    "length",
    "features",
    "heads",
    "components",
    "input_shape",
    "weights",
    "mask",
    "backend",
    "plans",
    "kernel_backends",
}


def _explain(capsys, *argv) -> dict:
    assert cli.main(["explain", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_explain_canonical_components_and_weights(capsys):
    report = _explain(capsys, "seq + local3 + additive(units=8)", "--features", "5")
    assert set(report) == EXPLAIN_KEYS
    assert report["canonical"] == "additive(units=8)+local3"
    assert [(c["kind"], c["token"]) for c in report["components"]] == [
        ("scorer", "additive(units=8)"),
        ("mask", "local3"),
        ("pooling", "seq"),
    ]
    additive = report["components"][0]
    assert additive["distribution"] == "attnkit"
    assert [(p["name"], p["value"], p["is_default"]) for p in additive["parameters"]] == [
        ("units", 8, False),
        ("use_additive_bias", True, True),
        ("use_attention_bias", True, True),
    ]
    assert report["input_shape"] == [None, 8, 5]
    assert {w["name"]: w["shape"] for w in report["weights"]} == {
        "scorer_w_q": [5, 8],
        "scorer_w_k": [5, 8],
        "scorer_b_h": [8],
        "scorer_w_a": [8, 1],
        "scorer_b_a": [1],
    }
    assert {w["dtype"] for w in report["weights"]} == {"float32"}


def test_explain_text(capsys):
    assert cli.main(["explain", "additive(units=8)+local3", "--features", "5"]) == 0
    out = capsys.readouterr().out
    assert "canonical   additive(units=8)+local3" in out
    assert "units=8 (default 32), use_additive_bias=true" in out
    assert re.search(r"scorer_w_q\s+\(5, 8\)\s+float32", out)
    assert "5 weights, 97 parameters" in out
    assert re.search(r"T=1024\s+banded\s+masks reach 1 back, 1 ahead", out)


def _numpy_mask(masks: str, steps: int) -> np.ndarray:
    i, j = np.indices((steps, steps))
    allowed = np.ones((steps, steps), bool)
    for mask in masks.split("+"):
        if mask == "local3":  # i - 1 <= j <= i + 1
            allowed &= np.abs(j - i) <= 1
        elif mask == "causal":
            allowed &= j <= i
        elif mask == "causal2":  # the last two keys
            allowed &= (j <= i) & (j > i - 2)
    return allowed


@pytest.mark.parametrize("masks", ["local3", "causal", "causal2", "causal+local3"])
def test_explain_grid_matches_numpy(capsys, masks):
    report = _explain(capsys, f"dot+{masks}", "--length", "6")
    expected = ["".join("#" if a else "." for a in row) for row in _numpy_mask(masks, 6)]
    assert report["mask"]["rows"] == expected
    assert report["mask"]["query_positions"] == list(range(6))
    assert cli.main(["explain", f"dot+{masks}", "--length", "6"]) == 0
    out = capsys.readouterr().out
    for i, row in enumerate(expected):
        assert f"i={i:<4}  {row}" in out


def test_explain_many_to_one_shows_its_one_query_and_the_reach(capsys):
    report = _explain(capsys, "dot+causal2+last", "--length", "6")
    assert report["mask"]["query_positions"] == [5]
    assert report["mask"]["rows"] == ["....##"]
    # Past GRID_MAX steps a many-to-one row shows the last keys, where its query stands.
    late = _explain(capsys, "dot+causal2+last", "--length", "20")["mask"]
    assert (late["query_positions"], late["key_positions"]) == ([19], list(range(8, 20)))
    assert late["rows"] == ["..........##"]
    assert report["mask"]["reach"] == {"back": 1, "ahead": 0}
    assert _explain(capsys, "dot", "--length", "6")["mask"]["reach"] == {
        "back": None,
        "ahead": None,
    }


@pytest.mark.parametrize(
    ("spec", "length", "plan", "why"),
    [
        ("general", 8, "dense", "every pair fits at once"),
        ("general", 16384, "chunked", "query blocks"),
        ("additive", 1024, "chunked", "1024 x 1024 x 32"),
        ("dot+local3", 1024, "banded", "each query scores its 3 keys"),
        ("dot+local3", 4, "dense", "at most twice the window"),
        ("dot+causal+last", 16384, "dense", "pooling 'last' asks with one query"),
    ],
)
def test_explain_plan_and_why(capsys, spec, length, plan, why):
    plans = _explain(capsys, spec, "--length", str(length))["plans"]
    assert [p["length"] for p in plans] == [length] + [t for t in (128, 1024, 16384) if t != length]
    assert plans[0]["plan"] == plan and why in plans[0]["reason"]


def test_explain_kernel_plan_where_the_backend_has_one(capsys):
    """A scaled dot product under a causal mask runs the fused kernel on torch and on JAX with
    a GPU; elsewhere the text says where it would."""
    report = _explain(capsys, "dot+causal", "--length", "1024")
    assert report["kernel_backends"] == ["jax", "torch"]
    first = report["plans"][0]
    if plans.kernel_by_default():
        assert first["plan"] == "kernel" and "dot_product_attention" in first["reason"]
    else:
        assert first["plan"] == "dense"
        assert cli.main(["explain", "dot+causal"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "on torch, and on jax with a GPU, the fused kernel plan runs instead" in out
    assert _explain(capsys, "dot+causal2")["kernel_backends"] == []


@pytest.mark.parametrize(
    "spec", ["dot", "dot+causal", "additive+causal", "dot+local3", "general+last"]
)
def test_explain_plan_is_the_one_the_layer_runs(monkeypatch, spec):
    """The plan explain names is what plans.choose returns when the layer itself calls it."""
    from attnkit import explain, plans

    chosen = []
    original = plans.choose

    def spy(request):
        choice = original(request)
        chosen.append(choice.plan)
        return choice

    monkeypatch.setattr(plans, "choose", spy)
    resolved = attnkit.resolve(spec)
    for length in (8, 1024):
        chosen.clear()
        attnkit.AttentionLayer(spec)(keras.Input((length, 16)))
        # Keras may trace the call more than once; every trace must agree.
        assert set(chosen) == {explain.plan_for(resolved, length, 16)["plan"]}, (spec, length)


def test_explain_bad_spec_exits_2_with_the_caret_and_did_you_mean(capsys):
    assert cli.main(["explain", "addtive+local3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown component 'addtive'" in captured.err
    assert "  addtive+local3\n  ^^^^^^^\n" in captured.err
    assert "did you mean 'additive'?" in captured.err
    assert cli.main(["explain", "dot+", "--json"]) == 2
    assert "^" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli.main(["explain", "dot", "--length", "0"])
    assert done.value.code == 2


# -- progress ------------------------------------------------------------------------------------


def test_check_progress_goes_to_stderr_on_a_terminal_only(capsys, monkeypatch):
    argv = ["check", "local", "causal", "--device", "cpu", "--check", "check_mask_reach"]
    assert cli.main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert "[1/2]" not in captured.err
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    assert cli.main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # nothing but the report on stdout
    assert "[1/2] check local ..." in captured.err and "[2/2] check causal ..." in captured.err


# -- bench ---------------------------------------------------------------------------------------


def test_bench_reports_a_failed_worker_in_the_table(capsys, monkeypatch):
    """No subprocess: the workers' answers are faked, an out-of-memory peer among them."""
    from attnkit import bench

    def fake(command, timeout, env=None):
        job = json.loads(command[-1])
        if job["layer"] == "baseline":
            return {"rss": 100 * 2**20}
        if job["layer"] == "keras":
            return {"error": "out of memory (killed)"}
        return {"seconds": 0.002, "rss": 150 * 2**20}

    monkeypatch.setattr(bench, "run_worker", fake)
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    assert cli.main(["bench", "dot+causal", "--length", "16", "32", "--batch", "2"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"16\s+fwd\s+(dense|kernel)\s+2\.00 ms\s+failed\s+-\s+50\.0 MiB", captured.out)
    assert "T=32 fwd keras: out of memory (killed)" in captured.out
    assert "vs keras.layers.Attention(use_causal_mask=True)" in captured.out
    assert "[1/5] baseline" in captured.err and "[5/5] dot+causal T=32 fwd keras" in captured.err
    # attnkit itself failing is a failure of the command, still reported in the table.
    monkeypatch.setattr(bench, "run_worker", lambda command, timeout, env=None: {"error": "boom"})
    assert cli.main(["bench", "dot", "--length", "16", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["rows"][0]["attnkit"] == {"error": "boom"} and report["rows"][0]["ratio"] is None
    # A spec that cannot resolve or build fails before any worker starts.
    assert cli.main(["bench", "dot+gate", "--length", "16"]) == 2
    assert "scorer 'dot' needs queries and keys of the same size" in capsys.readouterr().err
    assert cli.main(["bench", "dott"]) == 2
    assert "did you mean 'dot'?" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "out of memory (killed)"),
        ("raise MemoryError", "out of memory"),
        ("import sys; sys.exit('no such thing')", "no such thing"),
        ("import time; time.sleep(30)", "timed out after 1 s"),
        ("print('{\"seconds\": 1.5}')", None),
    ],
)
def test_run_worker_turns_failures_into_reasons(code, reason):
    from attnkit.bench import run_worker

    if reason and "SIGKILL" in code and sys.platform == "win32":
        pytest.skip("no SIGKILL on Windows")
    result = run_worker([sys.executable, "-c", code], timeout=1 if "sleep" in code else 60)
    assert result == ({"seconds": 1.5} if reason is None else {"error": reason})


@pytest.mark.slow
def test_bench_console_entry_tiny_json():
    """The one real run: `python -m attnkit.cli bench` spawns its workers; stdout is JSON only."""
    from attnkit.bench import render
    from attnkit.explain import plan_for

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = ["--length", "16", "--batch", "2", "--features", "8", "--repeats", "2", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "attnkit.cli", "bench", "dot+causal", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["backend"] == keras.backend.backend()
    assert report["peer"] == "keras.layers.Attention(use_causal_mask=True)"
    assert report["baseline_rss"] > 0
    (row,) = report["rows"]
    plan = plan_for(attnkit.resolve("dot+causal"), 16, 8)["plan"]  # kernel on JAX and torch
    assert (row["length"], row["mode"], row["plan"]) == (16, "fwd", plan)
    assert row["attnkit"]["seconds"] > 0 and row["keras"]["seconds"] > 0
    assert row["ratio"] == pytest.approx(row["attnkit"]["seconds"] / row["keras"]["seconds"])
    assert row["attnkit"]["memory"] >= 0
    assert re.search(rf"^\s+16\s+fwd\s+{plan}\s+\d", render(report), re.M)
