"""Resource YAML: folder loading, clear errors, secretKeyRef resolution, scopes, template tags, durations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from capabilities.config.documents import ConfigError, load_folder, parse_documents, parse_yaml_text
from capabilities.config.settings import Settings
from capabilities.daprspec.durations import parse_duration
from capabilities.runtime import Runtime

GOOD = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cache}
spec:
  type: state.in-memory
  version: v1
  initTimeout: 2s
  metadata:
  - {name: keyPrefix, value: "{appID}-x"}
  - {name: count, value: 3}
  - {name: flag, value: true}
scopes: [shop]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: s}
spec: {pubsubname: p, topic: t, routes: {default: /t}}
"""


def test_folder_loading_and_value_types(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("ignored")
    resources = load_folder(tmp_path, "shop")
    (comp,) = resources.components
    assert (comp.name, comp.type, comp.init_timeout_s, comp.scopes) == (
        "cache",
        "state.in-memory",
        2.0,
        ("shop",),
    )
    spec = comp.to_spec({}, "shop")
    assert spec.metadata == {"keyPrefix": "shop-x", "count": "3", "flag": "true"}
    assert len(resources.subscriptions) == 1
    assert load_folder(tmp_path, "other-app").components == []  # scoped away


HEAD = "kind: Component\nmetadata: {name: a}\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind: Component\nmetadata: {}\nspec: {type: state.x}", "metadata.name is required"),
        ("kind: Component\nmetadata: {name: a}\nspec: {type: redis}", "spec.type must look like"),
        ("kind: Component\nmetadata: {name: a}", "spec is required"),
        (f"{HEAD}spec: {{type: state.x, initTimeout: soon}}", "spec.initTimeout"),
        (f"{HEAD}spec: {{type: state.x, metadata: [{{value: 1}}]}}", "needs a name"),
        (f"{HEAD}spec:\n  type: state.x\n  metadata: [{{name: p, secretKeyRef: {{}}}}]",
         "secretKeyRef.name is required"),
        ("metadata: {name: a}", "has no 'kind'"),
        ("- a\n- b", "expected a mapping"),
        ("kind: [", "invalid YAML"),
    ],
)  # fmt: skip
def test_bad_documents_name_file_and_field(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_documents(parse_yaml_text(text, "comp.yaml"))
    assert "comp.yaml" in str(info.value) and fragment in str(info.value)


def test_duplicate_component_names(tmp_path: Path) -> None:
    doc = "kind: Component\nmetadata: {name: a}\nspec: {type: state.in-memory}\n"
    (tmp_path / "1.yaml").write_text(doc)
    (tmp_path / "2.yaml").write_text(doc)
    with pytest.raises(ConfigError, match="also defined in"):
        load_folder(tmp_path)


def test_durations() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration(3) == 3
    with pytest.raises(ValueError, match=r"retry\.duration"):
        parse_duration("5 seconds", field="retry.duration")


def _secret_docs(tmp_path: Path, with_auth: bool) -> list[tuple[Any, str]]:
    (tmp_path / "s.json").write_text(json.dumps({"redis": {"password": "pw"}, "prefix": "pre"}))
    store = {"kind": "Component", "metadata": {"name": "vault"},
             "spec": {"type": "secretstores.local.file",
                      "metadata": [{"name": "secretsFile", "value": str(tmp_path / "s.json")}]}}  # fmt: skip
    user: dict[str, Any] = {
        "kind": "Component",
        "metadata": {"name": "cache"},
        "spec": {
            "type": "state.in-memory",
            "metadata": [
                {"name": "keyPrefix", "secretKeyRef": {"name": "prefix"}},
                {"name": "password", "secretKeyRef": {"name": "redis:password", "key": "redis:password"}},
            ],
        },
    }
    if with_auth:
        user["auth"] = {"secretstore": "vault"}
    return [(user, "cache.yaml"), (store, "vault.yaml")]


async def test_secret_key_refs_are_resolved_through_the_secret_store(tmp_path: Path) -> None:
    runtime = Runtime(Settings(app_id="a"))
    await runtime.apply_resources(parse_documents(_secret_docs(tmp_path, with_auth=True)))
    assert runtime.init_errors == {}
    assert runtime.component_spec("cache").metadata == {"keyPrefix": "pre", "password": "pw"}
    await runtime.stop()


async def test_secret_store_errors_are_reported_per_component(tmp_path: Path) -> None:
    docs = _secret_docs(tmp_path, with_auth=True)
    docs[0][0]["auth"] = {"secretstore": "missing"}
    runtime = Runtime(Settings(app_id="a"))
    await runtime.apply_resources(parse_documents(docs))
    assert "auth.secretstore 'missing'" in runtime.init_errors["cache"]
    assert "cache.yaml" in runtime.init_errors["cache"]
    assert "vault" in runtime.components("secretstores")
    await runtime.stop()


def test_settings_from_env() -> None:
    env = {"DAPR_HTTP_PORT": "3600", "APP_ID": "x", "APP_PORT": "8080", "DAPR_API_TOKEN": "t",
           "MECHA_MAX_BODY_BYTES": "10", "MECHA_CONTROL_PLANE": "http://cp:8080"}  # fmt: skip
    settings = Settings.from_env(env)
    assert (settings.http_port, settings.app_id, settings.api_token) == (3600, "x", "t")
    assert settings.app_url == "http://127.0.0.1:8080" and settings.max_body_bytes == 10
    assert settings.control_plane == "http://cp:8080"
    assert Settings.from_env(env, app_id="y").app_id == "y"
    with pytest.raises(ValueError, match="DAPR_HTTP_PORT"):
        Settings.from_env({"DAPR_HTTP_PORT": "abc"})
