"""`mecha analyze -f DIR`: offline report of what Mecha does with every field (exit 1 if any is dropped)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xds.validate.strict import strict_from_env


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "analyze",
        help="per field: honoured, honoured differently or ignored (exit 1 if anything is dropped)",
    )
    p.add_argument("-f", "--file", action="append", required=True, help="YAML file or folder (repeatable)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    p.add_argument("-q", "--quiet", action="store_true", help="hide fields that are honoured as in Istio")
    p.add_argument(
        "--strict", action="store_true", help="routes to missing hosts/subsets: errors (also MECHA_STRICT=1)"
    )


def cmd_analyze(args: argparse.Namespace) -> int:
    from xds.analyze import analyze_paths, render_json, render_text  # the whole compiler: not for --help

    missing = [f for f in args.file if not Path(f).exists()]
    if missing:
        print(f"mecha analyze: no such file or folder: {', '.join(missing)}")
        return 2
    report = analyze_paths(args.file, strict=args.strict or strict_from_env())
    print(render_json(report) if args.output == "json" else render_text(report, quiet=args.quiet))
    return 1 if report.would_drop else 0
