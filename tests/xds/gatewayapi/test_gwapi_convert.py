"""HTTPRoute -> VirtualService http routes: matches, the spec's precedence across rules and routes, weights,
filters, timeouts, and which hostnames a route serves on which listener."""

from __future__ import annotations

from datetime import timedelta

import pytest
from gwapi_helpers import GATEWAY, convert_text, route_line, services, svc, vs_by_host

from xds.gatewayapi.invalid import INVALID_HTTP_BACKEND
from xds.model.resources import StringMatch
from xds.model.traffic import HeaderOps, Percent

BACKENDS = services(svc("a"), svc("b"), svc("c"), svc("mirror"))


def route(rules: str, name: str = "r", hostnames: str = "", extra_meta: str = "") -> str:
    hosts = f"\n  hostnames: {hostnames}" if hostnames else ""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default{extra_meta}}}
spec:
  parentRefs: [{{name: web}}]{hosts}
  rules:
{rules}---
"""


def lines(text: str, host: str = "*") -> list[str]:
    conversion, _ = convert_text(GATEWAY + text, BACKENDS)
    return [route_line(r) for r in vs_by_host(conversion)[host].http]


# ---- matches -----------------------------------------------------------------------------------------


def test_path_prefix_matches_whole_segments() -> None:
    """`/foo` must match /foo, /foo/ and /foo/bar but not /foobar: an exact and a `/foo/` prefix match."""
    rules = (
        "  - matches: [{path: {type: PathPrefix, value: /foo/}}]\n    backendRefs: [{name: a, port: 8080}]\n"
    )
    assert lines(route(rules)) == [
        f"default.r.0: exact /foo, port 80 -> {svc('a')}:8080",
        f"default.r.0: prefix /foo/, port 80 -> {svc('a')}:8080",
    ]


def test_exact_regex_header_query_and_method_matches() -> None:
    rules = """  - matches:
    - path: {type: Exact, value: /exact}
    - path: {type: RegularExpression, value: '/re/[0-9]+'}
      headers:
      - {name: X-Env, value: canary}
      - {name: x-env, value: ignored}
      - {type: RegularExpression, name: x-v, value: 'v[12]'}
      queryParams: [{name: debug, value: "1"}]
      method: POST
    backendRefs: [{name: a, port: 8080}]
"""
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    http = vs_by_host(conversion)["*"].http
    exact, regex = http[0].matches[0], http[1].matches[0]
    assert exact.uri == StringMatch("exact", "/exact") and exact.port == 80
    assert regex.uri == StringMatch("regex", "/re/[0-9]+")
    # header names are case-insensitive: the first of two equivalent entries wins
    assert regex.headers == (
        ("x-env", StringMatch("exact", "canary")),
        ("x-v", StringMatch("regex", "v[12]")),
    )
    assert regex.query_params == (("debug", StringMatch("exact", "1")),)
    assert regex.method == StringMatch("exact", "POST")


def test_a_rule_without_matches_matches_every_path() -> None:
    assert lines(route("  - backendRefs: [{name: a, port: 8080}]\n")) == [
        f"default.r.0: prefix /, port 80 -> {svc('a')}:8080"
    ]


# ---- precedence ----------------------------------------------------------------------------------------


def test_precedence_across_rules_follows_the_spec() -> None:
    """Exact, then the longest prefix, then method, then most headers, then most query params."""
    rules = """  - name: catch-all
    backendRefs: [{name: a, port: 8080}]
  - name: query
    matches: [{path: {value: /p}, queryParams: [{name: q, value: "1"}]}]
    backendRefs: [{name: a, port: 8080}]
  - name: headers
    matches: [{path: {value: /p}, headers: [{name: h, value: "1"}]}]
    backendRefs: [{name: a, port: 8080}]
  - name: method
    matches: [{path: {value: /p}, method: GET}]
    backendRefs: [{name: a, port: 8080}]
  - name: longer
    matches: [{path: {value: /p/longer}}]
    backendRefs: [{name: a, port: 8080}]
  - name: exact
    matches: [{path: {type: Exact, value: /p}}]
    backendRefs: [{name: a, port: 8080}]
  - name: regex
    matches: [{path: {type: RegularExpression, value: /p.*}}]
    backendRefs: [{name: a, port: 8080}]
