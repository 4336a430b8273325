"""Model stage: schema (types, unknown fields), duplicates, host resolution, services, honoured fields."""

from __future__ import annotations

from cfg_helpers import compile_text, errors, warnings

from xds.model import honoured_fields
from xds.pipeline import compile_documents, load_text

SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: r1}
spec: {address: 10.0.0.1, labels: {app: reviews, version: v1}, weight: 2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-ns, namespace: prod}
spec: {address: 10.0.0.9, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
"""


def vs(http: str) -> str:
    return (
        SE
        + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{http}
"""
    )


def test_unknown_field_names_the_exact_path() -> None:
    result = compile_text(
        vs(
            "  - route:\n    - {destination: {host: reviews}, weight: 50}\n"
            "    - {destination: {host: reviews, subsett: v1}, weight: 50}"
        )
    )
    assert [(d.field, d.code, d.location.kind) for d in errors(result)] == [
        ("spec.http[0].route[1].destination.subsett", "unknown-field", "VirtualService")
    ]
    assert result.config is None


def test_wrong_type_names_field_and_file() -> None:
    result = compile_text(vs("  - route: [{destination: {host: reviews}}]\n    timeout: 5"), "types.yaml")
    (err,) = errors(result)
    assert err.field == "spec.http[0].timeout" and err.location.file == "types.yaml"
    assert "duration" in err.message


def test_duplicate_name_names_both_files() -> None:
    docs_a, _ = load_text(SE, "a.yaml")
    docs_b, _ = load_text(SE.split("---")[0], "b.yaml")
    result = compile_documents(docs_a + docs_b)
    (err,) = errors(result)
    assert err.location.file == "b.yaml" and "a.yaml" in err.message and err.code == "duplicate"


def test_short_hosts_resolve_relative_to_the_config_namespace() -> None:
    result = compile_text(vs("  - route: [{destination: {host: reviews}}]"))
    assert result.config is not None
    (v,) = result.config.virtual_services
    assert v.hosts == ("reviews.default.svc.cluster.local",)
    assert v.http[0].route[0].destination.host == "reviews.default.svc.cluster.local"
    assert result.config.destination_rules[0].host == "reviews.default.svc.cluster.local"


def test_service_selects_workload_entries_of_its_namespace_by_labels() -> None:
    result = compile_text(SE)
    assert result.config is not None
    (svc,) = result.config.services
    assert [(e.address, e.weight, dict(e.labels)["version"]) for e in svc.endpoints] == [
        ("10.0.0.1", 2, "v1")
    ]


def test_unsupported_fields_warn_and_are_not_errors() -> None:
    result = compile_text(
        vs(
            "  - route: [{destination: {host: reviews}}]\n    fault: {abort: {httpStatus: 500, percent: 5}}\n"
            "    match: [{statPrefix: x, sourceLabels: {app: x}}]"
        )
    )
    assert result.ok
    assert {(d.field, d.code) for d in warnings(result)} == {
        ("spec.http[0].fault.abort.percent", "unsupported"),
        ("spec.http[0].match[0].statPrefix", "unsupported"),
    }
    assert all("not supported yet" in d.message for d in warnings(result))


def test_honoured_field_record() -> None:
    fields = honoured_fields("VirtualService")
    assert fields["spec.http[].route[].weight"] is True
    assert fields["spec.http[].fault"] is True
    assert fields["spec.http[].match[].sourceLabels"] is True  # per-proxy route filtering
    assert fields["spec.http[].match[].gateways"] is False
    assert fields["spec.tcp[].route[].destination.host"] is True
    assert "spec.http[].match[].sourceLabels.x" not in fields
    assert honoured_fields("DestinationRule")["spec.trafficPolicy.outlierDetection.consecutive5xxErrors"]
    assert honoured_fields("Unknown") == {}


def test_unchanged_documents_yield_identical_objects_across_compiles() -> None:
    first = compile_text(SE)
    second = compile_text(SE.replace("weight: 2", "weight: 3"))
    assert first.config is not None and second.config is not None
    assert first.config.destination_rules[0] is second.config.destination_rules[0]
    assert first.config.workload_entries[0] is not second.config.workload_entries[0]
