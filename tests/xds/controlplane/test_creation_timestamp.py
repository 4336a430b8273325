"""metadata.creationTimestamp: set at first accept when absent, kept by later applies and across a restart
(istiod orders config by it: the oldest VirtualService of a host routes the sidecars)."""

from __future__ import annotations

from pathlib import Path

from xds.controlplane.store import ConfigStore, SqliteBackend
from xds.controlplane.store.plan import plan_change
from xds.pipeline import compile_documents
from xds.sources import RawDocument, load_text

SERVICE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.0.0.1}]
"""


def vs(name: str, prefix: str = "/", created: str = "") -> list[RawDocument]:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    text = (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}{stamp}}}\n"
        f"spec:\n  hosts: [web]\n  http:\n  - match: [{{uri: {{prefix: {prefix}}}}}]\n"
        "    route: [{destination: {host: web}}]\n"
    )
    docs, diags = load_text(text, f"{name}.yaml")
    assert not diags
    return docs


def created(store: ConfigStore, name: str) -> str:
    return str(store.documents[("VirtualService", "default", name)].body["metadata"]["creationTimestamp"])


async def apply(store: ConfigStore, docs: list[RawDocument], now: str = "") -> dict[str, list[str]]:
    """store.plan_apply with a fixed clock (`now`: plan_change's first-accept time)."""
    owners = {k: store.owner(k) for k in store.documents}
    plan = store.evaluate(plan_change(store.documents, owners, docs, (), "api", [], now=now))
    assert plan.ok, [str(d) for d in plan.all_diagnostics()]
    await store.commit(plan)
    return plan.change.to_dict()


async def test_first_accept_stamps_later_applies_keep_it_and_a_restart_keeps_it(tmp_path: Path) -> None:
    store = ConfigStore(compile_documents, SqliteBackend.in_state_dir(tmp_path))
    await store.load()
    services, _ = load_text(SERVICE, "svc.yaml")
    await apply(store, services + vs("first"), now="2024-01-01T00:00:00Z")
    assert created(store, "first") == "2024-01-01T00:00:00Z"
    # the same document again (the YAML has no timestamp): unchanged, not "configured"
    assert (await apply(store, vs("first"), now="2025-01-01T00:00:00Z"))["modified"] == []
    # an edit keeps the first accept's timestamp
    assert (await apply(store, vs("first", "/v2"), now="2025-01-01T00:00:00Z"))["modified"]
    assert created(store, "first") == "2024-01-01T00:00:00Z"
    await store.close()
    reopened = ConfigStore(compile_documents, SqliteBackend.in_state_dir(tmp_path))
    await reopened.load()
    assert created(reopened, "first") == "2024-01-01T00:00:00Z"
    await reopened.close()


async def test_a_given_timestamp_is_kept_and_the_oldest_virtual_service_routes_sidecars() -> None:
    store = ConfigStore(compile_documents)
    services, _ = load_text(SERVICE, "svc.yaml")
    # "a-young" sorts first by name but was created later (kubectl export keeps creationTimestamp)
    await apply(
        store,
        services
        + vs("a-young", "/young", "2024-06-01T00:00:00Z")
        + vs("z-old", "/old", "2020-01-01T00:00:00Z"),
    )
    assert created(store, "z-old") == "2020-01-01T00:00:00Z"
    chosen = store.config.mesh_routes_by_host["web.default.svc.cluster.local"]
    assert chosen.meta.name == "z-old"
    (warning,) = [d for d in store.result.diagnostics if d.code == "vs-duplicate"]
    assert warning.location.name == "a-young" and "z-old" in warning.message
