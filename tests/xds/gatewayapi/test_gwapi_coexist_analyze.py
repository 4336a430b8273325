"""`mecha analyze` reports an Istio VirtualService and an HTTPRoute that route the same host on the same
gateway port (istiod merges them into one virtual host on a proxy serving both Gateways), where the HTTPRoute
is written: file, document and field."""

from __future__ import annotations

from xds.analyze import analyze_documents, render_text
from xds.analyze.coexist import CODE
from xds.diagnostics import Diagnostic, Severity
from xds.sources import load_text

ISTIO = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.5}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: legacy, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ISTIO_PORT, name: http, protocol: HTTP}
    hosts: [SERVER_HOST]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: default}
spec:
  hosts: [VS_HOST]
  gateways: [legacy]
  http: [{route: [{destination: {host: web, port: {number: 8080}}}]}]
"""

GATEWAY_API = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: default}
spec:
  gatewayClassName: CLASS
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: web}]
  HOSTNAMES
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"""


def _analyze(
    *,
    istio_port: int = 80,
    server_host: str = "*",
    vs_host: str = "www.example.com",
    hostnames: str = "hostnames: [www.example.com]",
    gateway_class: str = "mecha",
) -> tuple[list[Diagnostic], str]:
    istio = (
        ISTIO.replace("ISTIO_PORT", str(istio_port))
        .replace("SERVER_HOST", f'"{server_host}"')
        .replace("VS_HOST", f'"{vs_host}"')
    )
    api = GATEWAY_API.replace("CLASS", gateway_class).replace("HOSTNAMES", hostnames)
    docs, diags = load_text(istio, "istio.yaml")
    more, more_diags = load_text(api, "routes.yaml")
    report = analyze_documents([*docs, *more], [*diags, *more_diags])
    return [d for d in report.diagnostics if d.code == CODE], render_text(report, quiet=True)


def test_same_host_and_port_is_reported_on_the_httproute_hostname() -> None:
    found, text = _analyze()
    assert len(found) == 1, found
    d = found[0]
    assert d.severity is Severity.WARNING
    loc = d.location
    assert (loc.file, loc.document, loc.kind, loc.namespace, loc.name) == (
        "routes.yaml",
        1,
        "HTTPRoute",
        "default",
        "web",
    )
    assert d.field == "spec.hostnames[0]"
    assert "host www.example.com on port 80" in d.message
    assert "VirtualService default/legacy (istio.yaml doc 2) spec.hosts[0]" in d.message
    assert "Istio Gateway default/legacy" in d.message and "Gateway default/web" in d.message
    assert str(d) in text  # `mecha analyze` prints it


def test_a_route_without_hostnames_is_reported_on_its_parent_ref() -> None:
    found, _ = _analyze(hostnames="", vs_host="*")
    assert [d.field for d in found] == ["spec.parentRefs[0]"]
    assert "host * on port 80" in found[0].message


def test_the_same_wildcard_is_reported() -> None:
    found, _ = _analyze(
        server_host="*.example.com", vs_host="*.example.com", hostnames='hostnames: ["*.example.com"]'
    )
    assert len(found) == 1 and "host *.example.com on port 80" in found[0].message


def test_a_wider_host_is_another_virtual_host_and_no_conflict() -> None:
    """Envoy sends www.example.com to its own virtual host: the VirtualService's `*` routes never see it."""
    assert _analyze(vs_host="*")[0] == []
    assert _analyze(server_host="*.example.com", vs_host="*.example.com")[0] == []
    assert _analyze(hostnames="")[0] == []  # the route's `*` and the VirtualService's www.example.com


def test_another_port_is_no_conflict() -> None:
    found, _ = _analyze(istio_port=8080)
    assert found == []


def test_another_host_is_no_conflict() -> None:
    found, _ = _analyze(vs_host="api.example.com")
    assert found == []
    found, _ = _analyze(server_host="api.example.com", vs_host="*")
    assert found == []  # the Istio server admits only api.example.com


def test_a_route_not_accepted_is_no_conflict() -> None:
    found, _ = _analyze(gateway_class="other-controller")  # not Mecha's Gateway: the route attaches nowhere
    assert found == []
