"""Envoy tracing from Istio's meshConfig.extensionProviders + Telemetry `tracing` (xds/translate/tracing.py).

Provider resolution and sampling follow istiod (root namespace -> namespace -> workload selector; the first
provider; defaultProviders when no Telemetry names one); nothing is emitted when the config does not ask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xds import types
from xds.analyze.report import analyze_paths, render_text
from xds.cache.snapshot import Snapshot
from xds.model.mesh import MeshConfig
from xds.pipeline import CompileResult, SnapshotBuilder, compile_documents, load_text
from xds.proxy import ProxyIdentity
from xds.translate.decode import resource_to_dict

HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
OTEL_TYPE = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"

SERVICES = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 127.0.0.1}]
"""
MESH = """---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: otel
      opentelemetry: {service: 127.0.0.1, port: 4317}
    - name: collector
      opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317, maxTagLength: 99}
    - name: zipkin
      zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
"""
MESH_DEFAULT = (
    MESH
    + """    defaultProviders: {tracing: [otel]}
    defaultConfig: {tracing: {sampling: 10}}
"""
)


def telemetry(name: str, namespace: str, tracing: str, selector: str = "") -> str:
    sel = f"\n  selector: {{matchLabels: {selector}}}" if selector else ""
    return f"""---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec:{sel}
  tracing: {tracing}
"""


def _proxy(proxy_id: str, namespace: str, labels: dict[str, str], port: int) -> ProxyIdentity:
    return ProxyIdentity.from_node(
        proxy_id,
        {
            "mecha": {
                "mode": "sidecar",
                "namespace": namespace,
                "outbound_port": port,
                "dapr_http_port": port + 1,
                "capabilities_http": "127.0.0.1:3501",
                "labels": labels,
                "apps": [{"name": labels["app"], "app_port": port + 2, "inbound_port": port + 3}],
            }
        },
    )


PRODUCTPAGE = _proxy("productpage-v1", "default", {"app": "productpage", "version": "v1"}, 15001)
REVIEWS = _proxy("reviews-v1", "default", {"app": "reviews", "version": "v1"}, 15101)
OTHER_NS = _proxy("shop-v1", "shop", {"app": "shop"}, 15201)


def compile_ok(text: str) -> CompileResult:
    docs, diags = load_text(text, "tracing.yaml")
    assert not diags, [str(d) for d in diags]
    result = compile_documents(docs)
    assert result.ok and result.config is not None, [str(d) for d in result.errors]
    return result


def config_of(text: str) -> MeshConfig:
    config = compile_ok(text).config
    assert config is not None
    return config


def decoded(snap: Snapshot, short: str) -> dict[str, dict[str, Any]]:
    type_url = types.FROM_SHORT[short]
    return {name: resource_to_dict(type_url, r.body) for name, r in snap.of(type_url).items()}


def tracing_by_listener(snap: Snapshot) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for name, listener in decoded(snap, "LDS").items():
        for chain in listener.get("filterChains", []):
            for f in chain.get("filters", []):
                if f.get("typedConfig", {}).get("@type") == HCM_TYPE:
                    out[name] = f["typedConfig"].get("tracing")
    return out


def snapshots(text: str, *proxies: ProxyIdentity) -> dict[str, Snapshot]:
    return SnapshotBuilder().build(config_of(text), list(proxies or (PRODUCTPAGE, REVIEWS, OTHER_NS)))


def sampling(block: dict[str, Any] | None) -> float | None:
    return None if block is None else float(block["randomSampling"].get("value", 0.0))


def test_no_tracing_config_emits_nothing() -> None:
    # no mesh config, and a mesh config whose providers nobody selects: no tracing block, no collector cluster
    for text in (SERVICES, SERVICES + MESH):
        for snap in snapshots(text).values():
            assert set(tracing_by_listener(snap).values()) == {None}
            assert not [c for c in snap.of(types.CLUSTER) if c.startswith("outbound|4317||")]


