"""The ConformanceReport has the upstream shape, and a test that did not run is skipped, never passed."""

from __future__ import annotations

from tests.conformance.gatewayapi.report import build_report, upstream_tests


def test_report_counts_failed_and_not_run_tests() -> None:
    report = build_report({"HTTPRouteMatching": "passed", "HTTPRouteWeight": "failed"}, "v0")
    assert report["apiVersion"] == "gateway.networking.k8s.io/v1" and report["kind"] == "ConformanceReport"
    assert report["gatewayAPIVersion"] == upstream_tests()["ref"]
    names = [p["name"] for p in report["profiles"]]
    assert names == ["GATEWAY-GRPC", "GATEWAY-HTTP", "GATEWAY-TLS", "MESH-HTTP"]
    _, http, _, _ = report["profiles"]
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
    grpc, http, tls, mesh = build_report(outcomes, "v0")["profiles"]
    assert grpc["core"]["statistics"]["Passed"] == 1 and grpc["core"]["failedTests"] == ["GRPCRouteWeight"]
    assert "HTTPRouteMatching" not in grpc["core"].get("skippedTests", [])
    assert http["core"]["statistics"]["Passed"] == 2 and "failedTests" not in http["core"]
    assert "GatewayStaticAddresses" in grpc["extended"]["unsupportedFeatures"]
    assert grpc["extended"]["supportedFeatures"] == ["GatewayHTTPListenerIsolation", "GatewayPort8080"]
    assert tls["core"]["statistics"]["Passed"] == 1 and "GRPCRouteWeight" not in tls["core"]["skippedTests"]
    assert "TLSRouteSimpleSameNamespace" in tls["core"]["skippedTests"]
    assert "TLSRouteModeTerminate" in tls["extended"]["unsupportedFeatures"]
    assert mesh["core"]["statistics"]["Passed"] == 0  # gateway tests are not mesh tests
    assert "HTTPRouteMatching" not in mesh["core"].get("skippedTests", [])


def test_mesh_http_draws_from_the_mesh_tests() -> None:
    """MESH-HTTP: core = tests needing only Mesh and HTTPRoute (MeshBasic among them); extended = those
    needing claimed Mesh*/HTTPRoute* features; MeshGRPCRouteWeight (GRPCRoute) is in neither."""
    outcomes = {"MeshBasic": "passed", "MeshTrafficSplit": "passed", "MeshConsumerRoute": "failed"}
    mesh = build_report(outcomes, "v0")["profiles"][3]
    assert mesh["name"] == "MESH-HTTP"
    assert mesh["core"]["statistics"]["Passed"] == 2 and "MeshHTTPRouteWeight" in mesh["core"]["skippedTests"]
    assert mesh["extended"]["failedTests"] == ["MeshConsumerRoute"]
    assert "MeshFrontendHostname" not in mesh["extended"].get("skippedTests", [])  # not claimed
    assert "MeshClusterIPMatching" in mesh["extended"]["unsupportedFeatures"]
    every = [*mesh["core"].get("skippedTests", []), *mesh["extended"].get("skippedTests", [])]
    assert "MeshGRPCRouteWeight" not in every


def test_report_counts_provisional_tests_and_lists_those_that_passed() -> None:
    """The suite runs provisional tests by default (--skip-provisional-tests=false): they count in their
    profiles, and the passed ones are listed in succeededProvisionalTests."""
    report = build_report({"HTTPRoute303Redirect": "passed", "HTTPRouteNamedRule": "failed"}, "v0")
    _, http, _, _ = report["profiles"]
    assert http["extended"]["failedTests"] == ["HTTPRouteNamedRule"]
    assert "HTTPRoute307Redirect" in http["extended"]["skippedTests"]
    assert report["succeededProvisionalTests"] == ["HTTPRoute303Redirect"]
    assert "succeededProvisionalTests" not in build_report({"HTTPRouteMatching": "passed"}, "v0")
