"""Field tables of GatewayClass, Gateway, HTTPRoute, GRPCRoute and ReferenceGrant (gateway-api apis/v1,
standard channel), in the same declarative schema as the Istio kinds: wrong types, unknown fields, values
outside the CRD's enums, patterns and ranges refuse the document (the API server would); fields Mecha
accepts but does not act on yet are declared honoured=False and reported as warnings.
The CRD's CEL rules live in checks.py."""

from __future__ import annotations

import re
from typing import Any

from xds.model.schema import AnyMap, Enum, F, ListOf, MapOf, Obj, Report, Spec, Str

NO = False  # F(spec, NO, why): accepted, reported as not honoured yet


class Pattern(Spec):
    """A string matching the CRD's validation pattern (and length limit)."""

    def __init__(self, name: str, pattern: str, max_length: int = 253) -> None:
        self.name, self._re, self._max = name, re.compile(pattern), max_length

    def check(self, value: Any, path: str, report: Report) -> bool:
        if not isinstance(value, str) or not self._re.fullmatch(value) or len(value) > self._max:
            return self._wrong(value, path, report)
        return True


class IntRange(Spec):
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.name = f"an integer {low}-{high}"

    def check(self, value: Any, path: str, report: Report) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
        return True if ok else self._wrong(value, path, report)


