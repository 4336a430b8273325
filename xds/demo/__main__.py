"""python -m xds.demo APP --port P [--version v1] [--proxy HOST:PORT]"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from xds.demo.apps import APPS, make_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo", description="Run one embedded demo app.")
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", default="v1", help="version label the app reports (v1, v2)")
    parser.add_argument(
        "--proxy", default="", help="HOST:PORT of this app's proxy outbound listener (for mesh calls)"
    )
    args = parser.parse_args(argv)
    try:
        web.run_app(
            make_app(args.app, args.version, args.proxy),
            host=args.host,
            port=args.port,
            print=lambda *_: print(f"{args.app} {args.version} listening on {args.host}:{args.port}"),
            access_log=None,
            handle_signals=True,
        )
    except OSError as exc:
        print(f"{args.app}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
