"""Upstream GATEWAY-HTTP extended tests of BackendTLSPolicy (backendtlspolicy.go, -san, -conflict-resolution,
-invalid-ca-certificate-ref, -invalid-kind, -observed-generation-bump), ported case by case. The CA
ConfigMaps are the suite's (`tls-checks-ca-certificate` signs the tls-backend pods' certificate,
`mismatch-ca-certificate` signs nothing)."""

from __future__ import annotations

import copy

import pytest

from tests.conformance.gatewayapi.harness import manifests
from tests.conformance.gatewayapi.suite import (
    INFRA_NS,
    Expected,
    ExpectedRequest,
    GwAddr,
    Request,
    Suite,
)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
SAME = (INFRA_NS, "same-namespace")
HTTPS_GW = (INFRA_NS, "same-namespace-with-https-listener")
ACCEPTED = ("Accepted", "True", "Accepted")
RESOLVED = ("ResolvedRefs", "True", "ResolvedRefs")
NO_VALID_CA = ("Accepted", "False", "NoValidCACertificate")
INVALID_CA_REF = ("ResolvedRefs", "False", "InvalidCACertificateRef")


async def policy_ok(suite: Suite, name: str, gw: tuple[str, str] = SAME) -> None:
    await suite.backend_tls_policy_must_have_condition((INFRA_NS, name), gw, ACCEPTED)
    await suite.backend_tls_policy_must_have_condition((INFRA_NS, name), gw, RESOLVED)


async def routes_accepted(suite: Suite, gw: tuple[str, str], route: str) -> GwAddr:
    """NamespacesMustBeReady + GatewayAndRoutesMustBeAccepted (IP only) + ResolvedRefs True."""
    await suite.namespaces_must_be_ready([INFRA_NS])
    addr = await suite.gateway_and_routes_must_be_accepted(gw, [(INFRA_NS, route)], use_port=False)
    await suite.resolved_refs_true((INFRA_NS, route), gw)
    return addr


@pytest.mark.gateway_conformance("BackendTLSPolicy")
async def test_BackendTLSPolicy(suite: Suite) -> None:
    relative = "tests/backendtlspolicy.yaml"
    async with suite.using(relative):
        # re-encrypt: HTTPS to the gateway, TLS again to the backend with the policy's SNI
        addr = await routes_accepted(suite, HTTPS_GW, "backendtlspolicy-reencrypt")
        await policy_ok(suite, "normative-test", HTTPS_GW)
        cert = suite.credentials.secrets[(INFRA_NS, "tls-validity-checks-certificate")]["tls.crt"]
        assert cert, "missing required server certificate pem for the test"
        await suite.tls_expect(
            addr,
            Expected(
                Request(host="https-listener.org", path="/backendtlspolicy"),
                ExpectedRequest(path="/backendtlspolicy", sni="abc.example.com"),
                namespace=INFRA_NS,
            ),
            cert,
            "https-listener.org",
        )

        addr = await routes_accepted(suite, SAME, "backendtlspolicy")
        await policy_ok(suite, "normative-test")
        await suite.expect(
            addr,
            Expected(Request(host="abc.example.com", path="/backendtlspolicy"), namespace=INFRA_NS),
        )
        await policy_ok(suite, "host-mismatch")
        await suite.expect_failure(
            addr,
            Expected(
                Request(host="abc.example.org", path="/backendtlspolicy-host-mismatch"), namespace=INFRA_NS
            ),
        )
        await policy_ok(suite, "cert-mismatch")
        await suite.expect_failure(
            addr,
            Expected(
                Request(host="abc.example.com", path="/backendtlspolicy-cert-mismatch"), namespace=INFRA_NS
            ),
        )

        # a ConfigMap the policy names, created, emptied and restored, is reconciled
        await policy_ok(suite, "reconcile-test")
        original_ca = suite.config_maps[(INFRA_NS, "tls-checks-ca-certificate")]["ca.crt"].decode()
        test_cm = "tls-checks-ca-certificate-reconcile-test"
        policy = next(d for d in manifests(relative) if d["metadata"]["name"] == "reconcile-test")
        patched = copy.deepcopy(policy)
        patched["spec"]["validation"]["caCertificateRefs"] = [
            {"group": "", "kind": "ConfigMap", "name": test_cm}
        ]
        await suite.patch(relative, patched)
        target = (INFRA_NS, "reconcile-test")
        await suite.backend_tls_policy_must_have_condition(target, SAME, NO_VALID_CA)
        await suite.backend_tls_policy_must_have_condition(target, SAME, INVALID_CA_REF)
        cm_file = "backendtlspolicy-reconcile-configmap.yaml"

        def config_map(ca: str) -> dict[str, object]:
            return {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": test_cm, "namespace": INFRA_NS},
                "data": {"ca.crt": ca},
            }

        await suite.cp.apply(cm_file, [config_map(original_ca)])
        try:
            await policy_ok(suite, "reconcile-test")
            await suite.cp.apply(cm_file, [config_map("")])
            await suite.backend_tls_policy_must_have_condition(target, SAME, NO_VALID_CA)
            await suite.backend_tls_policy_must_have_condition(target, SAME, INVALID_CA_REF)
            await suite.cp.apply(cm_file, [config_map(original_ca)])
            await policy_ok(suite, "reconcile-test")
            await suite.patch(relative, policy)
        finally:
            await suite.cp.delete(cm_file, [config_map(original_ca)])
