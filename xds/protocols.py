"""Which protocol a workload port speaks, chosen as istiod chooses it (pkg/config/protocol): an explicit
appProtocol first, else the port name's prefix (`mysql`, `mysql-primary`, `tcp-db`), else HTTP.

Ports of the TCP family get a plain TCP proxy on the sidecar's inbound listener. An HTTP listener there would
wait for a request line that never comes from a server-speaks-first protocol (MySQL's greeting, SMTP's
banner), and would mangle every other binary protocol.
"""

from __future__ import annotations

# istiod's Protocol values; lower-case input is accepted as istiod does (protocol.Parse is case-insensitive)
HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})
TCP_FAMILY = frozenset({"TCP", "TLS", "HTTPS", "MONGO", "MYSQL", "REDIS"})
KNOWN = HTTP_FAMILY | TCP_FAMILY | {"UDP"}


def parse_protocol(value: str) -> str:
    """An istiod protocol name, upper-cased ("" when it is not one)."""
    upper = value.strip().upper()
    return upper if upper in KNOWN else ""


def port_protocol(app_protocol: str = "", port_name: str = "") -> str:
    """appProtocol wins; then the port name (`<protocol>` or `<protocol>-<suffix>`); else HTTP."""
    explicit = parse_protocol(app_protocol)
    if explicit:
        return explicit
    named = parse_protocol(port_name.split("-", 1)[0]) if port_name else ""
    if port_name.upper().startswith("GRPC-WEB"):
        named = "GRPC-WEB"
    return named or "HTTP"


def is_tcp(protocol: str) -> bool:
    return protocol.upper() in TCP_FAMILY
