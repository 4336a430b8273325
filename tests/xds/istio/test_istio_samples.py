"""Istio's own samples and test data (tests/xds/istio_samples, sources in its README) through the translator,
compared with what istiod produces for the same input: names, matches, actions, percentages."""

from __future__ import annotations

from pathlib import Path

from istio_helpers import compile_text, errors, routes_of, service_entry, snapshot

from xds.analyze import analyze_paths

SAMPLES = Path(__file__).parent.parent / "istio_samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def bookinfo_services() -> str:
    """Stand-ins for bookinfo's Kubernetes Services (Mecha reads ServiceEntries)."""
    return "".join(service_entry(n) for n in ("productpage", "reviews", "ratings", "details"))


def test_bookinfo_delay_legacy_percent_matches_istiod() -> None:
    text = bookinfo_services() + "---\n" + sample("bookinfo-destination-rule-all.yaml")
    snap = snapshot(text + "---\n" + sample("bookinfo-ratings-test-delay.yaml"))
    routes = routes_of(snap, "ratings.default.svc.cluster.local:9080")
    assert len(routes) == 2
    jason, rest = routes
    assert jason["match"]["headers"] == [{"name": "end-user", "string_match": {"exact": "jason"}}]
    assert jason["route"]["cluster"] == "outbound|9080|v1|ratings.default.svc.cluster.local"
    fault = jason["typed_per_filter_config"]["envoy.filters.http.fault"]
    # istiod: legacy delay.percent n -> {numerator: n, denominator: HUNDRED} (HUNDRED is the proto default)
    assert fault["delay"] == {"fixed_delay": "7s", "percentage": {"numerator": 100}}
    assert "abort" not in fault
    assert "typed_per_filter_config" not in rest
    assert rest["match"] == {"prefix": "/"}


def test_bookinfo_abort_legacy_percent_is_ignored_like_istiod() -> None:
    text = bookinfo_services() + "---\n" + sample("bookinfo-destination-rule-all.yaml")
    snap = snapshot(text + "---\n" + sample("bookinfo-ratings-test-abort.yaml"))
    fault = routes_of(snap, "ratings.default.svc.cluster.local:9080")[0]["typed_per_filter_config"]
    # istiod TranslateFault ignores the deprecated abort.percent: the abort has no percentage
    assert fault["envoy.filters.http.fault"]["abort"] == {"http_status": 500}


def test_bookinfo_subsets_become_istiod_cluster_names() -> None:
    snap = snapshot(bookinfo_services() + "---\n" + sample("bookinfo-destination-rule-all.yaml"))
    from istio_helpers import decoded

    names = set(decoded(snap, "CDS"))
    for host, subsets in (
        ("reviews", ["v1", "v2", "v3"]),
        ("ratings", ["v1", "v2", "v2-mysql", "v2-mysql-vm"]),
    ):
        fqdn = f"{host}.default.svc.cluster.local"
        assert f"outbound|9080||{fqdn}" in names
        assert {f"outbound|9080|{s}|{fqdn}" for s in subsets} <= names
    eds = decoded(snap, "EDS")["outbound|9080|v2|reviews.default.svc.cluster.local"]
    addresses = [
        e["endpoint"]["address"]["socket_address"]["address"] for e in eds["endpoints"][0]["lb_endpoints"]
    ]
    assert addresses == ["10.0.0.2"]  # subset labels select endpoints server-side


def test_testdata_fault_snake_case_and_dangling_subset() -> None:
    """rule-fault-injection.yaml: `source_labels` (proto field name, accepted by istiod's protojson), a route
    to host `c` whose DR does not exist (istiod: a cluster name with no endpoints; Mecha warns, and refuses it
    in strict mode)."""
    result = compile_text(sample("testdata-rule-fault-injection.yaml"), "rule-fault-injection.yaml")
    fields = {(d.field, d.code) for d in result.diagnostics}
    assert not any(f.endswith("sourceLabels") for f, _ in fields)  # recognised and honoured, not unknown
    assert not any(d.code == "unknown-field" for d in result.diagnostics)
    assert result.ok
    assert ("spec.http[0].route[0].destination.host", "dangling-host") in fields
    result = compile_text(sample("testdata-rule-fault-injection.yaml"), "rule-fault-injection.yaml", True)
    problems = errors(result)
    assert problems and all(d.location.file == "rule-fault-injection.yaml" for d in problems)
    assert any(
        d.field == "spec.http[0].route[0].destination.host" and "c.default" in d.message for d in problems
    )


