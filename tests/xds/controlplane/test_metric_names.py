"""istiod's and daprd's metric names in the exposition text: exact names (no `_total`), typed counter."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from capabilities import metrics as dapr_metrics
from xds import metrics
from xds.controlplane.store.plan import Change


def _families(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    return {
        f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
        for f in text_string_to_metric_families(text)
    }


def test_istiod_names_follow_the_recorded_series() -> None:
    before = metrics.nacks.labels("LDS")._value.get()
    metrics.nacks.labels("LDS").inc()
    metrics.record_config_change(Change(added=(("VirtualService", "default", "reviews"),)))
    text = metrics.render().decode()
    assert "# TYPE pilot_total_xds_rejects counter\n" in text and "pilot_total_xds_rejects_total" not in text
    assert f'pilot_total_xds_rejects{{type="LDS"}} {before + 1}' in text
    assert 'pilot_k8s_cfg_events{event="add",type="VirtualService"}' in text
    assert "# TYPE pilot_proxy_convergence_time histogram" in text and "# TYPE pilot_xds gauge" in text


def test_daprd_names_are_exact_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAMESPACE", raising=False)  # daprd's namespace then: "default"
    dapr_metrics.record_publish("app-a", "pubsub", "orders", ok=True)
    dapr_metrics.record_delivery("app-b", "pubsub", "orders", "success")
    text = dapr_metrics.render().decode()
    assert "# TYPE dapr_component_pubsub_egress_count counter\n" in text
    assert (
        'dapr_component_pubsub_egress_count{app_id="app-a",component="pubsub",namespace="default",success="true",topic="orders"}'
        in text
    )
    assert (
        'dapr_component_pubsub_ingress_count{app_id="app-b",component="pubsub",namespace="default",'
        'process_status="success",status="success",topic="orders"}' in text
    )
    assert "_total" not in text


def test_daprd_namespace_label_follows_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESPACE", "team-a")
    dapr_metrics.record_publish("app-c", "pubsub", "orders", ok=False)
    assert (
        'app_id="app-c",component="pubsub",namespace="team-a",success="false"'
        in dapr_metrics.render().decode()
    )
