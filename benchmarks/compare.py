"""Side-by-side speed and memory of attnkit and its peers; prints a table with ratios.

    python -m benchmarks.compare                  # the issue's table: batch 32, 64 features
    python -m benchmarks.compare --tiny           # a smoke run on tiny shapes (used in CI)
    python -m benchmarks.compare --lengths 1024 4096 --only causal

Every measurement runs in its own subprocess: median time per batch over ``--repeats`` calls
(``fwd``: the model called in a tf.function; ``train``: ``train_on_batch`` as Keras compiles it
by default, op by op on a CPU; ``xla``: ``train_on_batch`` with ``jit_compile=True``, Keras'
default on a GPU; pick with ``--modes``), and peak memory as the
subprocess's max RSS minus that of a baseline process that imports the framework and builds a
model with no attention layer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from attnkit.bench import run_worker

#: (row label, attnkit layer, peer layer or None); ratios are attnkit / peer.
PAIRS = [
    ("dot", "attnkit:dot", "keras:dot"),
    ("dot causal", "attnkit:dot+causal", "keras:dot-causal"),
    ("additive", "attnkit:additive", "ksa:additive"),
    ("additive local15", "attnkit:additive+local15", "ksa:additive15"),
    ("additive causal15", "attnkit:additive+causal15", "ksa:additive15-causal"),
    ("general (multiplicative)", "attnkit:general", "ksa:multiplicative"),
    ("bahdanau+last", "attnkit:bahdanau+last(units=128)", "attention:bahdanau"),
    ("general+last", "attnkit:general+last(units=128)", "attention:luong"),
    ("Keras AdditiveAttention", None, "keras:additive"),
]

WORKER = r"""
import json, os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras, tensorflow as tf
job = json.loads(sys.argv[1])
batch, steps, features, mode = job["batch"], job["steps"], job["features"], job["mode"]
sys.path.insert(0, job["root"])
from benchmarks.peers import build
inputs = keras.Input((steps, features))
if job["layer"] == "baseline":
    out = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(inputs))
else:
    out = build(job["layer"])(inputs)
    if len(out.shape) == 3:
        out = keras.layers.GlobalAveragePooling1D()(out)
    out = keras.layers.Dense(1)(out)
model = keras.Model(inputs, out)
x = np.random.RandomState(0).randn(batch, steps, features).astype("float32")
y = np.zeros((batch, 1), "float32")
if mode in ("train", "xla"):
    model.compile(keras.optimizers.SGD(1e-3), "mse", jit_compile=True if mode == "xla" else "auto")
    step = lambda: model.train_on_batch(x, y)
else:
    forward = tf.function(lambda t: model(t, training=False))
    step = lambda: forward(x).numpy()
from attnkit.bench import median_time
seconds = median_time(step, job["warmup"], job["repeats"])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "rss": rss}))
"""


def measure(layer, steps, mode, args) -> dict | None:
    job = dict(
        layer=layer,
        steps=steps,
        mode=mode,
        batch=args.batch,
        features=args.features,
        warmup=args.warmup,
        repeats=args.repeats,
        root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return run_worker([sys.executable, "-c", WORKER, json.dumps(job)], args.timeout)


def matmul_peak(args) -> float:
    """GFLOP/s of a large float32 matmul on this machine (the roofline for dot attention)."""
    code = (
        "import os, time; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import tensorflow as tf\n"
        "a = tf.random.normal((4096, 4096)); f = tf.function(lambda: tf.matmul(a, a))\n"
        "f(); t = time.perf_counter(); [f().numpy() for _ in range(5)]\n"
        "print(5 * 2 * 4096**3 / (time.perf_counter() - t) / 1e9)"
    )
    if args.tiny:
        return float("nan")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # noqa: S603
    return float(done.stdout.strip().splitlines()[-1])


def _fmt_time(result):
    return result["error"] if "error" in result else f"{result['seconds'] * 1e3:8.1f} ms"


def _fmt_mem(result, baseline):
    if "error" in result:
        return "-"
    return f"{max(0, result['rss'] - baseline) / 2**30:5.2f} GiB"


def _ratio(a, b):
    if a is None or b is None or "error" in a or "error" in b:
        return "-"
    ratio = a["seconds"] / b["seconds"]
    # Three decimals and the speed-up below 0.1, where two would read 0.01 for 50x and 99x.
    return f"{ratio:.3f} ({1 / ratio:.0f}x)" if ratio < 0.1 else f"{ratio:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--modes", nargs="+", default=["fwd", "train"], choices=["fwd", "train", "xla"]
    )
    parser.add_argument("--only", default="", help="rows whose label contains this")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--tiny", action="store_true", help="smoke run: T=32, batch 2, 1 repeat")
    args = parser.parse_args(argv)
    if args.tiny:
        args.lengths, args.batch, args.features, args.repeats, args.warmup = [32], 2, 8, 1, 1
    peak = matmul_peak(args)
    print(
        f"batch {args.batch}, {args.features} features, float32; matmul peak {peak:.0f} GFLOP/s",
        flush=True,
    )
    header = (
        f"{'layer':<26} {'T':>6} {'mode':<5} {'attnkit':>11} {'peer':>11} {'ratio':>12} "
        f"{'mem attnkit':>11} {'mem peer':>9}  note"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for steps in args.lengths:
        baselines = {mode: measure("baseline", steps, mode, args) for mode in args.modes}
        for label, ours, peer in PAIRS:
            if args.only not in label:
                continue
            for mode in args.modes:
                base = baselines[mode].get("rss", 0)
                mine = measure(ours, steps, mode, args) if ours else None
                theirs = None if args.no_peers or peer is None else measure(peer, steps, mode, args)
                note = ""
                if (
                    label == "dot"
                    and mode == "fwd"
                    and mine
                    and "error" not in mine
                    and peak == peak
                ):
                    flops = 4 * args.batch * steps * steps * args.features
                    note = f"{flops / mine['seconds'] / 1e9 / peak:.0%} of matmul peak"
                print(
                    f"{label:<26} {steps:>6} {mode:<5} "
                    f"{_fmt_time(mine) if mine else '-':>11} "
                    f"{_fmt_time(theirs) if theirs else '-':>11} {_ratio(mine, theirs):>12} "
                    f"{_fmt_mem(mine, base) if mine else '-':>11} "
                    f"{_fmt_mem(theirs, base) if theirs else '-':>9}  {note}",
                    flush=True,
                )
                rows.append(
                    {
                        "label": label,
                        "steps": steps,
                        "mode": mode,
                        "attnkit": mine,
                        "peer": theirs,
                        "baseline_rss": base,
                    }
                )
    failed = [r for r in rows if r["attnkit"] and "error" in r["attnkit"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
