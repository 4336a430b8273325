"""Protocol upgrades every HttpConnectionManager accepts: WebSocket, as istiod sets on every HCM it builds
(pilot/pkg/networking/core/listener_builder.go: `UpgradeConfigs: [{UpgradeType: "websocket"}]`).

Without it Envoy answers an `Upgrade: websocket` request with 403 (upgrade not configured), so an app that
worked under Istio loses its WebSocket connections behind Mecha. Beside normalize.py, which sets the other
field every HCM shares; xds.translate.listener.shared_manager_fields puts both on each HCM.
"""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm

WEBSOCKET = "websocket"


def upgrade_fields() -> dict[str, Any]:
    """HttpConnectionManager keyword arguments: the upgrades istiod enables."""
    return {"upgrade_configs": [hcm.HttpConnectionManagerUpgradeConfig(upgrade_type=WEBSOCKET)]}
