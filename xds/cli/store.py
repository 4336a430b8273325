"""`mecha history`, `mecha rollback VERSION` (API clients) and `mecha store migrate` (talks to the store)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from xds.cli.client import Client
from xds.cli.tables import outcome_lines, table


def add_parsers(sub: Any, add_server: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("history", help="accepted config versions: who, when, what changed")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    add_server(p)
    p = sub.add_parser("rollback", help="re-apply the config of an earlier version as a new version")
    p.add_argument("version", type=int, help="a version from `mecha history`")
    p.add_argument("--dry-run", action="store_true", help="validate only, apply nothing")
    add_server(p)
    p = sub.add_parser("store", help="config store maintenance")
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")
    m = store_sub.add_parser("migrate", help="bring a PostgreSQL store's schema to this version's")
    m.add_argument("--store", default=None, help="postgresql://... (default $MECHA_STORE)")


def _changes(changes: dict[str, list[str]]) -> str:
    parts = [
        f"{verb} {', '.join(changes[verb])}" for verb in ("added", "modified", "removed") if changes.get(verb)
    ]
    return "; ".join(parts) or "-"


def cmd_history(args: argparse.Namespace) -> int:
    view = Client(args.server, args.token).get("/api/v1/config/history")
    if args.output == "json":
        print(json.dumps(view, indent=2))
        return 0
    rows = [
        (
            v["version"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["at"])),
            v["source"],
            _changes(v["changes"]),
        )
        for v in view["versions"]
    ]
    print(table(("VERSION", "AT", "SOURCE", "CHANGES"), rows))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    query = f"?version={args.version}&dry_run={int(bool(args.dry_run))}"
    outcome = Client(args.server, args.token).post("/api/v1/config/rollback" + query, {})
    print("\n".join(outcome_lines(outcome)))
    return 0 if outcome.get("accepted") else 1


def cmd_store(args: argparse.Namespace) -> int:
    from xds.controlplane.settings import ENV_STORE
    from xds.controlplane.store.open import is_shared

    url = args.store or os.environ.get(ENV_STORE, "")
    if not is_shared(url):
        raise ValueError(
            f"--store (or ${ENV_STORE}): a postgresql:// URL (the embedded SQLite store migrates at start)"
        )
    from xds.controlplane.store.postgres import PostgresBackend

    async def migrate() -> tuple[int, int, str]:
        backend = PostgresBackend(url)
        try:
            before, after = await backend.migrate()
            return before, after, backend.location
        finally:
            await backend.close()

    before, after, where = asyncio.run(migrate())
    if before == after:
        print(f"config store {where}: schema {after}, up to date")
    else:
        print(f"config store {where}: schema {before} -> {after}")
    return 0
