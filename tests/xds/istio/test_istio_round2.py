"""Istio migration round two (issue #14, items 2-7): what istiod accepts, how it routes meanwhile, and the
diagnostics a migrating team reads."""

from __future__ import annotations

from istio_helpers import decoded, service_entry, snapshot


def _dr_with_outlier(extra: str = "") -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1{extra}}}
"""


def test_outlier_detection_always_sets_the_panic_threshold_like_istiod() -> None:
    # istiod applyOutlierDetection: healthy_panic_threshold = minHealthPercent, 0 when unset
    snap = snapshot(service_entry("web") + _dr_with_outlier())
    cluster = decoded(snap, "CDS")["outbound|9080||web.default.svc.cluster.local"]
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {}  # Percent{value: 0}
    snap = snapshot(service_entry("web") + _dr_with_outlier(", minHealthPercent: 30"))
    cluster = decoded(snap, "CDS")["outbound|9080||web.default.svc.cluster.local"]
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 30.0}


def test_no_outlier_detection_keeps_envoys_default_panic_threshold() -> None:
    cluster = decoded(snapshot(service_entry("web")), "CDS")["outbound|9080||web.default.svc.cluster.local"]
    assert "healthy_panic_threshold" not in cluster.get("common_lb_config", {})