def test_testdata_redirect_matches_istiod() -> None:
    snap = snapshot(sample("testdata-rule-redirect-injection.yaml"), None)
    (route,) = routes_of(snap, "redirect.test.istio.io:8080")
    assert route["match"]["headers"] == [{"name": "testredirect", "string_match": {"exact": "enabled"}}]
    assert route["redirect"] == {"host_redirect": "redirect2.test.istio.io", "path_redirect": "/new/path"}
    assert "route" not in route  # MOVED_PERMANENTLY is the proto default: not serialized


def test_testdata_cors_legacy_allow_origin_matches_istiod() -> None:
    text = sample("testdata-rule-default-route-cors-policy.yaml")
    result = compile_text(text)
    assert any(d.code == "skipped" and d.location.kind == "ExternalService" for d in result.diagnostics)
    se = service_entry("cors.test.istio.io", port=80).replace("[cors.test.istio.io]", "[cors.test.istio.io]")
    snap = snapshot(text + se)
    (route,) = routes_of(snap, "cors.test.istio.io:80")
    cors = route["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["allow_origin_string_match"] == [{"exact": "http://foo.example"}]
    assert cors["allow_methods"] == "POST,GET,OPTIONS"
    assert cors["allow_headers"] == "content-type" and cors["expose_headers"] == "x-custom-header"
    assert cors["max_age"] == "300" and cors["allow_credentials"] is True
    assert cors["filter_enabled"] == {"default_value": {"numerator": 100}}
    assert cors["forward_not_matching_preflights"] is True


def test_testdata_virtual_service_all_weighted_ports_resolve_independently() -> None:
    se = """---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: service3, namespace: default}
spec:
  hosts: [service3]
  resolution: STATIC
  ports: [{number: 80, name: http}, {number: 81, name: http-alt}]
  endpoints: [{address: 10.0.0.3, labels: {version: v1}}, {address: 10.0.0.4, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: service3, namespace: default}
spec:
  host: service3
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""
    snap = snapshot(sample("testdata-virtual-service-all.yaml") + se)
    cookie, weighted = routes_of(snap, "service3.default.svc.cluster.local:80")
    assert (
        cookie["match"]["headers"][0]["string_match"]["safe_regex"]["regex"] == "^(.*?;)?(user=dev-123)(;.*)?"
    )
    assert cookie["route"]["cluster"] == "outbound|81||service3.default.svc.cluster.local"
    clusters = weighted["route"]["weighted_clusters"]["clusters"]
    # destination 1 names port 81; destination 2 has none and takes the listener's port (80)
    assert [(c["name"], c["weight"]) for c in clusters] == [
        ("outbound|81|v1|service3.default.svc.cluster.local", 80),
        ("outbound|80|v2|service3.default.svc.cluster.local", 20),
    ]
    assert weighted["decorator"]["operation"] == "all:80/*"


def test_se_example_tls_sni_routing_gets_sni_filter_chains() -> None:
    from istio_helpers import decoded, proxy

    who = proxy(namespace="seexamples", tcp_ports={"443": 19443})
    snap = snapshot(sample("testdata-se-example-tls.yaml"), who)
    listener = decoded(snap, "LDS")["0.0.0.0_443"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19443}
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    chains = {
        tuple(c["filter_chain_match"]["server_names"]): c["filters"][0]["typed_config"]["cluster"]
        for c in listener["filter_chains"]
    }
    assert chains == {
        ("api.dropboxapi.com",): "outbound|443||api.dropboxapi.com",
        ("www.googleapis.com",): "outbound|443||www.googleapis.com",
        ("api.facebook.com",): "outbound|443||api.facebook.com",
    }


def test_analyze_reports_every_sample() -> None:
    report = analyze_paths([SAMPLES])
    statuses = {(f.file.rsplit("/", 1)[-1], f.path): f.status for f in report.fields}
    assert statuses[("bookinfo-ratings-test-abort.yaml", "spec.http[0].fault.abort.percent")] == "unsupported"
    assert statuses[("bookinfo-ratings-test-delay.yaml", "spec.http[0].fault.delay.percent")] == "differs"
    assert statuses[("testdata-rule-redirect-injection.yaml", "spec.http[0].redirect.uri")] == "honoured"
    assert (
        statuses[("testdata-rule-fault-injection.yaml", "spec.http[0].match[0].sourceLabels")] == "honoured"
    )
    assert not any(f.status == "unknown" for f in report.fields)  # proto-style names are recognised
    assert any(s.kind == "ExternalService" for s in report.skipped)
    assert report.would_drop  # abort.percent is dropped
