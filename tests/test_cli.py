"""The command line and the demo the README starts with."""

from __future__ import annotations

import json

import pytest

import attnkit
from attnkit import cli, demo

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
