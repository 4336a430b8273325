"""secretstores.local.env never serves the runtime's own credentials (issue #10): an app, or anyone who
reaches the Dapr port, asks the Dapr secrets API for the tokens in the capability service's environment."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from capability_testkit import component, need_server

from xds.demo.config import DEMO_SECRETS, dapr_documents, demo_secret_env

ROOT = Path(__file__).resolve().parents[2]
# What a capability service started by `mecha up` or compose may hold: its own tokens and the operator's
# (the supervisor passes its environment on), a store URL with a password.
CREDENTIALS = {
    "DAPR_API_TOKEN": "dapr-api-token-value",
    "APP_API_TOKEN": "app-api-token-value",
    "MECHA_CONTROL_PLANE_TOKEN": "reader-token-value",
    "MECHA_CONTROL_PLANE_TOKEN_FILE": "/run/mecha-reader/dapr-reader-token",
    "MECHA_TOKEN": "operator-token-value",
    "MECHA_STORE": "postgresql://mecha:store-password@db/mecha",
}
BACKEND = {"MECHA_REDIS_HOST": "redis:6379"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**CREDENTIALS, **BACKEND, **demo_secret_env()}.items():
        monkeypatch.setenv(name, value)


def demo_store() -> dict[str, Any]:
    return next(d for d in dapr_documents() if d["spec"]["type"] == "secretstores.local.env")


def compose_envstore() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "compose" / "config" / "dapr.yaml").read_text())
    return next(d for d in docs if d["kind"] == "Component" and d["spec"]["type"] == "secretstores.local.env")


def assert_no_credential(text: str) -> None:
    assert "store-password" not in text
    for name, value in CREDENTIALS.items():
        assert value not in text, name


async def test_no_token_by_name_or_in_bulk(make_sidecar: Any, env: None) -> None:
    stores = [
        component("plain", "secretstores.local.env"),  # compose's envstore before the fix
        component("control", "secretstores.local.env", prefix="MECHA_CONTROL_PLANE_"),
        component("mecha", "secretstores.local.env", prefix="MECHA_"),
    ]
    client, runtime = await make_sidecar(stores)
    assert runtime.init_errors == {}
    missing = await client.get("/v1.0/secrets/plain/NO_SUCH_VARIABLE")
    assert missing.status == 500 and (await missing.json())["errorCode"] == "ERR_SECRET_GET"
    asks = [("plain", name) for name in CREDENTIALS]
    asks += [("control", "TOKEN"), ("control", "TOKEN_FILE")]
    asks += [("mecha", name.removeprefix("MECHA_")) for name in CREDENTIALS if name.startswith("MECHA_")]
    for store, name in asks:
        resp = await client.get(f"/v1.0/secrets/{store}/{name}")
        body = await resp.text()
        assert_no_credential(body)
        # the answer to a missing secret: nothing tells a denied name from an unset one
        assert (resp.status, body) == (
            missing.status,
            (await missing.text()).replace("NO_SUCH_VARIABLE", name).replace("plain", store),
        ), (store, name)
    for store in ("plain", "control", "mecha"):
        bulk = await client.get(f"/v1.0/secrets/{store}/bulk")
        assert bulk.status == 200
        assert_no_credential(await bulk.text())
    assert "MECHA_REDIS_HOST" not in await (await client.get("/v1.0/secrets/plain/bulk")).json()


async def test_the_demo_secret_and_compose_backends_are_still_served(make_sidecar: Any, env: None) -> None:
    compose = compose_envstore()
    client, runtime = await make_sidecar([demo_store(), compose])
    assert runtime.init_errors == {}
    demo, envstore = demo_store()["metadata"]["name"], compose["metadata"]["name"]
    greeting = await client.get(f"/v1.0/secrets/{demo}/greeting")
    assert (greeting.status, await greeting.json()) == (200, {"greeting": DEMO_SECRETS["greeting"]})
    bulk = await (await client.get(f"/v1.0/secrets/{demo}/bulk")).json()
    assert bulk == {name: {name: value} for name, value in DEMO_SECRETS.items()}
    # compose's components name their backends through this store (secretKeyRef)
    prefix = {m["name"]: m["value"] for m in compose["spec"].get("metadata", [])}.get("prefix", "")
    redis = await client.get(f"/v1.0/secrets/{envstore}/" + "MECHA_REDIS_HOST".removeprefix(prefix))
    assert redis.status == 200 and list((await redis.json()).values()) == ["redis:6379"]
    assert_no_credential(await (await client.get(f"/v1.0/secrets/{envstore}/bulk")).text())


def mecha_settings_read_by_the_project() -> set[str]:
    """Every MECHA_* name quoted in the runtime's and control plane's source (`mecha up` hands its whole
    environment to the capability services, so the CLI's and control plane's settings are there too)."""
    names: set[str] = set()
    for folder in ("capabilities", "xds"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"[\"'](MECHA_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()))
    return names


async def test_every_mecha_setting_is_denied_even_under_a_mecha_prefix(
    make_sidecar: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = mecha_settings_read_by_the_project()
    assert {"MECHA_CONTROL_PLANE_TOKEN", "MECHA_STATE_DIR", "MECHA_STORE"} <= names
    for name in names:
        monkeypatch.setenv(name, f"value-of-{name}")
    client, _ = await make_sidecar([component("mecha", "secretstores.local.env", prefix="MECHA_")])
    served = await (await client.get("/v1.0/secrets/mecha/bulk")).json()
    assert not {"MECHA_" + key for key in served} & names
    for name in sorted(names):
        assert (await client.get("/v1.0/secrets/mecha/" + name.removeprefix("MECHA_"))).status == 500, name


async def test_compose_components_find_their_backends_through_the_prefixed_store(
    make_sidecar: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_server("Redis", "127.0.0.1", 6379)
    monkeypatch.setenv("MECHA_REDIS_HOST", "127.0.0.1:6379")
    docs = yaml.safe_load_all((ROOT / "compose" / "config" / "dapr.yaml").read_text())
    wanted = [d for d in docs if d["metadata"]["name"] in ("envstore", "statestore")]
    client, runtime = await make_sidecar(wanted)
    assert runtime.init_errors == {}
    key = f"envstore-{uuid.uuid4().hex}"
    assert (await client.post("/v1.0/state/statestore", json=[{"key": key, "value": 7}])).status == 204
    assert await (await client.get(f"/v1.0/state/statestore/{key}")).json() == 7
    await client.delete(f"/v1.0/state/statestore/{key}")
