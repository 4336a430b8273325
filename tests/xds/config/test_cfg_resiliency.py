"""Dapr Resiliency -> Envoy settings of the Dapr invoke routes (pure mapping + the translated RDS)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from envoy_data_plane.envoy.config.route import v3 as rte

from capabilities.daprspec import RetrySpec, parse_retry, trip_threshold
from xds.diagnostics import Severity
from xds.model.meta import Meta
from xds.model.parse import resiliency as parse_resiliency
from xds.translate import resiliency as res


def _doc(name: str, spec: dict, scopes: list[str] | None = None, ns: str = "default"):
    body = {"spec": spec, "scopes": scopes or []}
    return parse_resiliency(Meta("Resiliency", ns, name), spec, body)


SPEC = {
    "policies": {
        "timeouts": {"fast": "500ms"},
        "retries": {
            "three": {"policy": "constant", "duration": "200ms", "maxRetries": 3},
            "forever": {"policy": "exponential", "maxInterval": "15s", "maxRetries": -1},
            "none": {"policy": "constant", "maxRetries": 0},
            "codes": {"policy": "constant", "maxRetries": 2, "matching": {"httpStatusCodes": "429,502-503"}},
        },
        "circuitBreakers": {
            "cb": {"maxRequests": 1, "interval": "8s", "timeout": "45s", "trip": "consecutiveFailures > 5"},
            "odd": {"trip": "requests > 10 && totalFailures > 2"},
        },
    },
    "targets": {"apps": {"orders": {"timeout": "fast", "retry": "three", "circuitBreaker": "cb"}}},
}


def test_constant_retry_and_timeout() -> None:
    policy = res.invoke_policy([_doc("r", SPEC)], ["orders", "orders.default"])
    assert policy is not None and policy.source == "Resiliency default/r"
    assert policy.timeout == timedelta(milliseconds=500)
    assert policy.retry == res.EnvoyRetry(3, timedelta(milliseconds=200), timedelta(milliseconds=200))
    assert policy.breaker == res.BreakerSpec(6, timedelta(seconds=8), timedelta(seconds=45))
    action = res.apply(rte.RouteAction(cluster="c", timeout=timedelta(seconds=3)), policy)
    assert action.timeout == timedelta(milliseconds=500) and action.max_grpc_timeout == action.timeout
    assert action.retry_policy.num_retries == 3
    assert action.retry_policy.retry_on == res.RETRY_ON_ALL
    assert action.retry_policy.retry_back_off.base_interval == timedelta(milliseconds=200)


def _retry(name: str) -> RetrySpec:
    return parse_retry(SPEC["policies"]["retries"][name], f"spec.policies.retries.{name}")


def test_exponential_unlimited_and_status_codes() -> None:
    forever = res.retry_spec(_retry("forever"))
    assert forever == res.EnvoyRetry(res.UNLIMITED_RETRIES, res.DEFAULT_INITIAL, timedelta(seconds=15))
    codes = res.retry_spec(_retry("codes"))
    assert codes is not None and codes.status_codes == (429, 502, 503)
    assert res.retry_policy(codes).retry_on == res.RETRY_ON_CODES
    assert res.retry_spec(_retry("none")) is None
    assert res.retry_spec(parse_retry({"policy": "constant"}, "r")) == res.EnvoyRetry(
        res.UNLIMITED_RETRIES, res.DEFAULT_CONSTANT, res.DEFAULT_CONSTANT
    )


def test_trip_expressions() -> None:
    assert trip_threshold("consecutiveFailures > 5") == 6
    assert trip_threshold("consecutiveFailures >= 2") == 2
    assert trip_threshold("requests > 10") is None
    od = res.outlier_detection(res.BreakerSpec(6, timedelta(seconds=8), timedelta(seconds=45)))
    assert od.consecutive_5xx == 6 and od.base_ejection_time == timedelta(seconds=45)


def test_unparseable_trip_is_a_warning_naming_the_field() -> None:
    diags = res.check_resiliencies([_doc("r", SPEC)])
    assert [d.field for d in diags] == ["spec.policies.circuitBreakers.odd.trip"]
    assert "consecutiveFailures > N" in diags[0].message


def test_compile_documents_reports_the_trip_warning() -> None:
    from cfg_helpers import compile_text

    text = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r, namespace: default}
spec:
  policies:
    circuitBreakers: {odd: {trip: "requests > 10"}}
  targets: {apps: {orders: {circuitBreaker: odd}}}
"""
    result = compile_text(text, "r.yaml")
    assert result.ok and result.config is not None  # a warning never refuses the config
    trips = [d for d in result.diagnostics if d.code == "resiliency-trip"]
    assert [(d.field, d.severity) for d in trips] == [
        ("spec.policies.circuitBreakers.odd.trip", Severity.WARNING)
    ]
    assert trips[0].location.file.endswith("r.yaml")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        # each used to be applied anyway: a crash (ValueError) while translating, no timeout, the sign
        # dropped (500ms), the unreadable code dropped
        ({"retries": {"three": {"maxRetries": "many"}}}, "spec.policies.retries.three.maxRetries"),
        ({"timeouts": {"fast": "soon"}}, "spec.policies.timeouts.fast"),
        ({"timeouts": {"fast": "-500ms"}}, "spec.policies.timeouts.fast"),
        (
            {"retries": {"three": {"matching": {"httpStatusCodes": "429,5xx"}}}},
            "spec.policies.retries.three.matching.httpStatusCodes",
        ),
    ],
)
def test_a_resiliency_dapr_cannot_read_is_reported_and_not_applied(patch: dict, field: str) -> None:
    doc = _doc("r", {**SPEC, "policies": {**SPEC["policies"], **patch}})
    assert res.invoke_policy([doc], ["orders"]) is None  # daprd skips such a document too
    diags = [d for d in res.check_resiliencies([doc]) if d.code == "resiliency-invalid"]
    assert [(d.field, d.severity) for d in diags] == [(field, Severity.WARNING)]
    assert "not applied to service invocation" in diags[0].message


