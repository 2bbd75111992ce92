"""``attnkit bench``: time and peak memory of one spec against ``keras.layers.Attention``.

Every measurement runs in its own subprocess (``python -m attnkit.bench --worker JOB``), so one
measurement's compiled functions, caches and allocator state cannot flatter or burden another,
and one that runs out of memory is reported instead of taking the command down:

- time: the median over ``repeats`` calls, after ``warmup`` calls that compile, of
  ``model.predict_on_batch`` (forward) or ``model.train_on_batch`` (a training step, SGD on a
  mean squared error), for a model ``Input -> Dense(D) -> layer -> (GlobalAveragePooling1D)
  -> Dense(1)``: the projection below the layer makes a training step differentiate the layer
  with respect to its inputs, as in a real model (``dot`` has no weights of its own);
- memory: the subprocess's peak resident set size minus that of a baseline subprocess that
  imports keras (and attnkit, as every worker does: it runs as ``-m attnkit.bench``) and
  builds nothing.

The peer is ``keras.layers.Attention`` as self-attention (query = value = x), with
``use_causal_mask=True`` when the spec has a ``causal`` mask. :func:`run_worker` is also what
``benchmarks/compare.py`` runs its workers with.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "bench",
    "median_time",
    "peak_rss",
    "render",
    "run_worker",
    "worker_env",
    "worker_result",
]

#: What a failing worker's stderr says when it ran out of memory, per backend.
_OOM_MARKERS = (
    "MemoryError",
    "ResourceExhausted",
    "RESOURCE_EXHAUSTED",
    "OutOfMemory",
    "OOM when allocating",
    "out of memory",
    "can't allocate memory",
)


def run_worker(command: Sequence[str], timeout: float, env: dict | None = None) -> dict:
    """Run one worker process; its last stdout line is its JSON result.

    Returns that result, or ``{"error": reason}`` when the worker timed out, was killed (the
    out-of-memory killer sends SIGKILL), raised, or printed nothing readable.
    """
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and worker
            list(command), capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if isinstance(result, dict) and (done.returncode == 0 or "error" in result):
        return result
    return {"error": _failure(done.returncode, done.stderr)}


def _failure(returncode: int, stderr: str) -> str:
    if returncode in (-9, 137):
        return "out of memory (killed)"
    if any(marker in stderr for marker in _OOM_MARKERS):
        return "out of memory"
    if returncode < 0:
        return f"killed by signal {-returncode}"
    last = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return (last[-1] if last else f"exit status {returncode}")[:120]


def peak_rss() -> int | None:
    """This process's peak resident set size in bytes (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS bytes, Linux KiB


def _is_causal(resolved) -> bool:
    return any(mask.name == "causal" for mask in resolved.masks)


def peer_name(resolved) -> str:
    """The keras layer the spec is compared with."""
    causal = "(use_causal_mask=True)" if _is_causal(resolved) else ""
    return f"keras.layers.Attention{causal}"


