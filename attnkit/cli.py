"""The ``attnkit`` command line: ``attnkit list`` and ``attnkit check``."""

from __future__ import annotations

import argparse
import json
import sys

import attrs

__all__ = ["main"]


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
        doc = (info.cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "name": info.name,
                "kind": info.kind,
                "shorthand": info.cls.shorthand,
                "parameters": params,
                "summary": doc[0] if doc else "",
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
    for row in rows:
        params = ", ".join(f"{p['name']}={p['default']}" for p in row["parameters"])
        print(
            f"{row['kind']:<8} {row['name']:<10} ({params or '-'})  "
            f"[{row['distribution']} {row['version']}]"
        )
        print(f"{'':<19}{row['summary']}")
    for plugin in plugins:
        print(
            f"{plugin['status']:<8} {plugin['entry_point']} ({plugin['distribution']} "
            f"{plugin['version']}): {plugin['error']}"
        )
    return 0


_MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "xfail": "XFAIL", "xpass": "XPASS"}


def _cmd_check(args: argparse.Namespace) -> int:
    import shutil

    from attnkit.conformance._engine import CHECKS, DEVICES, check_component
    from attnkit.errors import AttnkitError
    from attnkit.registry import registry

    names = list(args.names)
    if args.all:
        names += [c.name for c in registry().components() if c.name not in names]
    if not names:
        print("attnkit check: name components to check, or --all", file=sys.stderr)
        return 2
    unknown = [c for c in args.check if c not in {f.__name__ for f in CHECKS}]
    if unknown:
        print(f"attnkit check: unknown check {unknown[0]!r}", file=sys.stderr)
        return 2
    devices = DEVICES if args.device == "all" else (args.device,)
    width = shutil.get_terminal_size((100, 24)).columns

    def show(result) -> None:
        if args.json:
            return
        line = (
            f"{_MARK[result.status]:<5} {result.component:<22} {result.check:<32} "
            f"{result.device:<3} {result.seconds:5.1f}s"
        )
        print(line[: max(width, 60)], flush=True)
        if result.status in ("failed", "xpass", "xfail"):
            print(f"      {result.message}", flush=True)

    results = []
    for name in names:
        try:
            selected = check_component(
                name, devices=devices, on_result=None if args.check else show
            )
        except AttnkitError as error:
            print(f"attnkit check: {error}", file=sys.stderr)
            return 2
        if args.check:
            selected = [r for r in selected if r.check in args.check]
            for result in selected:
                show(result)
        results.extend(selected)
    counts = {status: sum(r.status == status for r in results) for status in _MARK}
    failed = counts["failed"] + counts["xpass"]
    if args.json:
        print(
            json.dumps({"results": [attrs.asdict(r) for r in results], "counts": counts}, indent=2)
        )
    else:
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
        print(
            f"{counts['passed'] + counts['xfail']} passed, {failed} failed, "
            f"{counts['skipped']} skipped"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    import attnkit

    parser = argparse.ArgumentParser(prog="attnkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"attnkit {attnkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every component with its parameters and origin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_cmd_list)
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
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
