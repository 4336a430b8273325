"""The ConformanceReport has the upstream shape, and a test that did not run is skipped, never passed."""

from __future__ import annotations

from tests.conformance.gatewayapi.report import build_report, upstream_tests


def test_report_counts_failed_and_not_run_tests() -> None:
    report = build_report({"HTTPRouteMatching": "passed", "HTTPRouteWeight": "failed"}, "v0")
    assert report["apiVersion"] == "gateway.networking.k8s.io/v1" and report["kind"] == "ConformanceReport"
    assert report["gatewayAPIVersion"] == upstream_tests()["ref"]
    (http,) = report["profiles"]
    core = http["core"]
    assert http["name"] == "GATEWAY-HTTP" and core["result"] == "failure"
    assert core["failedTests"] == ["HTTPRouteWeight"] and core["statistics"]["Passed"] == 1
    assert "HTTPRouteSimpleSameNamespace" in core["skippedTests"]
    total = sum(core["statistics"].values())
    assert total == len(core["skippedTests"]) + 2
    assert http["extended"]["result"] == "partial" and http["extended"]["statistics"]["Passed"] == 0