def bench(
    spec: str,
    lengths: Sequence[int] = (1024,),
    *,
    batch: int = 32,
    features: int = 64,
    repeats: int = 5,
    warmup: int = 1,
    train: bool = False,
    timeout: float = 600.0,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Measure ``spec`` and its keras peer at every length; one subprocess per measurement.

    Args:
        spec: the attnkit spec; resolved here first, so a bad one fails before any worker.
        lengths: the sequence lengths T.
        batch, features: B and D of the float32 inputs (B, T, D).
        repeats: timed calls per measurement (the median is reported).
        warmup: untimed calls first (they compile).
        train: also time a training step.
        timeout: seconds each worker may run.
        progress: called as ``progress(done, total, what)`` before each worker starts.

    Returns:
        A JSON-serialisable dict: the settings, ``baseline_rss`` and ``rows``, one per (length,
        mode) with ``attnkit`` and ``keras`` results (``seconds``, ``rss``, ``memory``, or
        ``error``), ``plan`` and the ``ratio`` attnkit / keras of the times (None if either
        failed).

    Raises:
        AttnkitError: the spec does not resolve, or its layer cannot be built on that shape.
    """
    import keras

    from attnkit.explain import input_shape_for, layer_weights, plan_for
    from attnkit.registry import registry

    resolved = registry().resolve(spec)
    for length in lengths:  # a layer that cannot be built fails here, not in every worker
        layer_weights(resolved, length, features)
    modes = ["fwd", "train"] if train else ["fwd"]
    total = 1 + 2 * len(lengths) * len(modes)
    step = 0

    def measure(what: str, **job: Any) -> dict:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total, what)
        job.update(batch=batch, warmup=warmup, repeats=repeats)
        return run_worker(
            [sys.executable, "-m", "attnkit.bench", "--worker", json.dumps(job)],
            timeout,
            worker_env(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )

    baseline = measure("baseline (imports only)", layer="baseline")
    rows = []
    for length in lengths:
        shape = input_shape_for(resolved, length, features)[1:]
        for mode in modes:
            label = f"{resolved.canonical} T={length} {mode}"
            ours = measure(
                f"{label} attnkit", layer="attnkit", spec=resolved.canonical, shape=shape, mode=mode
            )
            if len(shape) == 2:  # (T, D): a sequence, which keras.layers.Attention takes
                causal = _is_causal(resolved)
                theirs = measure(
                    f"{label} keras", layer="keras", causal=causal, shape=shape, mode=mode
                )
            else:
                step += 1
                theirs = {"error": "n/a: keras.layers.Attention takes (B, T, D) inputs"}
            plan = plan_for(resolved, length, features, mode == "train")["plan"]
            rows.append(_row(length, mode, plan, ours, theirs, baseline))
    return {
        "spec": spec,
        "canonical": resolved.canonical,
        "peer": peer_name(resolved),
        "backend": keras.backend.backend(),
        "dtype": "float32",
        "batch": batch,
        "features": features,
        "repeats": repeats,
        "warmup": warmup,
        "baseline_rss": baseline.get("rss"),
        "baseline_error": baseline.get("error"),
        "rows": rows,
    }


def _row(length: int, mode: str, plan: str, ours: dict, theirs: dict, baseline: dict) -> dict:
    """One table row: both results with their memory above the baseline, and the ratio."""
    for result in (ours, theirs):
        if result.get("rss") is not None and baseline.get("rss") is not None:
            result["memory"] = max(0, result["rss"] - baseline["rss"])
    return {
        "length": length,
        "mode": mode,
        "plan": plan,
        "attnkit": ours,
        "keras": theirs,
        "ratio": _ratio(ours, theirs),
    }


def worker_env(root: str, **variables: str) -> dict:
    """The parent's environment for a worker process: ``root`` first on ``PYTHONPATH`` (the
    worker must import the code the parent runs, installed or not), TensorFlow's logs quiet,
    and ``variables`` set (e.g. ``KERAS_BACKEND``)."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(variables)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _ratio(ours: dict, theirs: dict) -> float | None:
    if "seconds" not in ours or "seconds" not in theirs or theirs["seconds"] <= 0:
        return None
    return ours["seconds"] / theirs["seconds"]


# -- text ----------------------------------------------------------------------------------------


def _time(result: dict) -> str:
    if "error" in result:
        return result["error"]
    ms = result["seconds"] * 1e3
    if ms >= 1000:
        return f"{ms / 1e3:.2f} s"
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def _bytes(count: int | None) -> str:
    if count is None:
        return "-"
    if count >= 2**30:
        return f"{count / 2**30:.2f} GiB"
    return f"{count / 2**20:.1f} MiB"