def test_both_products_read_a_bare_number_as_seconds() -> None:
    """The control plane used to ignore `timeout: 3` (no timeout) where the capability service waits 3 s."""
    from capabilities.resiliency import Resiliency as CapabilityResiliency

    spec = {"policies": {"timeouts": {"t": 3}}, "targets": {"apps": {"orders": {"timeout": "t"}}}}
    policy = res.invoke_policy([_doc("r", spec)], ["orders"])
    assert policy is not None and policy.timeout == timedelta(seconds=3)
    capability = CapabilityResiliency([{"kind": "Resiliency", "metadata": {"name": "r"}, "spec": spec}])
    assert capability.for_app("orders").timeout_s == 3


def test_an_unreadable_resiliency_is_a_warning_and_the_routes_build() -> None:
    from cfg_helpers import compile_text, sidecar
    from translate_oracle import build_naive

    from xds import types
    from xds.pipeline import SnapshotBuilder

    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [orders]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: 18080}}]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r, namespace: default}
spec:
  policies: {retries: {three: {maxRetries: many}}}
  targets: {apps: {orders: {retry: three}}}
"""
    result = compile_text(text, "r.yaml")
    assert result.ok and result.config is not None
    invalid = [d for d in result.diagnostics if d.code == "resiliency-invalid"]
    assert [(d.field, d.severity) for d in invalid] == [
        ("spec.policies.retries.three.maxRetries", Severity.WARNING)
    ]
    assert invalid[0].location.file.endswith("r.yaml")
    without = compile_text(text.split("---")[0], "r.yaml").config
    assert without is not None
    proxy = sidecar()

    def invoke_route(config: Any, build: str) -> rte.Route:
        snap = (
            SnapshotBuilder().build(config, [proxy])[proxy.id]
            if build == "fast"
            else build_naive(config, proxy)
        )
        rc = rte.RouteConfiguration().parse(snap.resources[types.ROUTE]["dapr-http"].body)
        return next(r for r in rc.virtual_hosts[0].routes if r.name == "invoke/orders")

    for build in ("fast", "naive"):  # the invoke route is the one without any Resiliency
        assert invoke_route(result.config, build) == invoke_route(without, build)


def test_scopes_and_namespace_select_the_documents() -> None:
    docs = [_doc("a", SPEC, ["checkout"]), _doc("b", SPEC), _doc("c", SPEC, ns="other")]
    assert [r.meta.name for r in res.applicable(docs, "default", ("checkout",))] == ["a", "b"]
    assert [r.meta.name for r in res.applicable(docs, "default", ("cart",))] == ["b"]
    assert res.invoke_policy(res.applicable(docs, "default", ("cart",)), ["billing"]) is None


def test_translated_routes_use_the_callers_policy() -> None:
    from cfg_helpers import compile_text, sidecar
    from translate_oracle import build_naive

    from xds import types
    from xds.pipeline import SnapshotBuilder

    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [orders]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: 18080}}]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r, namespace: default}
spec:
  policies: {timeouts: {fast: 500ms}}
  targets: {apps: {orders: {timeout: fast}}}
scopes: [SCOPE]
"""
    for scope, expected in (("productpage", timedelta(milliseconds=500)), ("reviews", timedelta(0))):
        config = compile_text(text.replace("SCOPE", scope), "r.yaml").config
        assert config is not None
        proxy = sidecar()
        for snap in (SnapshotBuilder().build(config, [proxy])[proxy.id], build_naive(config, proxy)):
            rc = rte.RouteConfiguration().parse(snap.resources[types.ROUTE]["dapr-http"].body)
            invoke = next(r for r in rc.virtual_hosts[0].routes if r.name == "invoke/orders")
            assert invoke.route.timeout == expected, scope