"""
    order = [line.split(":")[0] for line in lines(route(rules))]
    assert order == [
        "exact",
        "longer",
        "longer",
        "method",
        "method",
        "headers",
        "headers",
        "query",
        "query",
        "catch-all",
        "regex",  # implementation-specific: after prefixes, as istiod orders them
    ]


def test_ties_go_to_the_oldest_route_then_namespace_and_name() -> None:
    same = "  - matches: [{path: {value: /same}}]\n    backendRefs: [{name: %s, port: 8080}]\n"
    text = (
        route(same % "a", name="zeta", extra_meta=", creationTimestamp: '2024-01-01T00:00:00Z'")
        + route(same % "b", name="alpha", extra_meta=", creationTimestamp: '2024-06-01T00:00:00Z'")
        + route(same % "c", name="beta", extra_meta=", creationTimestamp: '2024-06-01T00:00:00Z'")
    )
    order = [line.split(":")[0] for line in lines(text)][::2]  # one per match (exact and prefix halves)
    assert order == ["default.zeta.0", "default.alpha.0", "default.beta.0"]


# ---- backends and weights ------------------------------------------------------------------------------


def test_weighted_backends_keep_their_ratio() -> None:
    got = lines(
        route("  - backendRefs: [{name: a, port: 8080, weight: 80}, {name: b, port: 8080, weight: 20}]\n")
    )
    assert got == [f"default.r.0: prefix /, port 80 -> {svc('a')}:8080@80 + {svc('b')}:8080@20"]


def test_relative_weights_stay_the_integers_written() -> None:
    rules = (
        "  - backendRefs: [{name: a, port: 8080}, {name: b, port: 8080}, {name: c, port: 8080, weight: 1}]\n"
    )
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    weights = [d.weight for d in vs_by_host(conversion)["*"].http[0].route]
    assert weights == [1, 1, 1]  # Envoy takes relative weights as they are (no percentages, no rounding)


def test_a_zero_weight_backend_gets_nothing_and_all_zero_answers_500() -> None:
    one = lines(route("  - backendRefs: [{name: a, port: 8080, weight: 0}, {name: b, port: 8080}]\n"))
    assert one == [f"default.r.0: prefix /, port 80 -> {svc('b')}:8080"]
    none = lines(
        route("  - backendRefs: [{name: a, port: 8080, weight: 0}, {name: b, port: 8080, weight: 0}]\n")
    )
    assert none == ["default.r.0: prefix /, port 80 -> answer 500"]


def test_a_rule_whose_backends_are_all_missing_answers_500() -> None:
    got = lines(route("  - backendRefs: [{name: nowhere, port: 8080}]\n"))
    assert got == ["default.r.0: prefix /, port 80 -> answer 500"]


def test_an_istio_hostname_backend_is_a_registry_host() -> None:
    known = {**BACKENDS, **services("api.example.com", port=443)}
    rules = (
        "  - backendRefs: [{group: networking.istio.io, kind: Hostname, name: api.example.com, port: 443}]\n"
    )
    conversion, _ = convert_text(GATEWAY + route(rules), known)
    assert [route_line(r) for r in vs_by_host(conversion)["*"].http] == [
        "default.r.0: prefix /, port 80 -> api.example.com:443"
    ]


# ---- filters -------------------------------------------------------------------------------------------


def test_header_modifiers_on_the_rule_and_on_a_backend() -> None:
    rules = """  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Set, value: s}, {name: x-set, value: ignored}]
        add: [{name: X-Add, value: a}]
        remove: [X-Drop]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: X-Resp, value: r}]}
    backendRefs:
    - name: a
      port: 8080
      weight: 1
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Backend, value: a}]}}]
    - {name: b, port: 8080, weight: 1}
