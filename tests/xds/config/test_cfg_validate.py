"""Graph validation: every bad reference names file, document, field and reason."""

from __future__ import annotations

from cfg_helpers import compile_text, errors, warnings

from xds.pipeline import compile_documents, load_text

BASE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 10.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
"""


def with_vs(http: str, name: str = "reviews", hosts: str = "[reviews]") -> str:
    return (
        BASE
        + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: {hosts}
  http:
{http}
"""
    )


def codes(result) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(d.code, d.field) for d in errors(result)]


def warning_codes(result) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(d.code, d.field) for d in warnings(result)]


def test_dangling_destination_host() -> None:
    text = with_vs("  - route: [{destination: {host: ratings}}]")
    lenient = compile_text(text, "vs.yaml")  # istiod accepts it: the route answers 503 meanwhile
    assert lenient.ok and lenient.config is not None
    assert warning_codes(lenient) == [("dangling-host", "spec.http[0].route[0].destination.host")]
    result = compile_text(text, "vs.yaml", strict=True)
    (err,) = errors(result)
    assert (err.code, err.field, err.location.file, err.location.document) == (
        "dangling-host",
        "spec.http[0].route[0].destination.host",
        "vs.yaml",
        2,
    )
    assert "ratings.default.svc.cluster.local" in err.message


def test_dangling_mirror_host() -> None:
    text = with_vs("  - route: [{destination: {host: reviews}}]\n    mirror: {host: shadow}")
    assert warning_codes(compile_text(text)) == [("dangling-host", "spec.http[0].mirror.host")]
    result = compile_text(text, strict=True)
    assert codes(result) == [("dangling-host", "spec.http[0].mirror.host")]


def test_unknown_subset_names_the_rule() -> None:
    text = with_vs("  - route: [{destination: {host: reviews, subset: v9}}]")
    assert compile_text(text).ok
    result = compile_text(text, strict=True)
    (err,) = errors(result)
    assert (err.code, err.field) == ("unknown-subset", "spec.http[0].route[0].destination.subset")
    assert "DestinationRule default/reviews defines: v1" in err.message


def test_conflicting_destination_rules_name_both_files() -> None:
    docs, _ = load_text(BASE, "a.yaml")
    extra, _ = load_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews-2}\n"
        "spec: {host: reviews.default.svc.cluster.local}\n",
        "b.yaml",
    )
    result = compile_documents(docs + extra)
    (err,) = errors(result)
    assert (err.code, err.field, err.location.file) == ("dr-conflict", "spec.host", "b.yaml")
    assert "a.yaml" in err.message


def test_two_virtual_services_for_one_host() -> None:
    text = with_vs("  - route: [{destination: {host: reviews}}]") + with_vs(
        "  - route: [{destination: {host: reviews}}]", name="reviews-2"
    ).replace(BASE, "")
    result = compile_text(text)  # istiod: the oldest routes sidecars; no timestamps: namespace/name order
    assert result.ok and result.config is not None
    assert result.config.mesh_routes_by_host["reviews.default.svc.cluster.local"].meta.name == "reviews"
    (warn,) = warnings(result)
    assert (warn.code, warn.field, warn.location.name) == ("vs-duplicate", "spec.hosts[0]", "reviews-2")
    assert "default/reviews" in warn.message
    assert codes(compile_text(text, strict=True)) == [("vs-duplicate", "spec.hosts[0]")]


def test_delegate_cycle_is_reported_once_with_the_path() -> None:
    text = (
        with_vs("  - delegate: {name: a}")
        + with_vs("  - delegate: {name: b}", "a", "[]").replace(BASE, "")
        + with_vs("  - delegate: {name: a}", "b", "[]").replace(BASE, "")
    )
    result = compile_text(text)
    cycles = [d for d in errors(result) if d.code == "delegate-cycle"]
    assert len(cycles) == 1
    assert cycles[0].field == "spec.http[0].delegate"
    assert "default/a -> default/b -> default/a" in cycles[0].message


def test_unreachable_routes_and_duplicate_matches_are_warnings() -> None:
    result = compile_text(
        with_vs(
            "  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: reviews}}]\n"
            "  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: reviews}}]\n"
            "  - route: [{destination: {host: reviews}}]\n"
            "  - match: [{uri: {prefix: /late}}]\n    route: [{destination: {host: reviews}}]"
        )
    )
    assert result.ok
    assert [(d.code, d.field) for d in warnings(result)] == [
        ("duplicate-match", "spec.http[1].match[0]"),
        ("unreachable-route", "spec.http[3]"),
    ]


def test_destination_port_must_be_exposed() -> None:
    text = with_vs("  - route: [{destination: {host: reviews, port: {number: 9999}}}]")
    assert warning_codes(compile_text(text)) == [("unknown-port", "spec.http[0].route[0].destination.port")]
    result = compile_text(text, strict=True)
    assert codes(result) == [("unknown-port", "spec.http[0].route[0].destination.port")]


