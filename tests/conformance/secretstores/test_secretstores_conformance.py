"""Secret store conformance: every backend in config/secretstores.yaml through the Dapr HTTP API."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conformance_helpers import component_doc, expand, load_rows, need_server

ROWS = load_rows("secretstores")


@pytest.fixture(params=ROWS, ids=[r["name"] for r in ROWS])
async def api(request: pytest.FixtureRequest, sidecar_factory: Any, tmp_path: Path, uid: str) -> Any:
    row = request.param
    need_server(row.get("server"))
    metadata = expand(row["metadata"], tmp_path, uid)
    secrets = {"db-password": "s3cr3t", "api": {"key": "k-123", "region": "eu"}}
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    env_keys = []
    if "prefix" in metadata:
        for name, value in (("db-password", "s3cr3t"), ("api:key", "k-123")):
            os.environ[metadata["prefix"] + name] = value
            env_keys.append(metadata["prefix"] + name)
    client, _ = await sidecar_factory([component_doc("vault", row["type"], metadata)])
    client.row = row
    yield client
    for key in env_keys:
        os.environ.pop(key, None)


async def test_get_secret(api: Any) -> None:
    resp = await api.get("/v1.0/secrets/vault/db-password")
    assert resp.status == 200
    assert await resp.json() == {"db-password": "s3cr3t"}


async def test_nested_key_uses_separator(api: Any) -> None:
    resp = await api.get("/v1.0/secrets/vault/api:key")
    assert await resp.json() == {"api:key": "k-123"}


async def test_missing_secret_is_an_error_naming_the_store(api: Any) -> None:
    resp = await api.get("/v1.0/secrets/vault/nope")
    body = await resp.json()
    assert resp.status == 500 and body["errorCode"] == "ERR_SECRET_GET"
    assert "vault" in body["message"] and "nope" in body["message"]


async def test_bulk(api: Any) -> None:
    resp = await api.get("/v1.0/secrets/vault/bulk")
    assert resp.status == 200
    body = await resp.json()
    assert body["db-password"] == {"db-password": "s3cr3t"}
    assert body["api:key"] == {"api:key": "k-123"}


async def test_unknown_store(api: Any) -> None:
    resp = await api.get("/v1.0/secrets/other/db-password")
    assert resp.status == 401
    assert (await resp.json())["errorCode"] == "ERR_SECRET_STORE_NOT_FOUND"
