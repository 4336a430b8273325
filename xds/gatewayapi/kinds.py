"""The Kubernetes Gateway API kinds Mecha reads (and at which versions), the ones it does not read yet, and
whose Gateways it serves.

A Gateway is Mecha's when its gatewayClassName names a GatewayClass whose controllerName is one of
CONTROLLER_NAMES, or, with no such GatewayClass document, one of the built-in classes BUILTIN_CLASSES
(`mecha`, and `istio` so that Gateways written for Istio migrate unchanged; istiod has the same built-in
`istio` class). Only Mecha's Gateways are converted and get status; other classes belong to another
controller and are left alone.
"""

from __future__ import annotations

GROUP = "gateway.networking.k8s.io"
VERSIONS = frozenset({"v1", "v1beta1"})

GATEWAY_CLASS = "GatewayClass"
GATEWAY = "Gateway"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
REFERENCE_GRANT = "ReferenceGrant"
TLS_ROUTE = "TLSRoute"
TCP_ROUTE = "TCPRoute"
BACKEND_TLS_POLICY = "BackendTLSPolicy"
READ_KINDS = (
    GATEWAY_CLASS,
    GATEWAY,
    HTTP_ROUTE,
    GRPC_ROUTE,
    REFERENCE_GRANT,
    TLS_ROUTE,
    TCP_ROUTE,
    BACKEND_TLS_POLICY,
)
ROUTE_KINDS = (HTTP_ROUTE, GRPC_ROUTE, TLS_ROUTE, TCP_ROUTE)
# ReferenceGrant has no status
STATUS_KINDS = (GATEWAY_CLASS, GATEWAY, HTTP_ROUTE, GRPC_ROUTE, TLS_ROUTE, TCP_ROUTE, BACKEND_TLS_POLICY)
# The versions upstream serves each kind at (GRPCRoute and ReferenceGrant began in v1alpha2).
KIND_VERSIONS: dict[str, frozenset[str]] = {
    GATEWAY_CLASS: VERSIONS,
    GATEWAY: VERSIONS,
    HTTP_ROUTE: VERSIONS,
    GRPC_ROUTE: frozenset({"v1", "v1alpha2"}),
    REFERENCE_GRANT: frozenset({"v1", "v1beta1", "v1alpha2"}),
    TLS_ROUTE: frozenset({"v1", "v1alpha2", "v1alpha3"}),
    TCP_ROUTE: frozenset({"v1", "v1alpha2"}),
    BACKEND_TLS_POLICY: frozenset({"v1", "v1alpha3"}),
}
# Namespace documents (core group) carry the labels allowedRoutes.namespaces.selector matches: there is no
# API server to ask, so a namespace is known, with its labels, only through its Namespace document.
NAMESPACE = ("", "Namespace")
# ConfigMap documents (core group) carry the CA bundles (key ca.crt) BackendTLSPolicy caCertificateRefs name.
CONFIG_MAP = ("", "ConfigMap")

# What status.parents[].controllerName and GatewayClass.spec.controllerName say for Mecha.
CONTROLLER_NAME = "mecha.io/gateway-controller"
# istiod's controller name: a GatewayClass written for Istio is served by Mecha too (migration).
CONTROLLER_NAMES = frozenset({CONTROLLER_NAME, "istio.io/gateway-controller"})
MECHA_CLASS = "mecha"
BUILTIN_CLASSES = frozenset({MECHA_CLASS, "istio"})

# Real kinds of the group that later phases will read: accepted (so a manifest that carries them applies)
# and reported as not honoured, never silently skipped.
UNREAD_KINDS: dict[str, str] = {
    "UDPRoute": "UDPRoute is not supported",
    "ListenerSet": "ListenerSet is not read yet",
}


def is_gateway_api(api_version: str) -> bool:
    return api_version.rpartition("/")[0] == GROUP


def is_namespace(api_version: str, kind: str) -> bool:
    return (api_version.rpartition("/")[0], kind) == NAMESPACE


def is_config_map(api_version: str, kind: str) -> bool:
    return (api_version.rpartition("/")[0], kind) == CONFIG_MAP