def test_weights_must_sum_to_100_when_set() -> None:
    result = compile_text(
        with_vs(
            "  - route:\n    - {destination: {host: reviews}, weight: 60}\n"
            "    - {destination: {host: reviews, subset: v1}, weight: 30}"
        )
    )
    assert codes(result) == [("bad-weight", "spec.http[0].route")]
    assert "sum to 90" in errors(result)[0].message
    unset = compile_text(
        with_vs(
            "  - route:\n    - {destination: {host: reviews}}\n"
            "    - {destination: {host: reviews, subset: v1}}"
        )
    )
    assert unset.ok


DAPR = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.redis, version: v1}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: s1}
spec: {pubsubname: statestore, topic: t}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: s2}
spec: {pubsubname: missing, topic: t}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec: {targets: {components: {nosuch: {outbound: {retry: x}}}}}
"""


def test_dapr_references() -> None:
    result = compile_text(DAPR, "dapr.yaml")
    got = sorted((d.location.name, d.code, d.field) for d in errors(result))
    assert got == [
        ("r", "unknown-component", "spec.targets.components.nosuch"),
        ("s1", "not-pubsub", "spec.pubsubname"),
        ("s2", "unknown-component", "spec.pubsubname"),
    ]


def test_static_endpoints_must_be_ip_addresses_and_vs_hosts_need_not_be_services() -> None:
    result = compile_text(
        BASE.replace("address: 10.0.0.1", "address: reviews.local")
        + with_vs("  - route: [{destination: {host: reviews}}]", hosts="[reviews, nowhere]").replace(BASE, "")
    )
    assert codes(result) == [("bad-address", "spec.endpoints[0].address")]
    # istiod serves a host that is no service as a domain of its own virtual host: no "not applied" warning
    assert warnings(result) == []


def test_a_match_on_the_client_only_is_no_catch_all() -> None:
    """sourceLabels / sourceNamespace select proxies (istiod sourceMatchHTTP): the routes after such a match
    still serve every other client, so they are not unreachable."""
    for condition in ("{sourceLabels: {app: reviews}}", "{sourceNamespace: testing}"):
        result = compile_text(
            with_vs(
                f"  - match: [{condition}]\n    route: [{{destination: {{host: reviews, subset: v1}}}}]\n"
                "  - route: [{destination: {host: reviews}}]"
            )
        )
        assert result.ok
        assert warning_codes(result) == [], condition


def test_a_real_catch_all_still_makes_later_routes_unreachable() -> None:
    """A catch-all that also names a client keeps the warning for routes after an unconditional one."""
    result = compile_text(
        with_vs(
            "  - match: [{sourceLabels: {app: reviews}}]\n    route: [{destination: {host: reviews}}]\n"
            "  - match: [{uri: {prefix: /}}]\n    route: [{destination: {host: reviews}}]\n"
            "  - route: [{destination: {host: reviews, subset: v1}}]"
        )
    )
    assert warning_codes(result) == [("unreachable-route", "spec.http[2]")]
    # a route with a client match and a plain catch-all match is a catch-all for every client
    result = compile_text(
        with_vs(
            "  - match: [{sourceNamespace: testing}, {uri: {regex: '.*'}}]\n"
            "    route: [{destination: {host: reviews}}]\n"
            "  - route: [{destination: {host: reviews, subset: v1}}]"
        )
    )
    assert warning_codes(result) == [("unreachable-route", "spec.http[1]")]


def test_golden_source_match_case_has_no_unreachable_warning() -> None:
    from pathlib import Path

    text = (Path(__file__).parent / "golden" / "source-match.in.yaml").read_text()
    result = compile_text(text.split("---\n", 1)[1])
    assert [d for d in warnings(result) if d.code == "unreachable-route"] == []


def _none_entry(extra: str, hosts: str = "[legacy.example.internal]") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy}}
spec:
  hosts: {hosts}
  resolution: NONE
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
{extra}"""


def test_resolution_none_says_where_connections_go() -> None:
    """istiod's ORIGINAL_DST has no meaning without capture: analyze/apply say what Mecha does instead."""
    cases = {
        "  endpoints: [{address: 10.0.0.9}]\n": "its endpoints",
        "  addresses: [10.1.0.0/16, 10.2.0.3]\n": "its addresses 10.2.0.3",
        "": "each host, resolved by DNS",
    }
    for extra, where in cases.items():
        result = compile_text(_none_entry(extra))
        assert result.ok
        (diag,) = warnings(result)
        assert (diag.code, diag.field) == ("no-original-destination", "spec.resolution")
        assert f"connections go to {where}" in diag.message
    wildcard = compile_text(
        _none_entry("  addresses: [10.1.0.0/16]\n", "[exact.example.internal, '*.example.internal']")
    )
    assert warning_codes(wildcard) == [
        ("no-original-destination", "spec.resolution"),
        ("no-original-destination", "spec.hosts[1]"),
    ]


def test_passthrough_load_balancer_is_reported() -> None:
    text = BASE.replace("subsets: [{name: v1, labels: {version: v1}}]", "").replace(
        "spec: {host: reviews, }",
        "spec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: PASSTHROUGH}\n"
        "    portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: PASSTHROUGH}}]",
    )
    assert warning_codes(compile_text(text)) == [
        ("no-original-destination", "spec.trafficPolicy.loadBalancer.simple"),
        ("no-original-destination", "spec.trafficPolicy.portLevelSettings[0].loadBalancer.simple"),
    ]
