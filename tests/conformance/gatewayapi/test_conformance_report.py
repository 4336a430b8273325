"""The ConformanceReport has the upstream shape, and a test that did not run is skipped, never passed."""

from __future__ import annotations

from tests.conformance.gatewayapi.report import build_report, upstream_tests


def test_report_counts_failed_and_not_run_tests() -> None:
    report = build_report({"HTTPRouteMatching": "passed", "HTTPRouteWeight": "failed"}, "v0")
    assert report["apiVersion"] == "gateway.networking.k8s.io/v1" and report["kind"] == "ConformanceReport"
    assert report["gatewayAPIVersion"] == upstream_tests()["ref"]
    assert [p["name"] for p in report["profiles"]] == ["GATEWAY-GRPC", "GATEWAY-HTTP", "GATEWAY-TLS"]
    _, http, _ = report["profiles"]
    core = http["core"]
    assert http["name"] == "GATEWAY-HTTP" and core["result"] == "failure"
    assert core["failedTests"] == ["HTTPRouteWeight"] and core["statistics"]["Passed"] == 1
    assert "HTTPRouteSimpleSameNamespace" in core["skippedTests"]
    total = sum(core["statistics"].values())
    assert total == len(core["skippedTests"]) + 2
    assert http["extended"]["result"] == "partial" and http["extended"]["statistics"]["Passed"] == 0


def test_report_counts_a_test_in_every_profile_that_has_its_features() -> None:
    """As the Go suite does: a Gateway-only test is core in every Gateway profile alike; an HTTPRoute test
    only in GATEWAY-HTTP, a GRPCRoute test only in GATEWAY-GRPC."""
    outcomes = {
        "GatewayInvalidParametersRef": "passed",
        "HTTPRouteMatching": "passed",
        "GRPCRouteWeight": "failed",
    }
    grpc, http, tls = build_report(outcomes, "v0")["profiles"]
    assert grpc["core"]["statistics"]["Passed"] == 1 and grpc["core"]["failedTests"] == ["GRPCRouteWeight"]
    assert "HTTPRouteMatching" not in grpc["core"].get("skippedTests", [])
    assert http["core"]["statistics"]["Passed"] == 2 and "failedTests" not in http["core"]
    assert "GatewayStaticAddresses" in grpc["extended"]["unsupportedFeatures"]
    assert grpc["extended"]["supportedFeatures"] == ["GatewayHTTPListenerIsolation", "GatewayPort8080"]
    assert tls["core"]["statistics"]["Passed"] == 1 and "GRPCRouteWeight" not in tls["core"]["skippedTests"]
    assert "TLSRouteSimpleSameNamespace" in tls["core"]["skippedTests"]
    assert "TLSRouteModeTerminate" in tls["extended"]["unsupportedFeatures"]


def test_report_counts_provisional_tests_and_lists_those_that_passed() -> None:
    """The suite runs provisional tests by default (--skip-provisional-tests=false): they count in their
    profiles, and the passed ones are listed in succeededProvisionalTests."""
    report = build_report({"HTTPRoute303Redirect": "passed", "HTTPRouteNamedRule": "failed"}, "v0")
    _, http, _ = report["profiles"]
    assert http["extended"]["failedTests"] == ["HTTPRouteNamedRule"]
    assert "HTTPRoute307Redirect" in http["extended"]["skippedTests"]
    assert report["succeededProvisionalTests"] == ["HTTPRoute303Redirect"]
    assert "succeededProvisionalTests" not in build_report({"HTTPRouteMatching": "passed"}, "v0")
