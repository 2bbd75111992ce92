"""Side-by-side speed and memory of attnkit and its peers; prints a table with ratios.

    python -m benchmarks.compare                  # the issue's table: batch 32, 64 features
    python -m benchmarks.compare --tiny           # a smoke run on tiny shapes (used in CI)
    python -m benchmarks.compare --lengths 1024 4096 --only causal
    python -m benchmarks.compare --backend jax --only dot --dtype bfloat16   # e.g. on a GPU

Every measurement runs in its own subprocess (``benchmarks/worker.py``, which says exactly
what each mode times): median time per batch over ``--repeats`` calls (``fwd``: inference,
compiled; ``train``: one SGD step as the backend runs it by default, op by op on TensorFlow's
CPU; ``xla``: TensorFlow's step with ``jit_compile=True``; pick with ``--modes``), and peak
memory above a baseline process that builds a model with no attention layer: the process's
peak RSS on a CPU, the device's peak allocation on a GPU.

Peers: Keras' own layers, keras-self-attention, the ``attention`` package,
and ``keras.ops.dot_product_attention`` (``sdpa``: the backend picks its kernel; on a GPU also
``flash``: its flash path demanded, which wants ``--dtype bfloat16`` or ``float16``). A peer
whose package is missing (keras-self-attention needs TensorFlow) shows ``n/a`` and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import attrs

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
    ("dot sdpa", "attnkit:dot", "keras:sdpa"),
    ("dot causal sdpa", "attnkit:dot+causal", "keras:sdpa-causal"),
    ("dot flash", "attnkit:dot", "keras:flash"),
    ("dot causal flash", "attnkit:dot+causal", "keras:flash-causal"),
]

#: Multi-head rows, against keras.layers.MultiHeadAttention: (label, attnkit, peer, lengths), at
#: HEAD_SHAPE; ``{h}`` is the heads (8 of 64). ``local15`` is MHA's sliding_window=8.
HEAD_ROWS = [
    ("MHA dot", "attnkit:dot(scale=sqrt)/{h}", "keras:mha-{h}", (1024,)),
    ("MHA dot causal", "attnkit:dot(scale=sqrt)+causal/{h}", "keras:mha-{h}-causal", (4096,)),
    (
        "MHA dot local15",
        "attnkit:dot(scale=sqrt)+local15/{h}",
        "keras:mha-{h}-sliding8",
        (1024, 4096, 16384),
    ),
    ("MHA additive", "attnkit:additive/{h}", None, (2048,)),
    ("MHA dot kernel", "attnkit:dot(scale=sqrt)@kernel/{h}", "keras:mha-{h}", (1024,)),
    ("MHA dot kernel/flash", "attnkit:dot(scale=sqrt)@kernel/{h}", "keras:mha-{h}-flash", (1024,)),
]
#: batch, features, heads of the multi-head rows (--tiny: 2, 16, 2x8 at T=32).
HEAD_SHAPE = (8, 512, "8x64")
#: MultiHeadAttention holds (B, H, T, T) scores: past this length they alone would need more
#: memory than a benchmark machine has (16 GiB at T=8192), so its rows stop here.
MHA_MAX_STEPS = 4096
#: Backends whose MultiHeadAttention calls the fused dot_product_attention (with no dropout and
#: no scores returned): the backend's kernel, flash where the device and dtype allow. TensorFlow's
#: has no fused path. The ``-flash`` peer demands the flash kernel: a GPU and half precision.
FLASH_BACKENDS = ("jax", "torch")

#: Peers that need a GPU and half precision (flash kernels take float16 and bfloat16 only):
#: elsewhere their rows are left out.
FLASH = {"keras:flash", "keras:flash-causal"}


def measure(layer, steps, mode, args, shape=None) -> dict:
    """One worker process (``benchmarks/worker.py``): time and peak memory, or ``error``;
    ``shape`` is (batch, features), by default the command line's."""
    batch, features = shape or (args.batch, args.features)
    job = dict(
        layer=layer,
        steps=steps,
        mode=mode,
        batch=batch,
        features=features,
        dtype=args.dtype,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    # Imported here: the parent imports keras (through attnkit) only once main() has set the
    # workers' backend, which may be the only one installed (a GPU image without TensorFlow).
    from attnkit.bench import run_worker, worker_env

    command = [sys.executable, "-m", "benchmarks.worker", json.dumps(job)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # imports benchmarks
    return run_worker(command, args.timeout, worker_env(root, KERAS_BACKEND=args.backend))


def matmul_peak(args) -> dict:
    """The backend's device (``cpu`` or ``gpu``) and its float32 matmul GFLOP/s."""
    result = measure("matmul", 0, "", args)
    if "error" in result:
        raise SystemExit(f"the {args.backend} backend does not run here: {result['error']}")
    if args.tiny:
        result["gflops"] = float("nan")
    return result


def machine() -> str:
    """The CPU's model name and core count (and the Python and Keras versions), for the table's
    header: a figure means little without the machine it ran on."""
    import platform

    import keras

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        model = names[0] if names else model
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores, Python {platform.python_version()}, Keras {keras.__version__}"


def _ok(result) -> bool:
    return bool(result) and "error" not in result


def _fmt_time(result) -> str:
    if not result:
        return "-"
    return "n/a" if "error" in result else f"{result['seconds'] * 1e3:8.1f} ms"


def _fmt_mem(result, baseline) -> str:
    if not _ok(result) or baseline is None:
        return "-"
    return f"{max(0, result['memory'] - baseline) / 2**30:5.2f} GiB"


def _ratio(a, b) -> str:
    if not (_ok(a) and _ok(b)):
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
    parser.add_argument(
        "--only", nargs="+", default=[""], help="rows whose label contains one of these"
    )
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--backend",
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        choices=["tensorflow", "jax", "torch"],
        help="the Keras backend of every worker (default: KERAS_BACKEND, else tensorflow)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16"],
        help="the Keras dtype policy of every layer",
    )
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument(
        "--tiny", action="store_true", help="smoke run: T=32, batch 2, 1 repeat, no memory"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.lengths, args.batch, args.features, args.repeats, args.warmup = [32], 2, 8, 1, 1
    if "keras" not in sys.modules:  # run as a script: keras is imported later, with this backend
        os.environ.update(KERAS_BACKEND=args.backend, TF_CPP_MIN_LOG_LEVEL="3")
    if args.backend != "tensorflow" and "xla" in args.modes:
        print(f"mode xla left out: it is TensorFlow's jit_compile=True ({args.backend}: see train)")
        args.modes = [mode for mode in args.modes if mode != "xla"]
    peak = matmul_peak(args)
    gflops, device = peak["gflops"], peak["device"]
    memory = "peak GPU allocation" if device == "gpu" else "peak RSS"
    # A smoke run starts no baseline processes (_baseline), so it has no memory columns.
    memory = (
        "not measured (--tiny)" if args.tiny else f"{memory} above a model with no attention layer"
    )
    print(f"machine: {machine()}")
    print(
        f"{args.backend} on {device}, batch {args.batch}, {args.features} features, "
        f"{args.dtype}; float32 matmul peak {gflops:.0f} GFLOP/s; memory: {memory}",
        flush=True,
    )
    header = (
        f"{'layer':<26} {'T':>6} {'mode':<5} {'attnkit':>11} {'peer':>11} {'ratio':>12} "
        f"{'mem attnkit':>11} {'mem peer':>9}  note"
    )
    print(header)
    print("-" * len(header))
    rows, notes = [], []
    flash = device == "gpu" and "16" in args.dtype  # flash kernels take half precision only
    for steps in args.lengths:
        baselines = {mode: _baseline(steps, mode, args) for mode in args.modes}
        seen = {}  # attnkit's dot faces three peers: measured once, shown in each row
        for label, ours, peer in PAIRS:
            if not _chosen(label, args) or (peer in FLASH and not flash):
                continue
            for mode in args.modes:
                if ours and (ours, mode) not in seen:
                    seen[ours, mode] = measure(ours, steps, mode, args)
                mine = seen.get((ours, mode))
                theirs = None if args.no_peers or peer is None else measure(peer, steps, mode, args)
                note = ""
                if label == "dot" and mode == "fwd" and _ok(mine) and gflops == gflops:
                    flops = 4 * args.batch * steps * steps * args.features
                    note = f"{flops / mine['seconds'] / 1e9 / gflops:.0%} of matmul peak"
                row = _Row(label, steps, mode, mine, theirs, baselines[mode])
                rows.append(_print_row(row, peer, note, notes))
    rows += _heads_table(args, notes, flash)
    if notes:
        print("\nnot measured:", *notes, sep="\n  ")
    failed = [r for r in rows if r.mine and "error" in r.mine]
    return 1 if failed else 0


def _baseline(steps: int, mode: str, args, shape=None) -> int | None:
    """The memory of a model with no attention layer (None in a smoke run, which skips it)."""
    if args.tiny:
        return None
    return measure("baseline", steps, mode, args, shape).get("memory", 0)


def _chosen(label: str, args) -> bool:
    return any(part in label for part in args.only)


@attrs.frozen
class _Row:
    label: str
    steps: int
    mode: str
    mine: dict | None
    theirs: dict | None
    baseline: int | None


def _print_row(row: _Row, peer: str | None, note: str, notes: list) -> _Row:
    for who, result in (("attnkit", row.mine), (peer, row.theirs)):
        if result and "error" in result:
            notes.append(f"{row.label} T={row.steps} {row.mode}, {who}: {result['error']}")
    print(
        f"{row.label:<26} {row.steps:>6} {row.mode:<5} {_fmt_time(row.mine):>11} "
        f"{_fmt_time(row.theirs):>11} {_ratio(row.mine, row.theirs):>12} "
        f"{_fmt_mem(row.mine, row.baseline):>11} {_fmt_mem(row.theirs, row.baseline):>9}  {note}",
        flush=True,
    )
    return row


def _heads_table(args, notes: list, flash: bool) -> list[_Row]:
    """The multi-head rows against keras.layers.MultiHeadAttention, at HEAD_SHAPE."""
    batch, features, heads = (2, 16, "2x8") if args.tiny else HEAD_SHAPE
    chosen = [r for r in HEAD_ROWS if _chosen(r[0], args)]
    if not chosen:
        return []
    print(f"\nmulti-head: batch {batch}, {features} features, {heads} heads (H x key_dim)")
    rows = []
    for label, ours, peer, lengths in chosen:
        if "kernel" in label and args.backend not in FLASH_BACKENDS:
            notes.append(f"{label}: {args.backend}'s MultiHeadAttention has no fused path")
            continue
        if peer and peer.endswith("flash") and not flash:
            notes.append(f"{label}: the flash kernel needs a GPU and --dtype bfloat16 or float16")
            continue
        for steps in [32] if args.tiny else lengths:
            for mode in args.modes:
                shape = (batch, features)
                base = _baseline(steps, mode, args, shape)
                mine = measure(ours.format(h=heads), steps, mode, args, shape)
                theirs = None
                if peer and not args.no_peers and steps <= MHA_MAX_STEPS:
                    theirs = measure(peer.format(h=heads), steps, mode, args, shape)
                elif peer and not args.no_peers:
                    note = (
                        f"{label} T={steps}: MultiHeadAttention not run (its scores "
                        f"alone: {batch * 8 * steps**2 * 4 / 2**30:.0f} GiB)"
                    )
                    notes += [] if note in notes else [note]
                named = peer and peer.format(h=heads)
                rows.append(
                    _print_row(_Row(label, steps, mode, mine, theirs, base), named, "", notes)
                )
    return rows


if __name__ == "__main__":
    sys.exit(main())