def test_circuit_breaker_gets_an_invoke_cluster_for_callers_in_scope() -> None:
    from cfg_helpers import compile_text, sidecar
    from envoy_data_plane.envoy.config.cluster import v3 as clu
    from envoy_data_plane.envoy.config.endpoint import v3 as ep
    from translate_oracle import build_naive

    from xds import types
    from xds.pipeline import SnapshotBuilder

    text = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [orders]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: 18080}}]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r, namespace: default}
spec:
  policies: {circuitBreakers: {cb: {timeout: 45s, trip: consecutiveFailures >= 2}}}
  targets: {apps: {orders: {circuitBreaker: cb}}}
scopes: [SCOPE]
"""
    name = res.invoke_cluster_name("orders.default.svc.cluster.local", 8080)
    outbound = "outbound|8080||orders.default.svc.cluster.local"
    for scope, in_scope in (("productpage", True), ("reviews", False)):
        config = compile_text(text.replace("SCOPE", scope), "r.yaml").config
        assert config is not None
        proxy = sidecar()
        fast, naive = SnapshotBuilder().build(config, [proxy])[proxy.id], build_naive(config, proxy)
        for snap in (fast, naive):
            rc = rte.RouteConfiguration().parse(snap.resources[types.ROUTE]["dapr-http"].body)
            invoke = next(r for r in rc.virtual_hosts[0].routes if r.name == "invoke/orders")
            assert invoke.route.cluster == (name if in_scope else outbound), scope
            assert (name in snap.resources[types.CLUSTER]) is in_scope
            assert (name in snap.resources[types.ENDPOINT]) is in_scope
        if in_scope:
            cluster = clu.Cluster().parse(fast.resources[types.CLUSTER][name].body)
            assert cluster.outlier_detection.consecutive_5xx == 2
            assert cluster.outlier_detection.base_ejection_time == timedelta(seconds=45)
            assert cluster.eds_cluster_config.service_name == name
            cla = ep.ClusterLoadAssignment().parse(fast.resources[types.ENDPOINT][name].body)
            source = ep.ClusterLoadAssignment().parse(fast.resources[types.ENDPOINT][outbound].body)
            assert cla.cluster_name == name and cla.endpoints == source.endpoints
            for t in (types.CLUSTER, types.ENDPOINT):  # the reference path builds the same bytes
                assert fast.resources[t][name].body == naive.resources[t][name].body
