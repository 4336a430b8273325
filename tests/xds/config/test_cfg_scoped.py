"""Scoped outbound routing (xds/translate/scoped_routes.py): what the builder emits and when it falls back."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cfg_helpers import compile_text, decoded, sidecar

from xds import types
from xds.pipeline import SnapshotBuilder
from xds.translate.scoped_routes import (
    AUTO_MIN_SERVICES,
    INTERNAL_CLUSTER,
    INTERNAL_LISTENER,
    MODES,
    SERVICES_PER_TABLE,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from meshgen import generate_mesh

FQDN = "svc00001.default.svc.cluster.local"


def config(n: int = 5, text: str | None = None):  # type: ignore[no-untyped-def]
    result = compile_text(text or generate_mesh(n))
    assert result.config is not None
    return result.config


def _table_of(snap: object, key: str) -> str:
    return str(decoded(snap, "SRDS")[f"outbound/{key}"]["routeConfigurationName"])  # type: ignore[arg-type]


def test_each_service_name_gets_a_scope_pointing_at_its_route_table() -> None:
    snap = SnapshotBuilder(route_tables="scoped").build(config(), [sidecar()])["productpage-v1"]
    routes = snap.of(types.ROUTE)
    assert "outbound" not in routes
    scopes = decoded(snap, "SRDS")
    table_name = _table_of(snap, FQDN)
    assert table_name.startswith("outbound|default|") and table_name in routes
    for key in ("svc00001", "svc00001.default", "svc00001.default.svc", FQDN):
        scope = scopes[f"outbound/{key}"]
        assert scope["routeConfigurationName"] == table_name
        assert scope["key"]["fragments"] == [{"stringKey": key}]
    table = decoded(snap, "RDS")[table_name]
    vhost = next(v for v in table["virtualHosts"] if v["name"] == f"{FQDN}:8080")
    assert "svc00001:8080" in vhost["domains"] and f"{FQDN}:8080" in vhost["domains"]
    assert table["virtualHosts"][-1]["name"] == "block_all"  # a known host on an unknown port: 502


def test_services_share_tables_in_small_groups_of_one_namespace() -> None:
    snap = SnapshotBuilder(route_tables="scoped").build(config(200), [sidecar()])["productpage-v1"]
    tables = [n for n in snap.of(types.ROUTE) if n.startswith("outbound|")]
    expected = -(-200 // SERVICES_PER_TABLE)
    assert len(tables) <= expected and len(tables) >= expected // 2, tables
    assert all(n.startswith("outbound|default|") for n in tables)


def test_listener_routes_by_authority_scopes_and_dapr_reenters_them() -> None:
    snap = SnapshotBuilder(route_tables="scoped").build(config(), [sidecar()])["productpage-v1"]
    listeners = decoded(snap, "LDS", snake_case=True)
    outbound = next(v for k, v in listeners.items() if k.startswith("0.0.0.0_"))
    manager = outbound["filter_chains"][0]["filters"][0]["typed_config"]
    extractor = manager["scoped_routes"]["scope_key_builder"]["fragments"][0]["header_value_extractor"]
    assert extractor == {"name": ":authority", "element_separator": ":", "index": 0}
    assert "rds" not in manager
    internal = listeners[INTERNAL_LISTENER]
    assert "internal_listener" in internal and "address" not in internal
    assert INTERNAL_CLUSTER in snap.of(types.CLUSTER)
    dapr = decoded(snap, "RDS", snake_case=True)["dapr-http"]["virtual_hosts"][0]["routes"]
    invoke = next(r for r in dapr if r["name"] == "invoke/svc00001")
    assert invoke["route"]["cluster"] == INTERNAL_CLUSTER
    assert invoke["route"]["host_rewrite_literal"] == f"{FQDN}:8080"
    assert invoke["route"]["prefix_rewrite"] == "/"


def test_a_weight_change_touches_one_route_table_and_nothing_else() -> None:
    text = generate_mesh(20)
    builder = SnapshotBuilder(route_tables="scoped")
    proxy = sidecar()
    before = builder.build(config(text=text), [proxy])[proxy.id]
    changed = text.replace("weight: 90}", "weight: 80}", 1).replace("weight: 10}", "weight: 20}", 1)
    after = builder.build(config(text=changed), [proxy])[proxy.id]
    for type_url in types.TYPE_ORDER:
        old, new = before.of(type_url), after.of(type_url)
        differ = sorted(n for n in new if n not in old or new[n].version != old[n].version)
        expected = (
            [_table_of(before, "svc00000.default.svc.cluster.local")] if type_url == types.ROUTE else []
        )
        assert differ == expected, (types.short_name(type_url), differ)
        assert set(old) == set(new)


def test_short_names_only_resolve_in_the_proxy_namespace() -> None:
    other = sidecar("elsewhere", namespace="other")
    snaps = SnapshotBuilder(route_tables="scoped").build(config(), [sidecar(), other])
    assert "outbound/svc00001" in snaps["productpage-v1"].of(types.SCOPED_ROUTE)
    assert "outbound/svc00001" not in snaps["elsewhere"].of(types.SCOPED_ROUTE)
    assert "outbound/svc00001.default" in snaps["elsewhere"].of(types.SCOPED_ROUTE)


def test_auto_switches_on_mesh_size() -> None:
    small = SnapshotBuilder().build(config(5), [sidecar()])["productpage-v1"]
    assert "outbound" in small.of(types.ROUTE) and not small.of(types.SCOPED_ROUTE)
    big = SnapshotBuilder().build(config(AUTO_MIN_SERVICES), [sidecar()])["productpage-v1"]
    assert "outbound" not in big.of(types.ROUTE) and big.of(types.SCOPED_ROUTE)


WILDCARD_SE = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
"""