def render(report: dict[str, Any]) -> str:
    """The report of :func:`bench` as a table; failed measurements show their reason."""
    base = report["baseline_rss"]
    lines = [
        f"attnkit '{report['canonical']}' vs {report['peer']}",
        f"{report['backend']} backend, {report['dtype']}, batch {report['batch']}, "
        f"{report['features']} features; median of {report['repeats']} calls after "
        f"{report['warmup']} warm-up",
        "memory: peak RSS above a process that imports keras and attnkit and builds nothing "
        + (f"({_bytes(base)})" if base is not None else f"(unknown: {report['baseline_error']})"),
        "",
    ]
    header = (
        f"{'T':>7}  {'mode':<5}  {'plan':<7}  {'attnkit':>10}  {'keras':>10}  {'ratio':>5}  "
        f"{'mem attnkit':>11}  {'mem keras':>10}"
    )
    lines += [header, "-" * len(header)]
    notes = []
    for row in report["rows"]:
        cells = []
        for who in ("attnkit", "keras"):
            result = row[who]
            if "error" in result:
                notes.append(f"T={row['length']} {row['mode']} {who}: {result['error']}")
                cells.append(("failed" if not result["error"].startswith("n/a") else "n/a", "-"))
            else:
                cells.append((_time(result), _bytes(result.get("memory"))))
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(
            f"{row['length']:>7}  {row['mode']:<5}  {row['plan']:<7}  {cells[0][0]:>10}  "
            f"{cells[1][0]:>10}  {ratio:>5}  {cells[0][1]:>11}  {cells[1][1]:>10}"
        )
    if notes:
        lines += ["", *notes]
    lines += ["", "ratio: attnkit time / keras time (below 1: attnkit is faster)"]
    return "\n".join(lines)


# -- the worker ----------------------------------------------------------------------------------


def median_time(step, warmup: int, repeats: int) -> float:
    """Median wall time of ``step()`` over ``repeats`` calls, after ``warmup`` untimed ones
    (tracing and compilation happen there). ``step`` must wait for its result."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """Build the job's model, time its steps, and report the process's peak memory."""
    if job["layer"] == "baseline":
        import keras  # noqa: F401 - importing it is what the baseline measures

        return {"rss": peak_rss()}
    import keras
    import numpy as np

    shape = tuple(job["shape"])
    inputs = keras.Input(shape)
    hidden = keras.layers.Dense(shape[-1])(inputs)
    if job["layer"] == "attnkit":
        from attnkit.layer import AttentionLayer

        outputs = AttentionLayer(job["spec"])(hidden)
    else:
        outputs = keras.layers.Attention()([hidden, hidden], use_causal_mask=job["causal"])
    if len(outputs.shape) == 3:
        outputs = keras.layers.GlobalAveragePooling1D()(outputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(outputs))
    x = np.random.default_rng(0).standard_normal((job["batch"], *shape)).astype("float32")
    if job["mode"] == "train":
        y = np.zeros((job["batch"], 1), "float32")
        model.compile(keras.optimizers.SGD(1e-3), "mse")

        def step():
            model.train_on_batch(x, y)  # returns NumPy: the step has finished
    else:

        def step():
            model.predict_on_batch(x)

    return {"seconds": median_time(step, job["warmup"], job["repeats"]), "rss": peak_rss()}


def worker_result(measure: Callable[[Any], dict], job: Any) -> int:
    """A worker's end: print ``measure(job)``, or ``{"error": reason}`` when it raised (out of
    memory, or the exception's first line), as the JSON line :func:`run_worker` reads; return
    the exit status."""
    try:
        result = measure(job)
    except MemoryError:
        result = {"error": "out of memory"}
    except Exception as error:  # any failure becomes the table's note, not a traceback
        text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
        oom = any(marker in text for marker in _OOM_MARKERS)
        result = {"error": "out of memory" if oom else text[:120]}
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_result(_measure, json.loads(sys.argv[2])))
    sys.exit("usage: python -m attnkit.bench --worker JOB (the command is `attnkit bench`)")
