"""The ``attnkit`` command line: ``list``, ``explain``, ``check`` and ``bench``.

Every command takes ``--json`` (machine-readable, on stdout only). Usage errors, bad specs
included, print the error's message on stderr and exit with status 2. Long runs (``check``,
``bench``) report progress on stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Callable

import attrs

from attnkit.cli_arguments import Parser, positive, seconds, whole

__all__ = ["main"]


def _width() -> int:
    """Columns to fit text output in (the terminal's, or 100 when not a terminal)."""
    return max(shutil.get_terminal_size((100, 24)).columns, 60)


def _wrap(text: str, width: int, head: str, indent: int) -> list[str]:
    return textwrap.wrap(
        text,
        width,
        initial_indent=head,
        subsequent_indent=" " * indent,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [head.rstrip()]


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def _progress() -> Callable[[int, int, str], None] | None:
    """A callback printing ``[3/12] what ...`` on stderr, or None when stderr is no terminal
    (a log file or a pipe wants the results, not a running count)."""
    if not _stderr_is_tty():
        return None

    def report(done: int, total: int, what: str) -> None:
        print(f"[{done}/{total}] {what} ...", file=sys.stderr, flush=True)

    return report


def _usage_error(command: str, error: Exception) -> int:
    print(f"attnkit {command}: {error}", file=sys.stderr)
    return 2


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line (a formula often runs past line one)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def _component_rows() -> list[dict]:
    from attnkit.registry import registry
    from attnkit.spec import format_value

    rows = []
    for info in registry().components():
        params = []
        for field in attrs.fields(info.cls):
            default = "required" if field.default is attrs.NOTHING else format_value(field.default)
            params.append(
                {"name": field.name, "default": default, "doc": field.metadata.get("doc", "")}
            )
        rows.append(
            {
                "name": info.name,
                "kind": info.kind,
                "shorthand": info.cls.shorthand,
                "parameters": params,
                "summary": _summary(info.cls.__doc__),
                "plugin": info.plugin,
                "distribution": info.distribution,
                "version": info.version,
            }
        )
    return rows


def _cmd_list(args: argparse.Namespace) -> int:
    from attnkit.registry import registry

    rows = _component_rows()
    plugins = [attrs.asdict(p) for p in registry().plugins() if p.status != "loaded"]
    if args.json:
        print(json.dumps({"components": rows, "unavailable_plugins": plugins}, indent=2))
        return 0
    width = _width()
    for row in rows:
        params = ", ".join(f"{p['name']}={p['default']}" for p in row["parameters"])
        head = f"{row['kind']:<8} {row['name']:<10} "
        origin = f"[{row['distribution']} {row['version']}, entry point '{row['plugin']}']"
        for line in _wrap(f"({params or '-'})  {origin}", width, head, len(head)):
            print(line)
        for line in _wrap(row["summary"], width, " " * len(head), len(head)):
            print(line)
    for plugin in plugins:
        head = f"{plugin['status']:<8} "
        text = (
            f"{plugin['entry_point']} = {plugin['value']} ({plugin['distribution']} "
            f"{plugin['version']}): {plugin['error']}"
        )
        for line in _wrap(text, width, head, 20):
            print(line)
    return 0


_MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "xfail": "XFAIL", "xpass": "XPASS"}


def _cmd_check(args: argparse.Namespace) -> int:
    from attnkit.conformance._engine import DEVICES, cases, run_case
    from attnkit.errors import AttnkitError

    names = _check_names(args)
    if isinstance(names, int):
        return names
    devices = DEVICES if args.device == "all" else (args.device,)
    width = _width()
    progress = _progress()
    results = []
    for done, name in enumerate(names, 1):
        if progress is not None:
            progress(done, len(names), f"check {name}")
        try:
            found = list(cases([name], devices))
        except AttnkitError as error:
            return _usage_error("check", error)
        for subject, check, device, expected in found:
            if args.check and check.__name__ not in args.check:
                continue  # not run at all: --check is how to get one answer fast
            result = run_case(subject, check, device, expected)
            if not args.json:
                _print_result(result, width)
            results.append(result)
    counts = {status: sum(r.status == status for r in results) for status in _MARK}
    if args.json:
        print(
            json.dumps({"results": [attrs.asdict(r) for r in results], "counts": counts}, indent=2)
        )
    else:
        _print_summary(results, counts)
    return 1 if counts["failed"] + counts["xpass"] else 0


def _check_names(args: argparse.Namespace) -> list[str] | int:
    """The components ``attnkit check`` runs on, or the exit status of a usage error."""
    from attnkit.conformance._engine import CHECKS
    from attnkit.errors import did_you_mean
    from attnkit.registry import registry

    names = list(args.names)
    if args.all:
        names += [c.name for c in registry().components() if c.name not in names]
    if not names:
        print("attnkit check: name components to check, or --all", file=sys.stderr)
        return 2
    known = [f.__name__ for f in CHECKS]
    unknown = [c for c in args.check if c not in known]
    if unknown:
        close = did_you_mean(unknown[0], known)
        hint = f"; did you mean {close[0]!r}?" if close else f"; checks: {', '.join(known)}"
        print(f"attnkit check: unknown check {unknown[0]!r}{hint}", file=sys.stderr)
        return 2
    return names


def _print_result(result, width: int) -> None:
    line = (
        f"{_MARK[result.status]:<5} {result.component:<22} {result.check:<32} "
        f"{result.device:<3} {result.seconds:5.1f}s"
    )
    print(line[:width], flush=True)
    if result.status in ("failed", "xpass", "xfail"):
        print(f"      {result.message}", flush=True)


def _print_summary(results: list, counts: dict[str, int]) -> None:
    """A line per component (passed, failed, skipped), the skip reasons, and the totals."""
    print()
    print(f"{'component':<26} {'passed':>6} {'failed':>6} {'skipped':>7}")
    for component in dict.fromkeys(r.component for r in results):
        mine = [r for r in results if r.component == component]
        print(
            f"{component:<26} {sum(r.status in ('passed', 'xfail') for r in mine):>6} "
            f"{sum(not r.ok for r in mine):>6} {sum(r.status == 'skipped' for r in mine):>7}"
        )
    reasons: dict[str, int] = {}
    for result in results:
        if result.status == "skipped":
            reasons[result.message] = reasons.get(result.message, 0) + 1
    if reasons:
        print("\nskipped:")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            print(f"  {count:>4} x {reason}")
    failed = counts["failed"] + counts["xpass"]
    print(
        f"{counts['passed'] + counts['xfail']} passed, {failed} failed, {counts['skipped']} skipped"
    )


def _cmd_explain(args: argparse.Namespace) -> int:
    from attnkit.errors import AttnkitError
    from attnkit.explain import explain, render
    from attnkit.heads import Heads

    try:
        heads = Heads.from_arguments(
            args.heads,
            args.key_dim,
            value_dim=args.value_dim,
            num_key_value_heads=args.kv_heads,
        )
        report = explain(args.spec, length=args.length, features=args.features, heads=heads)
    except AttnkitError as error:
        return _usage_error("explain", error)
    print(json.dumps(report, indent=2) if args.json else render(report, _width()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from attnkit.bench import bench, render
    from attnkit.errors import AttnkitError

    try:
        report = bench(
            args.spec,
            args.length,
            batch=args.batch,
            features=args.features,
            repeats=args.repeats,
            warmup=args.warmup,
            train=args.train,
            timeout=args.timeout,
            progress=_progress(),
        )
    except AttnkitError as error:
        return _usage_error("bench", error)
    print(json.dumps(report, indent=2) if args.json else render(report))
    # The peer running out of memory is a finding; attnkit failing is a failure.
    return 1 if any("error" in row["attnkit"] for row in report["rows"]) else 0


def _parser() -> argparse.ArgumentParser:
    import attnkit

    parser = Parser(prog="attnkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"attnkit {attnkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every component with its parameters and origin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_cmd_list)
    _add_explain(commands)
    _add_check(commands)
    _add_bench(commands)
    return parser


def _add_explain(commands) -> None:
    explaining = commands.add_parser(
        "explain",
        help="what a spec means: components, weights, mask and execution plan",
        description="Show a spec's canonical form, its components with every parameter, the "
        "weights the layer creates, the combined mask as a grid, and the execution plan.",
    )
    explaining.add_argument("spec", help='e.g. "additive+local15"')
    explaining.add_argument(
        "--length", type=positive, default=8, metavar="T", help="sequence length (default 8)"
    )
    explaining.add_argument(
        "--features", type=positive, default=64, metavar="D", help="features (default 64)"
    )
    explaining.add_argument(
        "--heads", type=positive, metavar="H", help="multi-head: H heads (needs --key-dim)"
    )
    explaining.add_argument("--key-dim", type=positive, metavar="K", help="each head's size")
    explaining.add_argument(
        "--value-dim", type=positive, metavar="V", help="each head's value size (default K)"
    )
    explaining.add_argument(
        "--kv-heads", type=positive, metavar="G", help="grouped-query: G key/value heads"
    )
    explaining.add_argument("--json", action="store_true", help="machine-readable output")
    explaining.set_defaults(run=_cmd_explain)


def _add_check(commands) -> None:
    check = commands.add_parser("check", help="run the conformance suite on components")
    check.add_argument("names", nargs="*", help="component names (see `attnkit list`)")
    check.add_argument("--all", action="store_true", help="every registered component")
    check.add_argument(
        "--device",
        choices=["cpu", "gpu", "all"],
        default="all",
        help="where to run; GPU cases skip with a reason when none is visible",
    )
    check.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="CHECK",
        help="run only this check (repeatable)",
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=_cmd_check)


def _add_bench(commands) -> None:
    benching = commands.add_parser(
        "bench",
        help="time and peak memory of a spec against keras.layers.Attention",
        description="Time (median per batch) and peak memory of a spec against "
        "keras.layers.Attention on the same shapes, each measurement in its own subprocess.",
    )
    benching.add_argument("spec", help='e.g. "dot+causal"')
    benching.add_argument(
        "--length",
        type=positive,
        nargs="+",
        default=[1024],
        metavar="T",
        help="sequence lengths (default 1024)",
    )
    benching.add_argument("--batch", type=positive, default=32, metavar="B", help="default 32")
    benching.add_argument("--features", type=positive, default=64, metavar="D", help="default 64")
    benching.add_argument(
        "--repeats", type=positive, default=5, metavar="N", help="timed calls (default 5)"
    )
    benching.add_argument(
        "--warmup", type=whole(0), default=1, metavar="N", help="untimed calls first (default 1)"
    )
    benching.add_argument("--train", action="store_true", help="also time a training step")
    benching.add_argument(
        "--timeout", type=seconds, default=600.0, metavar="S", help="seconds per measurement"
    )
    benching.add_argument("--json", action="store_true", help="machine-readable output")
    benching.set_defaults(run=_cmd_bench)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for usage errors)."""
    from attnkit.errors import AttnkitError

    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except AttnkitError as error:  # e.g. a broken plugin under ATTNKIT_STRICT_PLUGINS=1
        return _usage_error(args.command, error)
    except KeyboardInterrupt:  # a long bench or check stopped by hand: no traceback
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
