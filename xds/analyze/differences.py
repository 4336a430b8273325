"""The "What differs, and why" section of docs/migration-from-istio.md, as data.

Each difference names the fields it speaks about with the status it claims for them; the field tables
(xds.model.specs, which also drive `mecha analyze` and the honoured-fields table) must agree, so the prose
and the table cannot contradict each other: tests/xds/istio/test_docs_table.py checks both the claims and that
the document holds exactly this text (`python -m xds.analyze.doc_table --write` regenerates it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xds.model.schema import field_table
from xds.model.specs import SPEC_BY_KIND

HONOURED, DIFFERS, UNSUPPORTED = "honoured", "differs", "unsupported"


@dataclass(frozen=True)
class Claim:
    kind: str
    path: str  # as field_table() spells it: spec.http[].match[].sourceLabels
    status: str


@dataclass(frozen=True)
class Difference:
    title: str
    text: str  # markdown, one paragraph (wrapped when rendered)
    claims: tuple[Claim, ...] = ()


def _p(text: str) -> str:
    """One paragraph from an indented triple-quoted block."""
    return " ".join(text.split())


def _vs(path: str, status: str) -> Claim:
    return Claim("VirtualService", path, status)


def _sidecar(path: str, status: str) -> Claim:
    return Claim("Sidecar", path, status)


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "Stricter input",
        _p(
            """
            istiod accepts some config that Envoy later refuses or that silently does nothing; Mecha
            refuses it with file, document, field and reason (list in the [config
            reference](config-reference.md#supported-kinds)): mistyped kinds (with a "did you mean"),
            unknown API groups, duplicate YAML keys, names that are not DNS-1123, regexes RE2 or Envoy's
            program-size limit refuse, unknown Dapr component types, and VirtualServices with no `hosts`
            that nothing delegates to. A delegate VirtualService (no `hosts`) is applied together with the
            VirtualService that delegates to it.
            """
        ),
    ),
    Difference(
        "References to what does not exist (yet)",
        _p(
            """
            As istiod, a route to a host, subset or port that does not exist is accepted: `mecha apply`,
            `mecha analyze`, `mecha proxy-status` and the API say which route (every one of them) and the
            route answers 503 until the target exists (its cluster name is istiod's, with no cluster
            behind it), so an Istio folder applies file by file in any order. `--strict` on `mecha
            apply`/`validate`/`analyze` (or `?strict=1`, or `MECHA_STRICT=1` on the server for every
            change) refuses such a change instead.
            """
        ),
    ),
    Difference(
        "Two VirtualServices for one host",
        _p(
            """
            Bound to a gateway, their routes are merged, the oldest VirtualService's first (istiod's
            gateway builder). For sidecars (`mesh`) the oldest by `metadata.creationTimestamp` routes the
            host and the younger one gets a warning. The config store stamps `creationTimestamp` at first
            accept when the document has none, keeps it across edits and restarts, and keeps the one a
            `kubectl` export carries. Two Sidecars without `workloadSelector` in one namespace are warned
            about as `istioctl analyze` does (IST0111).
            """
        ),
    ),
    Difference(
        "VirtualService hosts outside the registry",
        _p(
            """
            A `mesh` VirtualService host that is no service (`uk.bookinfo.com`) gets its own virtual host,
            with the host and `host:port` as domains, on the ports of the VirtualService's registry hosts
            or else of its destinations (istiod adds such hosts to the destination port's route
            configuration). With `--route-tables scoped` each such host is a scope of its own pointing at
            the table `outbound|aliases` (the same virtual hosts; a wildcard host keeps the single table),
            and a Sidecar egress listener whose `hosts` list it routes it on its port.
            """
        ),
    ),
    Difference(
        "Path normalization",
        _p(
            """
            istiod's `meshConfig.pathNormalization` (default `BASE`), set with `MECHA_PATH_NORMALIZATION`;
            see [security](security.md#path-normalization-mecha_path_normalization).
            """
        ),
    ),
    Difference(
        "Route configuration names",
        _p(
            """
            istiod names a sidecar's outbound HTTP route configuration after the listener port (`"9080"`).
            Mecha's is always `outbound`, and the Dapr ones `dapr-http` / `dapr-grpc`: proxies on one
            machine listen on different ports, and a port-independent name lets every proxy share one
            serialized copy, so a route change is encoded once, not once per proxy. Virtual host and
            cluster names are istiod's. From 100 services on (or with `--route-tables scoped`) the
            outbound table is split into tables of ~16 services (`outbound|<namespace>|<n>`, selected by
            SRDS scopes keyed on the Host), so a VirtualService edit sends one small route table; then an
            unknown host gets 404 from Envoy instead of the catch-all's 502
            ([architecture](architecture.md#route-tables-one-or-one-per-group-of-services)).
            """
        ),
    ),
    Difference(
        "No traffic capture",
        _p(
            """
            Mecha does not install iptables rules. Apps reach the mesh through their proxy's outbound
            listener (`outbound_port` in node metadata, `Host` header picks the service) instead of a
            transparently captured VIP. Consequences: a `Sidecar` `egress[].port` is an explicit listener
            bound on `127.0.0.1:<port>` (`bind` honoured), `captureMode` has nothing to choose,
            `ingress[]` listeners are bound as declared, and `outboundTrafficPolicy.mode: ALLOW_ANY`
            forwards unknown hosts by their Host header through a dynamic forward proxy (there is no
            original destination to pass through to).
            """
        ),
        (
            _sidecar("spec.egress[].port", DIFFERS),
            _sidecar("spec.egress[].bind", HONOURED),
            _sidecar("spec.egress[].captureMode", DIFFERS),
            _sidecar("spec.ingress", HONOURED),
            _sidecar("spec.outboundTrafficPolicy.mode", DIFFERS),
        ),
    ),
    Difference(
        "TCP and TLS services",
        _p(
            """
            Without capture, an app cannot dial a TCP service's VIP. Each proxy declares which service
            ports it wants as local listeners in node metadata: `tcp_ports: {"5432": 25432}` gives a
            listener on `127.0.0.1:25432` (0.0.0.0 in node mode) named like istiod's (`<VIP>_5432` or
            `0.0.0.0_5432`). For TCP, the first service in the proxy's scope with that port owns the
            listener (as with istiod's shared `0.0.0.0_<port>`); VirtualService `tcp[]` routes (single or
            weighted) pick the clusters. For TLS/HTTPS ports, one filter chain per SNI host
            (`tls_inspector`), from `tls[].match.sniHosts` or the service's own host, so many TLS services
            share a port. `destinationSubnets` cannot be matched (the destination is always loopback).
            """
        ),
        (
            _vs("spec.tcp[].match[].destinationSubnets", UNSUPPORTED),
            _vs("spec.tls[].match[].destinationSubnets", UNSUPPORTED),
        ),
    ),
    Difference(
        "Per-proxy source matching",
        _p(
            """
            `sourceLabels` and `sourceNamespace` are honoured per proxy, as istiod does: a proxy gets only
            the matches that select it, and when they exclude every http route of a VirtualService, the
            host keeps its default route (not an empty virtual host). A match's `gateways` is not
            supported: it is reported rather than applied to every proxy.
            """
        ),
        (
            _vs("spec.http[].match[].sourceLabels", HONOURED),
            _vs("spec.http[].match[].sourceNamespace", HONOURED),
            _vs("spec.tcp[].match[].sourceLabels", HONOURED),
            _vs("spec.http[].match[].gateways", UNSUPPORTED),
        ),
    ),
    Difference(
        "Locality load balancing",
        _p(
            """
            `localityLbSetting` (distribute, failover, failoverPriority) is honoured with the proxy's own
            locality (node metadata `locality`) and the endpoints' `locality`, as per-proxy EDS
            priorities.
            """
        ),
        (
            Claim("DestinationRule", "spec.trafficPolicy.loadBalancer.localityLbSetting", HONOURED),
            Claim("ServiceEntry", "spec.endpoints[].locality", HONOURED),
            Claim("WorkloadEntry", "spec.locality", HONOURED),
        ),
    ),
    Difference(
        "Outlier detection",
        _p(
            """
            As istiod, a DestinationRule with `outlierDetection` always sets the cluster's
            `healthy_panic_threshold` (`minHealthPercent`, 0 when unset: panic routing off), and
            `max_ejection_percent` only when given: Envoy's default 10 % then ejects no host of a service
            with fewer than ten endpoints, in Istio as here (set `maxEjectionPercent` for small services).
            AuthorizationPolicy `hosts`/`notHosts` match case-insensitively, as the current istiod emits
            (its HostMatcher sets `ignoreCase`; issue #14's "case-sensitive" was checked against istio/istio
            86c9f01f: `pilot/pkg/security/authz/matcher/header.go` and the golden
            `builder/testdata/http/allow-full-rule-out.yaml`).
            """
        ),
        (Claim("DestinationRule", "spec.trafficPolicy.outlierDetection.minHealthPercent", HONOURED),),
    ),
    Difference(
        "Sidecar scope extras",
        _p(
            """
            The destinations of the VirtualServices in a proxy's scope stay in scope even when the egress
            hosts do not list them (otherwise those routes would point at missing clusters). A
            DestinationRule not exported to the proxy's namespace is not applied to that proxy's clusters;
            among visible ones, the proxy's namespace wins, then the service's namespace.
            """
        ),
    ),
)


def contradictions(diffs: Iterable[Difference] = DIFFERENCES) -> list[str]:
    """Claims the field tables disagree with (empty when the prose and the table say the same)."""
    statuses = {
        (kind, path): declared.status
        for kind, spec in SPEC_BY_KIND.items()
        for path, declared in field_table(spec, "spec")
    }
    out: list[str] = []
    for diff in diffs:
        for claim in diff.claims:
            found = statuses.get((claim.kind, claim.path))
            if found != claim.status:
                out.append(
                    f"{diff.title}: {claim.kind} {claim.path} is {found}, the prose says {claim.status}"
                )
    return out


def markdown(width: int = 110) -> str:
    import textwrap

    lines: list[str] = []
    for diff in DIFFERENCES:
        body = f"- **{diff.title}.** {diff.text}"
        lines += textwrap.wrap(
            body, width, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
        )
    return "\n".join(lines) + "\n"