"""
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    http = vs_by_host(conversion)["*"].http[0]
    assert http.headers is not None
    assert http.headers.request == HeaderOps(set=(("X-Set", "s"),), add=(("X-Add", "a"),), remove=("X-Drop",))
    assert http.headers.response == HeaderOps(set=(("X-Resp", "r"),))
    first, second = http.route
    assert first.headers is not None and first.headers.request.set == (("X-Backend", "a"),)
    assert second.headers is None


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        # no scheme, no port: the listener's scheme and port (80: not written into Location)
        (
            "{hostname: other.example.com}",
            "authority='other.example.com', scheme='http', port=None, port_from_request=True, code=302",
        ),
        # a scheme without port: that scheme's well-known port (Envoy's default: none written)
        ("{scheme: https, statusCode: 301}", "scheme='https', port=None, port_from_request=False, code=301"),
        ("{port: 8443, statusCode: 308}", "scheme='http', port=8443, port_from_request=False, code=308"),
        ("{path: {type: ReplaceFullPath, replaceFullPath: /new}}", "uri='/new'"),
    ],
)
def test_redirects(redirect: str, expected: str) -> None:
    rules = f"""  - matches: [{{path: {{type: Exact, value: /old}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {redirect}}}]
"""
    (line,) = lines(route(rules))
    assert line.startswith("default.r.0: exact /old, port 80 -> redirect Redirect(") and expected in line


PREFIX_CHANGE = """  - matches: [{path: {value: /foo}}]
    filters:
    - type: %s
      %s: {path: {type: ReplacePrefixMatch, replacePrefixMatch: '%s'}}
"""


@pytest.mark.parametrize(
    ("replacement", "exact", "prefix"),
    [("/xyz", "/xyz", "/xyz/"), ("/xyz/", "/xyz", "/xyz/"), ("/", "/", "/"), ("", "/", "/")],
)
def test_prefix_replacing_redirect_and_rewrite_follow_the_spec_table(
    replacement: str, exact: str, prefix: str
) -> None:
    """ReplacePrefixMatch on PathPrefix /foo (httproute_types.go's table): /foo -> /xyz, /foo/ -> /xyz/,
    /foo/bar -> /xyz/bar; with `/` or an empty replacement the prefix goes: /foo -> /, /foo/bar -> /bar."""
    redirect = PREFIX_CHANGE % ("RequestRedirect", "requestRedirect", replacement)
    conversion, _ = convert_text(GATEWAY + route(redirect), BACKENDS)
    half_exact, half_prefix = vs_by_host(conversion)["*"].http
    assert half_exact.redirect is not None and half_prefix.redirect is not None
    assert (half_exact.redirect.prefix, half_prefix.redirect.prefix) == (exact, prefix)
    rewrite = PREFIX_CHANGE % ("URLRewrite", "urlRewrite", replacement)
    rewrite += "    backendRefs: [{name: a, port: 8080}]\n"
    conversion, _ = convert_text(GATEWAY + route(rewrite), BACKENDS)
    half_exact, half_prefix = vs_by_host(conversion)["*"].http
    assert (half_exact.rewrite_uri, half_prefix.rewrite_uri) == (exact, prefix)


def test_rewrite_full_path_and_hostname() -> None:
    rules = """  - filters:
    - type: URLRewrite
      urlRewrite:
        hostname: internal.example.com
        path: {type: ReplaceFullPath, replaceFullPath: /v2/all}
    backendRefs: [{name: a, port: 8080}]
"""
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    http = vs_by_host(conversion)["*"].http[0]
    assert http.rewrite_authority == "internal.example.com"
    assert http.regex_rewrite is not None and http.regex_rewrite.substitution == "/v2/all"


def test_request_mirrors_with_percent_and_fraction() -> None:
    rules = """  - filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: mirror, port: 8080}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: b, port: 8080}, percent: 25}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: c, port: 8080}, fraction: {numerator: 1, denominator: 3}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: nowhere, port: 8080}}}
    backendRefs: [{name: a, port: 8080}]
"""
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    mirrors = vs_by_host(conversion)["*"].http[0].mirrors
    assert [(m.destination.host, m.percent) for m in mirrors] == [
        (svc("mirror"), Percent(1_000_000, True)),
        (svc("b"), Percent(250_000, True)),
        (svc("c"), Percent(333_333, True)),
    ]  # the unresolved mirror is dropped (status: ResolvedRefs False)


def test_timeouts() -> None:
    rules = "  - timeouts: {request: 10s, backendRequest: 2s}\n    backendRefs: [{name: a, port: 8080}]\n"
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    http = vs_by_host(conversion)["*"].http[0]
    assert http.timeout == timedelta(seconds=10)
    assert http.retries is not None and http.retries.per_try_timeout == timedelta(seconds=2)
    rules = "  - timeouts: {request: 1m500ms}\n    backendRefs: [{name: a, port: 8080}]\n"
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    http = vs_by_host(conversion)["*"].http[0]
    assert http.timeout == timedelta(seconds=60.5) and http.retries is None


def test_a_rule_with_a_filter_mecha_cannot_apply_is_not_served() -> None:
    """Dropped, not served without its filter (an auth or CORS rule must never answer as if absent)."""
    rules = """  - matches: [{path: {value: /cors}}]
    filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]
    backendRefs: [{name: a, port: 8080}]
  - backendRefs: [{name: b, port: 8080}]
"""
    assert lines(route(rules)) == [f"default.r.1: prefix /, port 80 -> {svc('b')}:8080"]


# ---- hostnames and listeners ---------------------------------------------------------------------------


LISTENERS = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: mecha
  listeners:
  - {name: any, port: 80, protocol: HTTP}
  - {name: wild, port: 80, protocol: HTTP, hostname: '*.example.com'}
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
  - {name: admin, port: 8080, protocol: HTTP, hostname: admin.internal}
---
"""