class IntChoice(Spec):
    def __init__(self, *values: int) -> None:
        self.values = values
        self.name = "one of " + ", ".join(str(v) for v in values)

    def check(self, value: Any, path: str, report: Report) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool) and value in self.values
        return True if ok else self._wrong(value, path, report)


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
HOSTNAME = Pattern("a hostname (RFC 1123, optionally prefixed by '*.')", rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
PRECISE_HOSTNAME = Pattern("a hostname (RFC 1123, no wildcard)", rf"{_LABEL}(\.{_LABEL})*")
OBJECT_NAME = Pattern("an object name (DNS subdomain)", rf"{_LABEL}(\.{_LABEL})*")
NAMESPACE = Pattern("a namespace (DNS label)", _LABEL, 63)
SECTION_NAME = Pattern("a section name (DNS subdomain)", rf"{_LABEL}(\.{_LABEL})*")
GROUP = Pattern("an API group (empty or a DNS subdomain)", rf"(|{_LABEL}(\.{_LABEL})*)")
KIND = Pattern("a kind", r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?", 63)
PORT = IntRange(1, 65535)
_PATH_PART = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
CONTROLLER = Pattern("a controller name (DOMAIN/PATH)", rf"{_LABEL}(\.{_LABEL})*/{_PATH_PART}")
PROTOCOL = Pattern(
    "a protocol (HTTP, HTTPS, TLS, TCP, UDP or DOMAIN/NAME)",
    rf"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|{_LABEL}(\.{_LABEL})*/[A-Za-z0-9]+",
    255,
)
HEADER_NAME = Pattern("an HTTP header name (RFC 7230 token)", r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+", 256)
# GEP-2257: 1 to 4 <number><unit> parts, units h, m, s, ms
DURATION = Pattern("a Gateway API duration like 10s, 1m30s or 500ms", r"([0-9]{1,5}(h|m|s|ms)){1,4}")
METHOD = Enum("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

PARAMETERS_REF = Obj({"group": F(GROUP), "kind": F(KIND), "name": F(Str), "namespace": F(NAMESPACE)})
GATEWAY_CLASS = Obj(
    {
        "controllerName": F(CONTROLLER),
        "parametersRef": F(PARAMETERS_REF, NO, "GatewayClass parameters are not read"),
        "description": F(Str),
    }
)

ROUTE_GROUP_KIND = Obj({"group": F(GROUP), "kind": F(KIND)})
# metav1.LabelSelector: the values rules per operator are checked in checks.py
SELECTOR_REQUIREMENT = Obj(
    {"key": F(Str), "operator": F(Enum("In", "NotIn", "Exists", "DoesNotExist")), "values": F(ListOf(Str))}
)
LABEL_SELECTOR = Obj({"matchLabels": F(MapOf(Str)), "matchExpressions": F(ListOf(SELECTOR_REQUIREMENT))})
ALLOWED_ROUTES = Obj(
    {
        "namespaces": F(Obj({"from": F(Enum("All", "Selector", "Same")), "selector": F(LABEL_SELECTOR)})),
        "kinds": F(ListOf(ROUTE_GROUP_KIND)),
    }
)
SECRET_REF = Obj({"group": F(GROUP), "kind": F(KIND), "name": F(OBJECT_NAME), "namespace": F(NAMESPACE)})
LISTENER_TLS = Obj(
    {
        "mode": F(Enum("Terminate", "Passthrough")),
        "certificateRefs": F(ListOf(SECRET_REF)),
        "options": F(MapOf(Str), NO, "listener TLS options are not applied"),
        "frontendValidation": F(AnyMap, NO, "client certificate validation is not applied yet"),
    }
)
LISTENER = Obj(
    {
        "name": F(SECTION_NAME),
        "hostname": F(HOSTNAME),
        "port": F(PORT),
        "protocol": F(PROTOCOL),
        "tls": F(LISTENER_TLS),
        "allowedRoutes": F(ALLOWED_ROUTES),
    }
)
GATEWAY = Obj(
    {
        "gatewayClassName": F(OBJECT_NAME),
        "listeners": F(ListOf(LISTENER)),
        "addresses": F(
            ListOf(Obj({"type": F(Str), "value": F(Str)})),
            NO,
            "addresses are not assigned: the gateway proxy binds what its node metadata says",
        ),
        "infrastructure": F(AnyMap, NO, "no gateway deployment is generated yet"),
        "allowedListeners": F(AnyMap, NO, "ListenerSets are not read yet"),
        "tls": F(AnyMap, NO, "Gateway-level TLS settings are not applied yet"),
        "defaultScope": F(Enum("All", "None"), NO, "default Gateways are not supported"),
    }
)

PARENT_REF = Obj(
    {
        "group": F(GROUP),
        "kind": F(KIND),
        "namespace": F(NAMESPACE),
        "name": F(OBJECT_NAME),
        "sectionName": F(SECTION_NAME),
        "port": F(PORT),
    }
)
BACKEND_OBJECT_REF = Obj(
    {
        "group": F(GROUP),
        "kind": F(KIND),
        "name": F(OBJECT_NAME),
        "namespace": F(NAMESPACE),
        "port": F(PORT),
    }
)
HTTP_HEADER = Obj({"name": F(HEADER_NAME), "value": F(Str)})
HEADER_FILTER = Obj({"set": F(ListOf(HTTP_HEADER)), "add": F(ListOf(HTTP_HEADER)), "remove": F(ListOf(Str))})
PATH_MODIFIER = Obj(
    {
        "type": F(Enum("ReplaceFullPath", "ReplacePrefixMatch")),
        "replaceFullPath": F(Str),
        "replacePrefixMatch": F(Str),
    }
)
REDIRECT = Obj(
    {
        "scheme": F(Enum("http", "https")),
        "hostname": F(PRECISE_HOSTNAME),
        "path": F(PATH_MODIFIER),
        "port": F(PORT),
        "statusCode": F(IntChoice(301, 302, 303, 307, 308)),
    }
)
URL_REWRITE = Obj({"hostname": F(PRECISE_HOSTNAME), "path": F(PATH_MODIFIER)})
FRACTION = Obj({"numerator": F(IntRange(0, 2**31 - 1)), "denominator": F(IntRange(1, 2**31 - 1))})
MIRROR = Obj({"backendRef": F(BACKEND_OBJECT_REF), "percent": F(IntRange(0, 100)), "fraction": F(FRACTION)})
FILTER_TYPES = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
    "ExternalAuth",
)
# filter type -> the field that carries its settings
FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
    "ExternalAuth": "externalAuth",
}
FILTER = Obj(
    {
        "type": F(Enum(*FILTER_TYPES)),
        "requestHeaderModifier": F(HEADER_FILTER),
        "responseHeaderModifier": F(HEADER_FILTER),
        "requestMirror": F(MIRROR),
        "requestRedirect": F(REDIRECT),
        "urlRewrite": F(URL_REWRITE),
        # the rules using these three are dropped (status PartiallyInvalid / Accepted False, UnsupportedValue)
        "extensionRef": F(Obj({"group": F(GROUP), "kind": F(KIND), "name": F(OBJECT_NAME)})),
        "cors": F(AnyMap),
        "externalAuth": F(AnyMap),
    }
)
BACKEND_REF = Obj(
    {
        "group": F(GROUP),
        "kind": F(KIND),
        "name": F(OBJECT_NAME),
        "namespace": F(NAMESPACE),
        "port": F(PORT),
        "weight": F(IntRange(0, 1_000_000)),
        "filters": F(ListOf(FILTER)),
    }
)
VALUE_MATCH = Obj({"type": F(Enum("Exact", "RegularExpression")), "name": F(HEADER_NAME), "value": F(Str)})
PATH_MATCH = Obj({"type": F(Enum("Exact", "PathPrefix", "RegularExpression")), "value": F(Str)})
MATCH = Obj(
    {
        "path": F(PATH_MATCH),
        "headers": F(ListOf(VALUE_MATCH)),
        "queryParams": F(ListOf(VALUE_MATCH)),
        "method": F(METHOD),
    }
)
RULE = Obj(
    {
        "name": F(SECTION_NAME),
        "matches": F(ListOf(MATCH)),
        "filters": F(ListOf(FILTER)),
        "backendRefs": F(ListOf(BACKEND_REF)),
        "timeouts": F(Obj({"request": F(DURATION), "backendRequest": F(DURATION)})),
        "retry": F(AnyMap, NO, "HTTPRoute retry is not applied yet: the mesh default retry policy is used"),
        "sessionPersistence": F(AnyMap, NO, "session persistence is not supported yet"),
    }
)
HTTP_ROUTE = Obj(
    {
        "parentRefs": F(ListOf(PARENT_REF)),
        "hostnames": F(ListOf(HOSTNAME)),
        "rules": F(ListOf(RULE)),
        "useDefaultGateways": F(Enum("All", "None"), NO, "default Gateways are not supported"),
    }
)

# GRPCRoute (apis/v1/grpcroute_types.go): the HTTPRoute pieces it shares, its own matches and filters
GRPC_FILTER_TYPES = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")
GRPC_FILTER = Obj(
    {
        "type": F(Enum(*GRPC_FILTER_TYPES)),
        "requestHeaderModifier": F(HEADER_FILTER),
        "responseHeaderModifier": F(HEADER_FILTER),
        "requestMirror": F(MIRROR),
        "extensionRef": F(Obj({"group": F(GROUP), "kind": F(KIND), "name": F(OBJECT_NAME)})),
    }
)
GRPC_BACKEND_REF = Obj(
    {
        "group": F(GROUP),
        "kind": F(KIND),
        "name": F(OBJECT_NAME),
        "namespace": F(NAMESPACE),
        "port": F(PORT),
        "weight": F(IntRange(0, 1_000_000)),
        "filters": F(ListOf(GRPC_FILTER)),
    }
)
GRPC_METHOD_MATCH = Obj({"type": F(Enum("Exact", "RegularExpression")), "service": F(Str), "method": F(Str)})
GRPC_MATCH = Obj({"method": F(GRPC_METHOD_MATCH), "headers": F(ListOf(VALUE_MATCH))})
GRPC_RULE = Obj(
    {
        "name": F(SECTION_NAME),
        "matches": F(ListOf(GRPC_MATCH)),
        "filters": F(ListOf(GRPC_FILTER)),
        "backendRefs": F(ListOf(GRPC_BACKEND_REF)),
        "sessionPersistence": F(AnyMap, NO, "session persistence is not supported yet"),
    }
)
GRPC_ROUTE = Obj(
    {
        "parentRefs": F(ListOf(PARENT_REF)),
        "hostnames": F(ListOf(HOSTNAME)),
        "rules": F(ListOf(GRPC_RULE)),
        "useDefaultGateways": F(Enum("All", "None"), NO, "default Gateways are not supported"),
    }
)

# ReferenceGrant (apis/v1/referencegrant_types.go; v1beta1 and v1alpha2 have the same spec)
REFERENCE_GRANT = Obj(
    {
        "from": F(ListOf(Obj({"group": F(GROUP), "kind": F(KIND), "namespace": F(NAMESPACE)}))),
        "to": F(ListOf(Obj({"group": F(GROUP), "kind": F(KIND), "name": F(OBJECT_NAME)}))),
    }
)

# TLSRoute (apis/v1alpha2, v1alpha3 and v1 tlsroute_types.go) and TCPRoute (apis/v1alpha2): one rule of
# weighted backendRefs, no filters
L4_BACKEND_REF = Obj(
    {
        "group": F(GROUP),
        "kind": F(KIND),
        "name": F(OBJECT_NAME),
        "namespace": F(NAMESPACE),
        "port": F(PORT),
        "weight": F(IntRange(0, 1_000_000)),
    }
)
L4_RULE = Obj({"name": F(SECTION_NAME), "backendRefs": F(ListOf(L4_BACKEND_REF))})
TLS_ROUTE = Obj(
    {
        "parentRefs": F(ListOf(PARENT_REF)),
        "hostnames": F(ListOf(HOSTNAME)),
        "rules": F(ListOf(L4_RULE)),
        "useDefaultGateways": F(Enum("All", "None"), NO, "default Gateways are not supported"),
    }
)
TCP_ROUTE = Obj(
    {
        "parentRefs": F(ListOf(PARENT_REF)),
        "rules": F(ListOf(L4_RULE)),
        "useDefaultGateways": F(Enum("All", "None"), NO, "default Gateways are not supported"),
    }
)

# BackendTLSPolicy (apis/v1alpha3 and v1 backendtlspolicy_types.go)
TARGET_REF = Obj({"group": F(GROUP), "kind": F(KIND), "name": F(OBJECT_NAME), "sectionName": F(SECTION_NAME)})
SUBJECT_ALT_NAME = Obj({"type": F(Enum("Hostname", "URI")), "hostname": F(HOSTNAME), "uri": F(Str)})
BACKEND_TLS_VALIDATION = Obj(
    {
        "caCertificateRefs": F(ListOf(Obj({"group": F(GROUP), "kind": F(KIND), "name": F(OBJECT_NAME)}))),
        "wellKnownCACertificates": F(Str),
        "hostname": F(PRECISE_HOSTNAME),
        "subjectAltNames": F(ListOf(SUBJECT_ALT_NAME)),
    }
)
BACKEND_TLS_POLICY = Obj(
    {
        "targetRefs": F(ListOf(TARGET_REF)),
        "validation": F(BACKEND_TLS_VALIDATION),
        "options": F(MapOf(Str), NO, "BackendTLSPolicy options are not applied"),
    }
)

SPECS: dict[str, Obj] = {
    "GatewayClass": GATEWAY_CLASS,
    "Gateway": GATEWAY,
    "HTTPRoute": HTTP_ROUTE,
    "GRPCRoute": GRPC_ROUTE,
    "ReferenceGrant": REFERENCE_GRANT,
    "TLSRoute": TLS_ROUTE,
    "TCPRoute": TCP_ROUTE,
    "BackendTLSPolicy": BACKEND_TLS_POLICY,
}
