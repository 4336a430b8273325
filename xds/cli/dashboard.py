"""`mecha dashboard`: open the control plane's web dashboard, logged in by a one-time code."""

from __future__ import annotations

import argparse
import webbrowser

from xds.cli.client import Client


def add_parser(sub: argparse._SubParsersAction, add_server: object) -> None:
    p = sub.add_parser(
        "dashboard",
        help="open the web dashboard in a browser, logged in (a one-time code, valid 60 s)",
        description="Example: mecha dashboard --no-browser  (prints the login URL instead of opening it)",
    )
    p.add_argument("--no-browser", action="store_true", help="print the login URL only (default: open it)")
    add_server(p)  # type: ignore[operator]


def cmd_dashboard(args: argparse.Namespace) -> int:
    client = Client(args.server, getattr(args, "token", None))
    answer = client.post("/api/v1/ui/code", {})
    url = client.server + answer["path"]
    print(f"dashboard: {url}  (one-time login link, valid {answer['expires_in_s']:.0f} s)")
    if not args.no_browser:
        webbrowser.open(url)
    return 0
