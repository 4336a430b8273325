"""/v1.0/metadata `componentStatus`: each component's own health, so the dashboard can show which component
failed (a Redis on a closed port with ignoreErrors: true keeps the sidecar up but is not serving)."""

from __future__ import annotations

from pathlib import Path

from sidecar_process import start_sidecar

from xds.testing.envoy import free_port


def test_metadata_names_the_failed_component_and_why(tmp_path: Path) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "components.yaml").write_text(
        f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: broken-store}}
spec:
  type: state.redis
  version: v1
  ignoreErrors: true
  metadata: [{{name: redisHost, value: "127.0.0.1:{free_port()}"}}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: bus}}
spec: {{type: pubsub.in-memory, version: v1}}
"""
    )
    sidecar = start_sidecar(tmp_path, "shop", "--resources-path", str(resources))
    try:

        def status() -> dict[str, dict[str, object]]:
            doc = sidecar.request("GET", "/v1.0/metadata").json()
            return {c["name"]: c for c in doc.get("componentStatus", [])}

        sidecar.wait_until(lambda: "broken-store" in status(), "broken-store in componentStatus")
        found = status()
        assert found["bus"]["healthy"] is True and found["bus"]["type"] == "pubsub.in-memory"
        broken = found["broken-store"]
        assert broken["healthy"] is False and broken["type"] == "state.redis", broken
        assert broken["error"], broken
    finally:
        sidecar.stop()
