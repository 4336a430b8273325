"""Helpers for the capability conformance suites (imported by test modules; fixtures are in conftest.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "config"


def load_rows(block: str) -> list[dict[str, Any]]:
    return yaml.safe_load((CONFIG_DIR / f"{block}.yaml").read_text())["components"]


def server_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_server(server: dict[str, Any] | None) -> None:
    """Skip when the row's backing server does not answer; under CI=true that is a failure."""
    if not server or server_answers(server["host"], int(server["port"])):
        return
    reason = f"{server['name']} is not answering on {server['host']}:{server['port']}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def expand(metadata: dict[str, Any], tmp_path: Path, uid: str) -> dict[str, str]:
    return {
        k: str(v).replace("{tmp}", str(tmp_path)).replace("{uid}", uid) for k, v in (metadata or {}).items()
    }


def component_doc(name: str, ctype: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {
            "type": ctype,
            "version": "v1",
            "metadata": [{"name": k, "value": v} for k, v in metadata.items()],
        },
    }


async def drop_pg_tables(*tables: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
    try:
        for table in tables:
            await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    finally:
        await conn.close()