def test_mesh_wide_telemetry_traces_every_hcm_with_opentelemetry() -> None:
    text = (
        SERVICES
        + MESH
        + telemetry("mesh", "istio-system", "[{providers: [{name: otel}], randomSamplingPercentage: 100}]")
    )
    snap = snapshots(text)["productpage-v1"]
    blocks = tracing_by_listener(snap)
    assert set(blocks) == {"0.0.0.0_15001", "virtualInbound_15004", "dapr_http_15002"}
    for block in blocks.values():
        assert block is not None
        assert block["randomSampling"] == {"value": 100.0}
        assert block["clientSampling"] == {"value": 100.0} and block["overallSampling"] == {"value": 100.0}
        provider = block["provider"]
        assert provider["name"] == "envoy.tracers.opentelemetry"
        otel = provider["typedConfig"]
        assert otel["@type"] == OTEL_TYPE
        assert otel["grpcService"]["envoyGrpc"] == {
            "clusterName": "outbound|4317||127.0.0.1",
            "authority": "127.0.0.1",
        }
        assert otel["serviceName"] == "productpage.default"
    cluster = decoded(snap, "CDS")["outbound|4317||127.0.0.1"]
    assert cluster["type"] == "STATIC"
    assert "explicitHttpConfig" in str(cluster["typedExtensionProtocolOptions"])  # OTLP/gRPC needs HTTP/2
    addr = cluster["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"]
    assert addr == {"address": "127.0.0.1", "portValue": 4317}


def test_namespace_then_workload_override_provider_and_sampling() -> None:
    text = (
        SERVICES
        + MESH
        + telemetry("mesh", "istio-system", "[{providers: [{name: otel}], randomSamplingPercentage: 5}]")
        + telemetry("ns", "default", "[{randomSamplingPercentage: 50}]")
        + telemetry("rv", "default", "[{providers: [{name: collector}]}]", "{app: reviews}")
    )
    snaps = snapshots(text)
    pp = tracing_by_listener(snaps["productpage-v1"])["0.0.0.0_15001"]
    rv = tracing_by_listener(snaps["reviews-v1"])["0.0.0.0_15101"]
    shop = tracing_by_listener(snaps["shop-v1"])["0.0.0.0_15201"]
    assert sampling(pp) == 50.0  # namespace overrides the root's sampling, keeps its provider
    assert pp is not None and pp["provider"]["typedConfig"]["grpcService"]["envoyGrpc"]["clusterName"] == (
        "outbound|4317||127.0.0.1"
    )
    assert sampling(rv) == 50.0  # the selector changes the provider only
    otel = rv["provider"]["typedConfig"] if rv else {}
    assert otel["grpcService"]["envoyGrpc"]["clusterName"] == (
        "outbound|4317||otel-collector.observability.svc.cluster.local"
    )
    assert rv is not None and rv["maxPathTagLength"] == 99
    assert (
        decoded(snaps["reviews-v1"], "CDS")["outbound|4317||otel-collector.observability.svc.cluster.local"][
            "type"
        ]
        == "STRICT_DNS"
    )
    assert sampling(shop) == 5.0  # another namespace: the root only


def test_default_providers_and_default_sampling_without_telemetry() -> None:
    snap = snapshots(SERVICES + MESH_DEFAULT, PRODUCTPAGE)["productpage-v1"]
    assert {sampling(b) for b in tracing_by_listener(snap).values()} == {10.0}


def test_default_sampling_is_istiods_one_percent() -> None:
    text = SERVICES + MESH + telemetry("mesh", "istio-system", "[{providers: [{name: otel}]}]")
    snap = snapshots(text, PRODUCTPAGE)["productpage-v1"]
    assert {sampling(b) for b in tracing_by_listener(snap).values()} == {1.0}


