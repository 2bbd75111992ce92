"""The ``attnkit`` command line: ``attnkit list`` (more commands arrive with the issues)."""

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


def main(argv: list[str] | None = None) -> int:
    import attnkit

    parser = argparse.ArgumentParser(prog="attnkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"attnkit {attnkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every component with its parameters and origin")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_cmd_list)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
