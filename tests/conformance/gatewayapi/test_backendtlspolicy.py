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
                Request(host="https-listener.org", path="/backendtlspolicy", sni="https-listener.org"),
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
            Expected(
                Request(host="abc.example.com", path="/backendtlspolicy", sni="abc.example.com"),
                namespace=INFRA_NS,
            ),
        )
        await policy_ok(suite, "host-mismatch")
        await suite.expect_failure(
            addr,
            Expected(
                Request(
                    host="abc.example.org", path="/backendtlspolicy-host-mismatch", sni="abc.example.com"
                ),
                namespace=INFRA_NS,
            ),
        )
        await policy_ok(suite, "cert-mismatch")
        await suite.expect_failure(
            addr,
            Expected(
                Request(
                    host="abc.example.com", path="/backendtlspolicy-cert-mismatch", sni="abc.example.com"
                ),
                namespace=INFRA_NS,
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


def sni_request(path: str, sni: str = "abc.example.com") -> Expected:
    return Expected(Request(host="abc.example.com", path=path, sni=sni), namespace=INFRA_NS)


@pytest.mark.gateway_conformance("BackendTLSPolicySANValidation")
async def test_BackendTLSPolicySANValidation(suite: Suite) -> None:
    async with suite.using("tests/backendtlspolicy-san.yaml"):
        addr = await routes_accepted(suite, SAME, "backendtlspolicy-san-test")
        for name, ok in (
            ("san-dns", True),
            ("san-dns-mismatch", False),
            ("san-uri", True),
            ("san-uri-mismatch", False),
            ("multiple-sans", True),
            ("multiple-mismatch-sans", False),
        ):
            await suite.backend_tls_policy_must_have_condition((INFRA_NS, name), SAME, ACCEPTED)
            case = sni_request(f"/backendtlspolicy-{name}")
            await (suite.expect(addr, case) if ok else suite.expect_failure(addr, case))


@pytest.mark.gateway_conformance("BackendTLSPolicyConflictResolution")
async def test_BackendTLSPolicyConflictResolution(suite: Suite) -> None:
    async with suite.using("tests/backendtlspolicy-conflict-resolution.yaml"):
        addr = await routes_accepted(suite, SAME, "backendtlspolicy-conflict-resolution")
        conflicted = ("Accepted", "False", "Conflicted")
        for first, second, path in (
            (
                "conflicted-without-section-name-1",
                "conflicted-without-section-name-2",
                "without-section-name",
            ),
            ("conflicted-with-section-name-1", "conflicted-with-section-name-2", "with-section-name"),
        ):
            await suite.backend_tls_policy_must_have_condition((INFRA_NS, first), SAME, ACCEPTED)
            await suite.backend_tls_policy_must_have_condition((INFRA_NS, second), SAME, conflicted)
            await suite.expect(addr, sni_request(f"/backendtlspolicy-conflicted-{path}", "other.example.com"))
        for name in ("not-conflicted-with-section-name", "not-conflicted-without-section-name"):
            await suite.backend_tls_policy_must_have_condition((INFRA_NS, name), SAME, ACCEPTED)
        await suite.expect(
            addr, sni_request("/backendtlspolicy-not-conflicted-with-section-name", "other.example.com")
        )
        await suite.expect(addr, sni_request("/backendtlspolicy-not-conflicted-without-section-name"))


def server_error(path: str) -> Expected:
    return Expected(Request(host="abc.example.com", path=path), status=(500, 502, 503), namespace=INFRA_NS)


@pytest.mark.gateway_conformance("BackendTLSPolicyInvalidCACertificateRef")
async def test_BackendTLSPolicyInvalidCACertificateRef(suite: Suite) -> None:
    async with suite.using("tests/backendtlspolicy-invalid-ca-certificate-ref.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        route = (INFRA_NS, "backendtlspolicy-invalid-ca-certificate-ref")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route], use_port=False)
        for name in ("nonexistent-ca-certificate-ref", "malformed-ca-certificate-ref"):
            await suite.backend_tls_policy_must_have_condition((INFRA_NS, name), SAME, NO_VALID_CA)
            await suite.backend_tls_policy_must_have_condition((INFRA_NS, name), SAME, INVALID_CA_REF)
            await suite.expect(addr, server_error(f"/backendtlspolicy-{name}"))


@pytest.mark.gateway_conformance("BackendTLSPolicyInvalidKind")
async def test_BackendTLSPolicyInvalidKind(suite: Suite) -> None:
    async with suite.using("tests/backendtlspolicy-invalid-kind.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        route = (INFRA_NS, "backendtlspolicy-invalid-kind-test")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route], use_port=False)
        policy = (INFRA_NS, "invalid-kind")
        await suite.backend_tls_policy_must_have_condition(policy, SAME, NO_VALID_CA)
        await suite.backend_tls_policy_must_have_condition(
            policy, SAME, ("ResolvedRefs", "False", "InvalidKind")
        )
        await suite.expect(addr, server_error("/backendtlspolicy-invalid-kind"))


def _latest(policy: dict[str, object]) -> None:
    """BackendTLSPolicyMustHaveLatestConditions: a check of the object as read, no wait."""
    gen = policy["metadata"]["generation"]  # type: ignore[index]
    for ancestor in policy.get("status", {}).get("ancestors") or []:  # type: ignore[attr-defined]
        stale = [c for c in ancestor.get("conditions") or [] if c.get("observedGeneration") != gen]
        assert not stale, f"BackendTLSPolicy ancestor {ancestor.get('ancestorRef')}: stale conditions {stale}"


@pytest.mark.gateway_conformance("BackendTLSPolicyObservedGenerationBump")
async def test_BackendTLSPolicyObservedGenerationBump(suite: Suite) -> None:
    relative = "tests/backendtlspolicy-observed-generation-bump.yaml"
    async with suite.using(relative):
        name = (INFRA_NS, "observed-generation-bump")
        await suite.namespaces_must_be_ready([INFRA_NS])
        original = await suite.cp.get("backendtlspolicies", *name)
        assert original is not None, "error getting BackendTLSPolicy"
        _latest(original)
        mutate = copy.deepcopy(next(d for d in manifests(relative) if d.get("kind") == "BackendTLSPolicy"))
        mutate["spec"]["validation"]["hostname"] = "foo.example.com"
        await suite.patch(relative, mutate)
        await suite.backend_tls_policy_must_have_condition(name, SAME, ("Accepted", "True", ""))
        updated = await suite.cp.get("backendtlspolicies", *name)
        assert updated is not None, "error getting BackendTLSPolicy"
        _latest(updated)
        assert original["metadata"]["generation"] != updated["metadata"]["generation"], (
            "generation should change after an update"
        )
