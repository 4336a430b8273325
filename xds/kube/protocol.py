"""istiod's protocol selection for a Kubernetes Service port (pkg/config/kube ConvertProtocol)."""

from __future__ import annotations

# istiod's protocol.Parse names (case-insensitive) and the spelling Mecha's ServicePort uses
_KNOWN = {
    "tcp": "TCP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-WEB",
    "http": "HTTP",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "MONGO",
    "redis": "REDIS",
    "mysql": "MYSQL",
}
# Kubernetes' own appProtocol names (only valid as appProtocol, never as a port name)
_KUBERNETES_APP_PROTOCOLS = {
    "kubernetes.io/h2c": "HTTP2",
    "kubernetes.io/ws": "HTTP",
    "kubernetes.io/wss": "HTTPS",
}
# istiod skips sniffing on these: a server-first protocol would hang behind an HTTP sniffer
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})
# istiod sniffs such ports (xds.model.resources.SNIFFED): HTTP on the outbound listener, detected on the
# tcp_ports listener. The ServiceEntry port is written without a protocol: how a ServiceEntry asks for it.
UNDECLARED = "AUTO"


def convert_protocol(port: int, name: str, protocol: str, app_protocol: str | None) -> str | None:
    """Mecha's port protocol for a Service port; None for UDP/SCTP, which the mesh does not proxy.

    appProtocol wins over the name; otherwise the name's prefix before '-' (grpc-web first), as istiod does.
    """
    if protocol.upper() in ("UDP", "SCTP"):
        return None
    selector = name
    if app_protocol is not None:
        if app_protocol in _KUBERNETES_APP_PROTOCOLS:
            return _KUBERNETES_APP_PROTOCOLS[app_protocol]
        selector = app_protocol
    if selector[:8].lower() == "grpc-web":
        return "GRPC-WEB"
    prefix = selector.split("-", 1)[0].lower()
    if prefix == "udp":
        return None
    found = _KNOWN.get(prefix)
    if found is not None:
        return found
    return "TCP" if port in _WELL_KNOWN_TCP_PORTS else UNDECLARED