def test_wildcard_hosts_keep_the_single_table() -> None:
    snap = SnapshotBuilder(route_tables="scoped").build(
        config(text=generate_mesh(5) + WILDCARD_SE), [sidecar()]
    )["productpage-v1"]
    assert "outbound" in snap.of(types.ROUTE) and not snap.of(types.SCOPED_ROUTE)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="route_tables: 'fast'"):
        SnapshotBuilder(route_tables="fast")


def _sidecar_doc(mode: str = "REGISTRY_ONLY") -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress: [{{hosts: ["./svc00001.default.svc.cluster.local", "./svc00002.default.svc.cluster.local"]}}]
  outboundTrafficPolicy: {{mode: {mode}}}
"""


def test_a_sidecar_scope_gets_scopes_for_what_it_sees_only() -> None:
    text = generate_mesh(5) + _sidecar_doc()
    snap = SnapshotBuilder(route_tables="scoped").build(config(text=text), [sidecar()])["productpage-v1"]
    hosts = {
        v["name"].split(":")[0]
        for name, table in decoded(snap, "RDS").items()
        if name.startswith("outbound|")
        for v in table["virtualHosts"]
        if v["name"] != "block_all"
    }
    assert hosts == {f"svc0000{i}.default.svc.cluster.local" for i in (1, 2)}, hosts
    assert "outbound/svc00001" in snap.of(types.SCOPED_ROUTE)
    assert not any("svc00003" in n for n in snap.of(types.SCOPED_ROUTE))


def test_allow_any_keeps_the_single_table() -> None:
    text = generate_mesh(5) + _sidecar_doc("ALLOW_ANY")
    snap = SnapshotBuilder(route_tables="scoped").build(config(text=text), [sidecar()])["productpage-v1"]
    assert "outbound" in snap.of(types.ROUTE) and not snap.of(types.SCOPED_ROUTE)


def test_the_settings_offer_the_modes_the_builder_knows() -> None:
    from xds.controlplane.settings import ROUTE_TABLE_MODES

    assert set(ROUTE_TABLE_MODES) == set(MODES)