def test_match_mode_and_disable_span_reporting() -> None:
    text = (
        SERVICES
        + MESH_DEFAULT
        + telemetry("ns", "default", "[{match: {mode: SERVER}, disableSpanReporting: true}]")
    )
    blocks = tracing_by_listener(snapshots(text, PRODUCTPAGE)["productpage-v1"])
    assert blocks["virtualInbound_15004"] is None  # SERVER side disabled
    assert sampling(blocks["0.0.0.0_15001"]) == 10.0  # CLIENT side keeps the defaults


def test_collector_that_is_a_mesh_service_uses_its_outbound_cluster() -> None:
    collector = """---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: otel, namespace: observability}
spec:
  hosts: [otel-collector.observability.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 4317, name: grpc-otlp, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1}]
"""
    text = (
        SERVICES + collector + MESH + telemetry("mesh", "istio-system", "[{providers: [{name: collector}]}]")
    )
    snap = snapshots(text, PRODUCTPAGE)["productpage-v1"]
    cluster = decoded(snap, "CDS")["outbound|4317||otel-collector.observability.svc.cluster.local"]
    assert cluster["type"] == "EDS"  # the mesh's own cluster, as istiod uses it


def test_unknown_provider_warns_and_traces_nothing() -> None:
    text = SERVICES + MESH + telemetry("mesh", "istio-system", "[{providers: [{name: jaeger}]}]")
    result = compile_ok(text)
    warnings = [d for d in result.diagnostics if d.code == "unknown-provider"]
    assert warnings and warnings[0].field == "spec.tracing[0].providers[0].name"
    assert set(tracing_by_listener(snapshots(text, PRODUCTPAGE)["productpage-v1"]).values()) == {None}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            telemetry("t", "default", "[{randomSamplingPercentage: 150}]"),
            "spec.tracing[0].randomSamplingPercentage",
        ),
        (telemetry("t", "default", "[{providers: otel}]"), "spec.tracing[0].providers"),
        (telemetry("t", "default", "[{match: {mode: BOTH}}]"), "spec.tracing[0].match.mode"),
        (
            MESH.replace("port: 4317}", "port: 0}", 1),
            "data.mesh.extensionProviders[0].opentelemetry.port",
        ),
        (
            MESH.replace("service: 127.0.0.1, ", "", 1),
            "data.mesh.extensionProviders[0].opentelemetry.service",
        ),
        (MESH.replace("mesh: |", "mesh: |\n    [not, a, map", 1), "data.mesh"),
    ],
)
def test_bad_tracing_config_is_refused_naming_the_field(text: str, field: str) -> None:
    docs, diags = load_text(SERVICES + text, "tracing.yaml")
    assert not diags
    result = compile_documents(docs)
    assert not result.ok
    assert field in [d.field for d in result.errors], [str(d) for d in result.errors]


def test_telemetry_metrics_and_access_logging_are_reported_not_supported() -> None:
    text = (
        SERVICES
        + """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: default}
spec:
  metrics: [{providers: [{name: prometheus}]}]
  accessLogging: [{providers: [{name: envoy}]}]
"""
    )
    result = compile_ok(text)
    unsupported = {d.field for d in result.diagnostics if d.code == "unsupported"}
    assert unsupported == {"spec.metrics", "spec.accessLogging"}


def test_analyze_honours_tracing_and_reports_metrics_dropped(tmp_path: Path) -> None:
    tracing_only = SERVICES + MESH + telemetry("mesh", "istio-system", "[{providers: [{name: otel}]}]")
    (tmp_path / "mesh.yaml").write_text(tracing_only)
    report = analyze_paths([tmp_path])
    assert not report.would_drop, render_text(report)
    rows = {(f.kind, f.path): f.status for f in report.fields}
    assert rows[("Telemetry", "spec.tracing")] == "honoured"
    (tmp_path / "mesh.yaml").write_text(tracing_only + "  metrics: [{providers: [{name: prometheus}]}]\n")
    report = analyze_paths([tmp_path])
    assert report.would_drop
    assert [(f.path, f.status) for f in report.dropped] == [("spec.metrics", "unsupported")]
