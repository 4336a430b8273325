"""Every snapshot the translator builds is consistent (xds/controlplane/consistency.py: what a listener,
cluster or scoped route names is in the same snapshot), and a snapshot missing one is caught by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfg_helpers import compile_text
from golden_harness import _build, load_case

from xds import types
from xds.controlplane import consistency
from xds.types import Resource, Snapshot

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))


def _snapshots(case: str) -> dict[str, Snapshot]:
    golden = load_case(GOLDEN, case)
    result = compile_text(golden.text, f"{case}.in.yaml")
    assert result.config is not None
    return _build(golden, result.config)


@pytest.mark.parametrize("case", CASES)
def test_every_golden_snapshot_is_consistent(case: str) -> None:
    for pid, snap in _snapshots(case).items():
        assert consistency.problems(snap) == [], pid


def _without(snap: Snapshot, type_url: str, name: str) -> Snapshot:
    """A deliberately broken translation: the snapshot less one resource."""
    kept: list[Resource] = [r for m in snap.resources.values() for r in m.values()]
    assert any(r.type_url == type_url and r.name == name for r in kept), (type_url, name)
    return Snapshot.build(r for r in kept if not (r.type_url == type_url and r.name == name))


def _one(case: str) -> Snapshot:
    return next(iter(_snapshots(case).values()))


def test_a_missing_route_table_is_named_with_the_listener_naming_it() -> None:
    snap = _one("routing")
    listener, route = "0.0.0.0_15001", "outbound"
    assert route in snap.of(types.ROUTE)
    found = consistency.problems(_without(snap, types.ROUTE, route))
    assert found == [f"LDS {listener} names RDS '{route}', which is not in the snapshot"]


def test_a_missing_endpoint_assignment_is_named() -> None:
    snap = _one("routing")
    eds = sorted(snap.of(types.ENDPOINT))[0]
    found = consistency.problems(_without(snap, types.ENDPOINT, eds))
    assert len(found) == 1 and f"names EDS '{eds}'" in found[0] and found[0].startswith("CDS ")


def test_a_missing_scoped_route_table_is_named() -> None:
    snap = _one("scoped-tables")
    scoped = next(iter(snap.of(types.SCOPED_ROUTE)))
    table = consistency.references(snap.of(types.SCOPED_ROUTE)[scoped]).routes[0]
    found = consistency.problems(_without(snap, types.ROUTE, table))
    assert f"SRDS {scoped} names RDS {table!r}, which is not in the snapshot" in found


def test_a_missing_workload_secret_is_named_and_an_agents_secret_is_not_required() -> None:
    snap = _one("mtls-strict")
    found = consistency.problems(_without(snap, types.SECRET, "default"))
    assert found and all("names SDS 'default'" in p for p in found), found
    agent = _one("mtls-agent-sds")  # the agent serves `default` itself: the snapshot has no secret
    assert not agent.of(types.SECRET) and consistency.problems(agent) == []


def test_a_missing_gateway_credential_is_named() -> None:
    snap = _one("gateway-https")
    secret = sorted(snap.of(types.SECRET))[0]
    found = consistency.problems(_without(snap, types.SECRET, secret))
    assert found and all(p.startswith("LDS ") and repr(secret) in p for p in found), found


def test_unreadable_bytes_are_a_problem_not_a_crash() -> None:
    snap = _one("routing")
    kept = [r for m in snap.resources.values() for r in m.values() if r.type_url != types.LISTENER]
    broken = Snapshot.build([*kept, Resource.make(types.LISTENER, "bad", b"\x0a\xff")])
    found = consistency.problems(broken)
    assert len(found) == 1 and found[0].startswith("LDS bad: unreadable"), found


DNS_SERVICE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: google, namespace: default}
spec:
  hosts: [www.googleapis.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
"""


def test_a_proxyless_client_in_a_mesh_with_a_dns_service_gets_a_consistent_snapshot() -> None:
    """A gRPC client resolves clusters over EDS only: a DNS service (no endpoints over EDS) gets no EDS
    cluster naming an assignment that never comes (the snapshot would not be published)."""
    golden = load_case(GOLDEN, "proxyless-client")
    result = compile_text(golden.text + "\n---\n" + DNS_SERVICE, "proxyless.yaml")
    assert result.config is not None
    for pid, snap in _build(golden, result.config).items():
        assert consistency.problems(snap) == [], pid
        assert not any("googleapis" in n for n in snap.of(types.ENDPOINT)), pid
