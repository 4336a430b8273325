"""The HTTP API over a real ControlPlane (real xDS server and cache) with a stand-in compile/translate.

The real pipeline is exercised end to end in tests/e2e; here the stand-in keeps the API behaviour
(atomic refusal, dry-run diffs, long-poll, errors) testable on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import types
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from xds import types as xtypes
from xds.cache.snapshot import Resource, Snapshot
from xds.controlplane.api import start_api
from xds.controlplane.auth import auth_headers
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.diagnostics import Diagnostic
from xds.proxy import ProxyIdentity
from xds.sources import RawDocument, load_paths, load_text


class StandInConfig(list[RawDocument]):
    """The stand-in's config: its documents, and nothing for the no-CA checks (no mTLS) to refuse."""

    destination_rules = ()
    carried = ()


@dataclass
class Result:
    config: list[RawDocument]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: list[RawDocument] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def compile_documents(docs: list[RawDocument]) -> Result:
    """Stand-in validation: a VirtualService subset must be declared by some DestinationRule."""
    subsets = {
        s["name"] for d in docs if d.kind == "DestinationRule" for s in d.body["spec"].get("subsets", [])
    }
    diags = []
    for d in docs:
        for i, route in enumerate(
            d.body.get("spec", {}).get("http", []) if d.kind == "VirtualService" else []
        ):
            for j, dest in enumerate(route.get("route", [])):
                subset = dest["destination"].get("subset")
                if subset and subset not in subsets:
                    field_path = f"spec.http[{i}].route[{j}].destination.subset"
                    diags.append(Diagnostic(d.location, field_path, f"unknown subset {subset!r}"))
    return Result(StandInConfig(sorted(docs, key=lambda d: d.key)), diags)


class SnapshotBuilder:
    def build(
        self,
        config: list[RawDocument],
        proxies: Iterable[ProxyIdentity],
        changed_at: float,
        config_version: str,
    ) -> dict[str, Snapshot]:
        resources = [Resource.make(xtypes.CLUSTER, d.key[2], json.dumps(d.body).encode()) for d in config]
        return {p.id: Snapshot.build(resources, changed_at, config_version) for p in proxies}


FAKE_PIPELINE = types.SimpleNamespace(
    load_text=load_text,
    load_paths=load_paths,
    compile_documents=compile_documents,
    SnapshotBuilder=SnapshotBuilder,
)

DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
"""
VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: SUBSET}}]}]
"""
COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1}
"""


@dataclass
class Api:
    cp: ControlPlane
    url: str
    session: aiohttp.ClientSession

    async def post(self, path: str, text: str, **query: str) -> tuple[int, Any]:
        yaml_body = {"Content-Type": "application/yaml"}
        async with self.session.post(self.url + path, data=text, params=query, headers=yaml_body) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.url + path) as resp:
            body = await resp.text()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, body


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "dr.yaml").write_text(DR)
    settings = Settings(
        api_port=0, xds_port=0, config_dirs=[folder], watch_interval=0.05, state_dir=tmp_path / "state"
    )
    cp = ControlPlane(settings, pipeline=FAKE_PIPELINE)
    runner, port = await start_api(cp, "127.0.0.1", 0)
    try:  # a start that fails still stops what it started (the module hung on a failed start)
        await cp.start()
        async with aiohttp.ClientSession(headers=auth_headers(tmp_path / "state")) as session:  # operator
            yield Api(cp, f"http://127.0.0.1:{port}", session)
    finally:
        await cp.stop()
        await runner.cleanup()


async def test_folder_is_loaded_at_start_and_ready(api: Api) -> None:
    status, body = await api.get("/readyz")
    assert status == 200 and body["version"] == 1
    status, config = await api.get("/api/v1/config")
    assert [d["name"] for d in config["documents"]] == ["reviews"]
    assert config["documents"][0]["source"].startswith("folder:")


async def test_apply_accepts_then_refuses_atomically(api: Api) -> None:
    status, ok = await api.post(
        "/api/v1/apply", VS.replace("SUBSET", "v1") + "---\n" + COMPONENT, filename="a.yaml"
    )
    assert status == 200 and ok["accepted"] and ok["version"] == 2
    assert sorted(ok["changes"]["added"]) == [
        "Component default/statestore",
        "VirtualService default/reviews",
    ]
    status, bad = await api.post("/api/v1/apply", VS.replace("SUBSET", "v9"), filename="bad.yaml")
    assert status == 422 and not bad["accepted"]
    [diag] = bad["diagnostics"]
    assert diag["file"] == "bad.yaml" and diag["field"] == "spec.http[0].route[0].destination.subset"
    _, config = await api.get("/api/v1/config")
    assert config["version"] == 2  # nothing of the refused change was kept
    vs = next(d for d in config["documents"] if d["kind"] == "VirtualService")
    assert vs["body"]["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"


async def test_malformed_yaml_and_bad_json_are_clear_errors(api: Api) -> None:
    status, body = await api.post("/api/v1/apply", "kind: [unclosed", filename="broken.yaml")
    assert status == 422 and "malformed YAML" in body["diagnostics"][0]["message"]
    async with api.session.post(
        api.url + "/api/v1/apply", data="{not json", headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400 and "bad JSON body" in (await resp.json())["error"]


async def test_delete_refused_when_still_referenced(api: Api) -> None:
    extra_dr = DR.replace("name: reviews}", "name: reviews-v3}").replace("v1", "v3")
    status, _ = await api.post("/api/v1/apply", extra_dr + "---\n" + VS.replace("SUBSET", "v3"))
    assert status == 200
    status, body = await api.post("/api/v1/delete", extra_dr)
    assert status == 422 and "unknown subset" in body["diagnostics"][0]["message"]
    status, body = await api.post("/api/v1/delete", VS)
    assert status == 200 and body["changes"]["removed"] == ["VirtualService default/reviews"]


async def test_dapr_long_poll_wakes_on_change(api: Api) -> None:
    _, first = await api.get("/api/v1/dapr")
    assert first["components"] == [] and first["version"] == 1

    async def later_apply() -> None:
        await asyncio.sleep(0.2)
        await api.post("/api/v1/apply", COMPONENT)

    task = asyncio.create_task(later_apply())
    status, changed = await api.get(f"/api/v1/dapr?wait={first['version']}&timeout=10")
    await task
    assert status == 200 and changed["version"] == 2
    assert changed["components"][0]["metadata"]["name"] == "statestore"
    assert set(changed) == {"version", "components", "subscriptions", "resiliencies", "configurations"}
    _, same = await api.get("/api/v1/dapr?wait=2&timeout=0.1")  # nothing new: answers after the timeout
    assert same["version"] == 2


async def test_metrics_count_accepted_and_refused(api: Api) -> None:
    def value(text: str, name: str) -> float:
        return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))

    _, before = await api.get("/metrics")
    await api.post("/api/v1/apply", VS.replace("SUBSET", "v9"))
    await api.post("/api/v1/apply", VS.replace("SUBSET", "v1"))
    _, after = await api.get("/metrics")
    assert value(after, "mecha_config_refused_total") == value(before, "mecha_config_refused_total") + 1
    assert value(after, "mecha_config_accepted_total") == value(before, "mecha_config_accepted_total") + 1


async def test_unknown_proxy_and_section_are_json_404(api: Api) -> None:
    status, body = await api.get("/api/v1/proxies/nope/config/clusters")
    assert status == 404 and "no connected proxy" in body["error"]
    status, body = await api.get("/api/v1/proxies/nope/config/secrets")
    assert status == 404 and "unknown section" in body["error"]
    status, body = await api.get("/api/v1/proxies")
    assert status == 200 and body == {"proxies": [], "warnings": []}


async def test_watched_folder_refusal_is_reported_and_last_good_kept(api: Api, tmp_path: Path) -> None:
    folder = tmp_path / "config"
    (folder / "vs.yaml").write_text(VS.replace("SUBSET", "v7"))
    for _ in range(100):
        _, config = await api.get("/api/v1/config")
        statuses = list(config["sources"].values())
        if statuses and not statuses[0]["accepted"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the invalid folder edit was never reported")
    assert statuses[0]["diagnostics"][0]["file"].endswith("vs.yaml")
    assert [d["kind"] for d in config["documents"]] == ["DestinationRule"]
    (folder / "vs.yaml").write_text(VS.replace("SUBSET", "v1"))
    for _ in range(100):
        _, config = await api.get("/api/v1/config")
        if len(config["documents"]) == 2:
            break
        await asyncio.sleep(0.05)
    assert sorted(d["kind"] for d in config["documents"]) == ["DestinationRule", "VirtualService"]
    (folder / "vs.yaml").unlink()
    for _ in range(100):
        _, config = await api.get("/api/v1/config")
        if len(config["documents"]) == 1:
            break
        await asyncio.sleep(0.05)
    assert [d["kind"] for d in config["documents"]] == ["DestinationRule"]


# ---- owners and optimistic concurrency (the config store) --------------------------------------------------
async def test_api_cannot_change_or_delete_a_folder_document(api: Api) -> None:
    before = (await api.get("/api/v1/config"))[1]
    status, body = await api.post("/api/v1/apply", DR.replace("v1", "v2"), filename="mine.yaml")
    assert status == 409 and not body["accepted"]
    assert "folder:" in body["error"] and "DestinationRule default/reviews" in body["error"]
    status, body = await api.post("/api/v1/delete", DR)
    assert status == 409 and "folder:" in body["diagnostics"][0]["message"]
    after = (await api.get("/api/v1/config"))[1]
    assert after["version"] == before["version"] and after["documents"] == before["documents"]


async def test_folder_cannot_take_over_an_api_document(api: Api, tmp_path: Path) -> None:
    status, _ = await api.post("/api/v1/apply", COMPONENT, filename="api.yaml")
    assert status == 200
    (tmp_path / "config" / "component.yaml").write_text(COMPONENT.replace("in-memory", "redis"))
    for _ in range(100):
        _, config = await api.get("/api/v1/config")
        statuses = list(config["sources"].values())
        if statuses and not statuses[0]["accepted"]:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the folder's takeover of an API document was never refused")
    [diag] = statuses[0]["diagnostics"]
    assert diag["file"].endswith("component.yaml") and diag["code"] == "owner-conflict"
    assert "owned by api" in diag["message"]
    component = next(d for d in config["documents"] if d["kind"] == "Component")
    assert component["source"] == "api" and component["body"]["spec"]["type"] == "state.in-memory"


async def test_expected_version_mismatch_is_409_and_writes_nothing(api: Api) -> None:
    _, config = await api.get("/api/v1/config")
    current = config["version"]
    status, body = await api.post("/api/v1/apply", COMPONENT, expected_version=str(current + 5))
    assert status == 409 and not body["accepted"]
    assert body["current_version"] == current and body["expected_version"] == current + 5
    assert f"is {current}" in body["error"]
    assert (await api.get("/api/v1/config"))[1]["version"] == current
    status, body = await api.post("/api/v1/apply", COMPONENT, expected_version=str(current))
    assert status == 200 and body["version"] == current + 1
    status, body = await api.post("/api/v1/delete", COMPONENT, expected_version=str(current))
    assert status == 409 and body["current_version"] == current + 1
    status, body = await api.post("/api/v1/apply", COMPONENT, expected_version="seven")
    assert status == 400 and "expected_version" in body["error"]


async def test_cli_expected_version_refuses_a_stale_apply_and_delete(api: Api, tmp_path: Path) -> None:
    from xds.cli.main import main as mecha

    component = tmp_path / "component.yaml"
    component.write_text(COMPONENT)
    token = auth_headers(tmp_path / "state")["Authorization"].removeprefix("Bearer ")

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = mecha([*argv, "-f", str(component), "--server", api.url, "--token", token])
        return rc, out.getvalue()

    version = api.cp.store.version
    rc, text = await asyncio.to_thread(run, "apply", "--expected-version", str(version + 1))
    assert rc == 1 and f"config is at version {version}, not the expected {version + 1}" in text
    assert api.cp.store.version == version
    rc, text = await asyncio.to_thread(run, "apply", "--expected-version", str(version))
    assert rc == 0 and api.cp.store.version == version + 1, text
    rc, text = await asyncio.to_thread(run, "delete", "--expected-version", str(version))
    assert rc == 1 and "not the expected" in text and api.cp.store.version == version + 1
    rc, text = await asyncio.to_thread(run, "delete", "--expected-version", str(version + 1))
    assert rc == 0 and "deleted" in text, text
