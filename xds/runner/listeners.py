"""Every port `mecha up` binds, by label: the one map behind the start-up port checks (stack.py), the ports of
a user's config that --port-offset did not move (config_ports.py) and the free blocks of ports the tests and
benches pick (xds/testing/up_ports.py)."""

from __future__ import annotations

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import DemoLayout, default_layout


def listener_ports(
    layout: DemoLayout, api_port: int, xds_port: int, *, gateway: bool = True, capabilities: bool = True
) -> dict[str, int]:
    """The control plane's two ports, the apps' and proxies' (layout.ports()), the ingress gateway's when it
    runs and the capability services' when they run; the same labels for any offset."""
    ports = {"control plane API": api_port, "control plane xDS": xds_port, **layout.ports()}
    if gateway:
        ports.update(layout.gateway_ports())
    if capabilities:
        ports.update(layout.capability_ports())
    return ports


def up_listener_ports(mode: str, offset: int) -> dict[str, int]:
    """What `mecha up --mode MODE --port-offset OFFSET` binds (its gateway and capability services on)."""
    return listener_ports(default_layout(mode, offset), DEFAULT_API_PORT + offset, DEFAULT_XDS_PORT + offset)
