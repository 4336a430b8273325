"""Endpoint health in EDS: WorkloadEntry status conditions (what registration.py writes) reach the CLA."""

from __future__ import annotations

from typing import Any

import pytest
from cfg_helpers import sidecar
from envoy_data_plane.envoy.config.core import v3 as core
from envoy_data_plane.envoy.config.endpoint import v3 as ep
from translate_oracle import build_naive

from xds import types
from xds.diagnostics import Location
from xds.pipeline import SnapshotBuilder, compile_documents, load_text
from xds.sources import RawDocument

MESH = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
  OUTLIER
"""
OUTLIER = "trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}}"


def _mesh(statuses: dict[str, dict[str, Any]], outlier: bool) -> list[RawDocument]:
    """WorkloadEntries as registration.py stores them (the status of a loaded file is dropped)."""
    docs, diags = load_text(MESH.replace("OUTLIER", OUTLIER if outlier else ""), "mesh.yaml")
    assert not diags
    for i, (address, status) in enumerate(sorted(statuses.items())):
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": f"r{i}", "namespace": "default"},
            "spec": {
                "address": address,
                "ports": {"http": 15006},
                "labels": {"app": "reviews", "version": "v1"},
            },
            **({"status": status} if status else {}),
        }
        where = Location(file="registration", kind="WorkloadEntry", namespace="default", name=f"r{i}")
        docs.append(RawDocument(where, body["apiVersion"], "WorkloadEntry", body))
    return docs


def _endpoints(docs: list[RawDocument], cluster: str) -> dict[str, core.HealthStatus]:
    result = compile_documents(docs)
    assert result.config is not None, [str(d) for d in result.diagnostics]
    config = result.config
    proxy = sidecar()
    fast = SnapshotBuilder().build(config, [proxy])[proxy.id]
    naive = build_naive(config, proxy)
    assert fast.resources[types.ENDPOINT][cluster].body == naive.resources[types.ENDPOINT][cluster].body
    cla = ep.ClusterLoadAssignment().parse(fast.resources[types.ENDPOINT][cluster].body)
    return {
        lb.endpoint.address.socket_address.address: lb.health_status
        for group in cla.endpoints
        for lb in group.lb_endpoints
    }


UNHEALTHY = {"conditions": [{"type": "Healthy", "status": "False", "reason": "probe failed"}]}
HEALTHY = {"conditions": [{"type": "Healthy", "status": "True"}]}
DRAINING = {"conditions": [{"type": "Healthy", "status": "True"}, {"type": "Draining", "status": "True"}]}


@pytest.mark.parametrize("outlier", [False, True], ids=["plain", "outlier-detection"])
@pytest.mark.parametrize("cluster", ["outbound|9080||reviews.default.svc.cluster.local",
                                     "outbound|9080|v1|reviews.default.svc.cluster.local"])  # fmt: skip
def test_unhealthy_entry_leaves_eds_and_draining_one_is_marked(outlier: bool, cluster: str) -> None:
    text = _mesh({"10.0.0.1": {}, "10.0.0.2": HEALTHY, "10.0.0.3": UNHEALTHY, "10.0.0.4": DRAINING}, outlier)
    assert _endpoints(text, cluster) == {
        "10.0.0.1": core.HealthStatus.UNKNOWN,
        "10.0.0.2": core.HealthStatus.UNKNOWN,
        "10.0.0.4": core.HealthStatus.DRAINING,
    }


def test_recovered_entry_is_back_in_eds() -> None:
    cluster = "outbound|9080||reviews.default.svc.cluster.local"
    assert set(_endpoints(_mesh({"10.0.0.1": UNHEALTHY}, False), cluster)) == set()
    assert set(_endpoints(_mesh({"10.0.0.1": HEALTHY}, False), cluster)) == {"10.0.0.1"}


def test_status_written_in_a_config_file_is_ignored() -> None:
    """Only the control plane sets health: a user's WorkloadEntry file cannot mark a peer's entry."""
    text = (
        MESH.replace("OUTLIER", "")
        + """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: r0, namespace: default}
spec: {address: 10.0.0.9, ports: {http: 15006}, labels: {app: reviews, version: v1}}
status: {conditions: [{type: Draining, status: 'True'}]}
"""
    )
    docs, _ = load_text(text, "mesh.yaml")
    cluster = "outbound|9080||reviews.default.svc.cluster.local"
    assert _endpoints(docs, cluster) == {"10.0.0.9": core.HealthStatus.UNKNOWN}