def _attached(name: str, section: str, hostnames: str, backend: str) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: web, sectionName: {section}}}]
  hostnames: {hostnames}
  rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]
---
"""


def test_route_hostnames_intersect_the_listener_hostname() -> None:
    text = LISTENERS + _attached("r", "wild", "[a.example.com, '*.example.com', other.org]", "a")
    conversion, _ = convert_text(text, BACKENDS)
    hosts = sorted(vs_by_host(conversion))
    # other.org does not match *.example.com: ignored on that listener; listener hostnames own their requests
    assert hosts == ["*", "*.example.com", "a.example.com", "admin.internal", "foo.example.com"]


def test_listener_isolation_keeps_a_more_specific_listener_s_hosts() -> None:
    """A route on the `*.example.com` listener naming foo.example.com does not serve it: requests for it
    belong to the foo.example.com listener (404 there while no route attaches to it)."""
    text = LISTENERS + _attached("r", "wild", "[foo.example.com, bar.example.com]", "a")
    conversion, _ = convert_text(text, BACKENDS)
    by_host = vs_by_host(conversion)
    assert [route_line(r) for r in by_host["bar.example.com"].http] == [
        f"default.r.0: prefix /, port 80 -> {svc('a')}:8080"
    ]
    assert by_host["foo.example.com"].http == ()


def test_a_hostname_of_one_port_keeps_the_routes_other_ports_give_it() -> None:
    """admin.internal exists on port 8080 only; on port 80 its virtual host must answer what port 80's `*`
    routes answer, not 404 (a name under `*.example.com` would get that listener's routes there)."""
    text = LISTENERS + _attached("any", "any", "[]", "a") + _attached("admin", "admin", "[]", "b")
    conversion, _ = convert_text(text, BACKENDS)
    admin = vs_by_host(conversion)["admin.internal"]
    assert [route_line(r) for r in admin.http] == [
        f"default.any.0: prefix /, port 80 -> {svc('a')}:8080",
        f"default.admin.0: prefix /, port 8080 -> {svc('b')}:8080",
    ]
    gateway = next(g for g in conversion.gateways)
    assert '"number": 80' in gateway.spec_json and '"number": 8080' in gateway.spec_json


def test_allowed_routes_from_same_and_all() -> None:
    other_ns = route("  - backendRefs: [{name: a, port: 8080}]\n").replace(
        "namespace: default}", "namespace: shop}"
    )
    conversion, _ = convert_text(GATEWAY + other_ns.replace("{name: web}", "{name: web, namespace: default}"))
    assert vs_by_host(conversion)["*"].http == ()  # from: Same (the default)
    everyone = GATEWAY.replace("protocol: HTTP}", "protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}")
    conversion, _ = convert_text(
        everyone + other_ns.replace("{name: web}", "{name: web, namespace: default}")
    )
    assert [route_line(r) for r in vs_by_host(conversion)["*"].http] == [
        "shop.r.0: prefix /, port 80 -> answer 500"
    ]


def test_gateways_of_another_class_are_not_converted() -> None:
    conversion, diags = convert_text(GATEWAY.replace("gatewayClassName: mecha", "gatewayClassName: nginx"))
    assert conversion.gateways == [] and conversion.virtual_services == []
    assert any("gatewayClassName 'nginx' is not Mecha's" in str(d) for d in conversion.diagnostics)
    assert not diags


def test_small_weights_and_invalid_shares_are_served_exactly() -> None:
    """A 1-in-1001 weight keeps its share and a missing backend's share answers 500 (a cluster-less target):
    nothing is approximated any more."""
    rules = """  - backendRefs:
    - {name: a, port: 8080, weight: 999}
    - {name: b, port: 8080, weight: 1}
    - {name: gone, port: 8080, weight: 1}
"""
    conversion, _ = convert_text(GATEWAY + route(rules), BACKENDS)
    assert [route_line(r) for r in vs_by_host(conversion)["*"].http] == [
        f"default.r.0: prefix /, port 80 -> {svc('a')}:8080@999 + {svc('b')}:8080@1"
        f" + {INVALID_HTTP_BACKEND}:None@1"
    ]
    assert [d.message for d in conversion.diagnostics if d.code == "gateway-api-approximated"] == []


def test_a_selector_listener_without_selector_is_reported() -> None:
    conversion, _ = convert_text(
        GATEWAY.replace("protocol: HTTP}", "protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}")
    )
    assert any("without a selector matches no namespace" in d.message for d in conversion.diagnostics)
