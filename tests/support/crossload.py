"""Load saved ``.keras`` models under another Keras backend, in a fresh interpreter: the one
loader that tests/test_backends.py and the S5 test in tests/test_loading_safety.py share."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LOADER = r"""
import json, sys
import numpy as np, keras
import attnkit  # noqa: F401  (registers AttentionLayer for deserialisation)
job = json.loads(sys.argv[1])
x = np.load(job["x"])
out = {}
for name in job["models"]:
    model = keras.saving.load_model(job["folder"] + "/" + name + ".keras", safe_mode=True)
    out[name] = keras.ops.convert_to_numpy(model(x, training=False)).tolist()
print(json.dumps({"backend": keras.backend.backend(), "outputs": out}))
"""


def require_backend(target: str) -> None:
    """Skip, naming the extra to install, when ``target``'s framework is not installed."""
    if importlib.util.find_spec(target) is None:
        pytest.skip(f"backend {target} not installed (pip install -e '.[{target}]')")


def load_elsewhere(target: str, folder: Path, x: np.ndarray, models) -> dict[str, np.ndarray]:
    """Outputs on ``x`` of ``folder/<name>.keras`` for each name in ``models``, loaded (safe
    mode) and called under the ``target`` backend; asserts the loader ran under it."""
    np.save(folder / "x.npy", x)
    job = {"folder": str(folder), "x": str(folder / "x.npy"), "models": list(models)}
    env = dict(os.environ, KERAS_BACKEND=target, TF_CPP_MIN_LOG_LEVEL="3")
    result = run_script(LOADER, job, env)
    assert result["backend"] == target
    return {name: np.asarray(out, dtype="float32") for name, out in result["outputs"].items()}


def run_script(script: str, job: dict, env: dict) -> dict:
    """Run a loader script in a fresh interpreter with ``job`` as its JSON argument; its last
    stdout line is the JSON result."""
    done = subprocess.run(  # noqa: S603 - our interpreter and loader
        [sys.executable, "-c", script, json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
