"""An endpoint served by a connected proxy is expected to present its credential's identity, whatever its
WorkloadEntry's serviceAccount says (issue #11; xds/identity/peers.py); the disagreement is reported."""

from __future__ import annotations

from conftest import config_of, decoded

from xds.ca.authority import CertificateAuthority
from xds.ca.workload import WorkloadCertificates
from xds.identity.peers import EndpointIdentities
from xds.pipeline import SnapshotBuilder
from xds.proxy import ProxyIdentity

CONFIG = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: 15006}
  labels: {app: productpage}
  serviceAccount: bookinfo-productpage
"""


def _proxy(proxy_id: str, app: str) -> ProxyIdentity:
    meta = {
        "mecha": {"apps": [{"name": app, "app_port": 9080, "inbound_port": 15006, "labels": {"app": app}}]}
    }
    return ProxyIdentity.from_node(proxy_id, meta)


def _expected_sans(connected: list[ProxyIdentity]) -> tuple[list[str], EndpointIdentities]:
    config = config_of(CONFIG)
    builder = SnapshotBuilder(certs=WorkloadCertificates(CertificateAuthority()), agent_sds=True)
    identities = EndpointIdentities()
    identities.update(builder, config, connected)
    client = _proxy("reviews-v1", "reviews")
    clusters = decoded(builder.build(config, [client])["reviews-v1"], "CDS")
    cluster = clusters["outbound|9080||productpage.default.svc.cluster.local"]
    context = cluster["transportSocket"]["typedConfig"]["commonTlsContext"]
    matchers = context["combinedValidationContext"]["defaultValidationContext"]["matchTypedSubjectAltNames"]
    return sorted(m["matcher"]["exact"] for m in matchers), identities


def test_the_credential_of_the_serving_proxy_names_the_expected_san() -> None:
    served_by = _proxy("productpage-v1", "productpage").with_service_accounts(("productpage",))
    sans, identities = _expected_sans([served_by])
    assert sans == ["spiffe://cluster.local/ns/default/sa/productpage"]
    (warning,) = identities.warnings_for("productpage-v1")
    assert "'bookinfo-productpage'" in warning and "(productpage)" in warning
    assert "WorkloadEntry default/productpage-v1" in warning


def test_without_a_verified_credential_the_workload_entry_says_it_as_in_istio() -> None:
    unverified = _proxy("productpage-v1", "productpage")  # --insecure-xds: nothing verified
    sans, identities = _expected_sans([unverified])
    assert sans == ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage"]
    assert identities.warnings_for("productpage-v1") == []


def test_a_proxy_whose_credential_does_not_cover_the_labels_serves_nothing() -> None:
    other = _proxy("evil-1", "ratings").with_service_accounts(("evil",))
    sans, identities = _expected_sans([other])
    assert sans == ["spiffe://cluster.local/ns/default/sa/bookinfo-productpage"]
    assert identities.mismatches == []
