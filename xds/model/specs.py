"""Field tables for every modelled kind (istio/api protos; Dapr CRDs). honoured=False -> warning when set."""

from __future__ import annotations

from xds.model.gateway import GATEWAY_SPECS
from xds.model.schema import (
    AnyMap,
    AnyValue,
    Bool,
    Duration,
    Enum,
    F,
    Int,
    ListOf,
    MapOf,
    Num,
    Obj,
    Port,
    Regex,
    Spec,
    Str,
    UInt,
)
from xds.model.security import CLIENT_TLS, SECURITY_SPECS
from xds.model.telemetry import TELEMETRY_SPECS
from xds.model.workload_group import WORKLOAD_GROUP_SPECS

NO = False  # readability: F(spec, NO) = accepted but not translated yet
NOT_L4 = "Mecha's TCP listeners are bound on loopback ports from node metadata, so there is no VIP to match"
PER_PROXY = "matching on the client's source subnet is not implemented"

STRING_MATCH = Obj(
    {"exact": F(Str), "prefix": F(Str), "regex": F(Regex)}, one_of=("exact", "prefix", "regex")
)
LABELS = MapOf(Str)
PORT_SELECTOR = Obj({"number": F(Port)})
DESTINATION = Obj({"host": F(Str), "subset": F(Str), "port": F(PORT_SELECTOR)})

PERCENT = Obj({"value": F(Num)})
HEADER_OPS = Obj({"set": F(MapOf(Str)), "add": F(MapOf(Str)), "remove": F(ListOf(Str))})
HEADERS = Obj({"request": F(HEADER_OPS), "response": F(HEADER_OPS)})

HTTP_MATCH = Obj(
    {
        "name": F(Str),
        "uri": F(STRING_MATCH),
        "scheme": F(STRING_MATCH, NO),
        "method": F(STRING_MATCH),
        "authority": F(STRING_MATCH),
        "headers": F(MapOf(STRING_MATCH)),
        "port": F(Port),
        "sourceLabels": F(LABELS),
        "gateways": F(ListOf(Str), NO, "per-gateway filtering inside a match is not implemented"),
        "queryParams": F(MapOf(STRING_MATCH)),
        "ignoreUriCase": F(Bool),
        "withoutHeaders": F(MapOf(STRING_MATCH)),
        "sourceNamespace": F(Str),
        "statPrefix": F(Str, NO, "Route.stat_prefix is not emitted"),
    }
)
RETRY = Obj(
    {
        "attempts": F(Int),
        "perTryTimeout": F(Duration),
        "retryOn": F(Str),
        "retryRemoteLocalities": F(Bool, NO),
        "retryIgnorePreviousHosts": F(Bool, NO),
        "backoff": F(Duration, NO),
    }
)
REWRITE = Obj(
    {"uri": F(Str), "authority": F(Str), "uriRegexRewrite": F(Obj({"match": F(Regex), "rewrite": F(Str)}))}
)
HTTP_ROUTE_DESTINATION = Obj({"destination": F(DESTINATION), "weight": F(Int), "headers": F(HEADERS)})
REDIRECT = Obj(
    {
        "uri": F(Str),
        "authority": F(Str),
        "port": F(Port),
        "derivePort": F(Enum("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT")),
        "scheme": F(Str),
        "redirectCode": F(UInt),
    },
    one_of=("port", "derivePort"),
)
DIRECT_RESPONSE = Obj(
    {"status": F(UInt), "body": F(Obj({"string": F(Str), "bytes": F(Str)}, one_of=("string", "bytes")))}
)
FAULT = Obj(
    {
        "delay": F(
            Obj(
                {
                    "fixedDelay": F(Duration),
                    "exponentialDelay": F(Duration, NO, "istiod drops exponential delays too"),
                    "percentage": F(PERCENT),
                    "percent": F(Int, differs="legacy integer percent: sent as N/HUNDRED, as istiod does"),
                },
                one_of=("fixedDelay", "exponentialDelay"),
            )
        ),
        "abort": F(
            Obj(
                {
                    "httpStatus": F(Int),
                    "grpcStatus": F(Str),
                    "http2Error": F(Str, NO, "istiod drops http2Error aborts too"),
                    "percentage": F(PERCENT),
                    "percent": F(Int, NO, "deprecated; istiod ignores it: use percentage.value"),
                },
                one_of=("httpStatus", "grpcStatus", "http2Error"),
            )
        ),
    }
)
CORS = Obj(
    {
        "allowOrigins": F(ListOf(STRING_MATCH)),
        "allowOrigin": F(ListOf(Str), differs="deprecated: each entry becomes an exact origin match"),
        "allowMethods": F(ListOf(Str)),
        "allowHeaders": F(ListOf(Str)),
        "exposeHeaders": F(ListOf(Str)),
        "maxAge": F(Duration),
        "allowCredentials": F(Bool),
        "unmatchedPreflights": F(Enum("UNSPECIFIED", "FORWARD", "IGNORE")),
    }
)
HTTP_ROUTE = Obj(
    {
        "name": F(Str),
        "match": F(ListOf(HTTP_MATCH)),
        "route": F(ListOf(HTTP_ROUTE_DESTINATION)),
        "redirect": F(REDIRECT),
        "directResponse": F(DIRECT_RESPONSE),
        "delegate": F(Obj({"name": F(Str), "namespace": F(Str)})),
        "rewrite": F(REWRITE),
        "timeout": F(Duration),
        "retries": F(RETRY),
        "fault": F(FAULT),
        "mirror": F(DESTINATION),
        "mirrors": F(ListOf(Obj({"destination": F(DESTINATION), "percentage": F(PERCENT)}))),
        "mirrorPercent": F(UInt, differs="deprecated integer percent: sent as N/HUNDRED, as istiod does"),
        "mirrorPercentage": F(PERCENT),
        "corsPolicy": F(CORS),
        "headers": F(HEADERS),
    }
)
L4_MATCH_FIELDS = {
    "destinationSubnets": F(ListOf(Str), NO, NOT_L4),
    "port": F(Port),
    "sourceLabels": F(LABELS),
    "gateways": F(ListOf(Str), NO, "per-gateway filtering inside a match is not implemented"),
    "sourceNamespace": F(Str),
    "sourceSubnet": F(Str, NO, PER_PROXY),
}
L4_DESTINATION = Obj({"destination": F(DESTINATION), "weight": F(Int)})
TCP_ROUTE = Obj({"match": F(ListOf(Obj(L4_MATCH_FIELDS))), "route": F(ListOf(L4_DESTINATION))})
TLS_ROUTE = Obj(
    {
        "match": F(ListOf(Obj({**L4_MATCH_FIELDS, "sniHosts": F(ListOf(Str))}))),
        "route": F(ListOf(L4_DESTINATION)),
    }
)
VIRTUAL_SERVICE = Obj(
    {
        "hosts": F(ListOf(Str)),
        "gateways": F(ListOf(Str)),
        "http": F(ListOf(HTTP_ROUTE)),
        "tls": F(ListOf(TLS_ROUTE)),
        "tcp": F(ListOf(TCP_ROUTE)),
        "exportTo": F(ListOf(Str)),
    }
)

CONNECTION_POOL = Obj(
    {
        "tcp": F(
            Obj(
                {
                    "maxConnections": F(Int),
                    "connectTimeout": F(Duration),
                    "tcpKeepalive": F(AnyMap, NO, "upstream TCP keepalive is not emitted"),
                    "maxConnectionDuration": F(Duration, NO, "not emitted"),
                    "idleTimeout": F(Duration),
                }
            )
        ),
        "http": F(
            Obj(
                {
                    "http1MaxPendingRequests": F(Int),
                    "http2MaxRequests": F(Int),
                    "maxRequestsPerConnection": F(Int),
                    "maxRetries": F(Int),
                    "idleTimeout": F(Duration),
                    "h2UpgradePolicy": F(
                        Enum("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"), NO, "the port protocol decides h2"
                    ),
                    "useClientProtocol": F(Bool, NO, "the port protocol decides h2"),
                    "maxConcurrentStreams": F(Int, NO, "not emitted"),
                }
            )
        ),
    }
)
OUTLIER = Obj(
    {
        "splitExternalLocalOriginErrors": F(Bool, NO, "not emitted"),
        "consecutiveLocalOriginFailures": F(UInt, NO, "not emitted"),
        "consecutiveGatewayErrors": F(UInt),
        "consecutive5xxErrors": F(UInt),
        "interval": F(Duration),
        "baseEjectionTime": F(Duration),
        "maxEjectionPercent": F(Int),
        "minHealthPercent": F(Int),
        "consecutiveErrors": F(Int, NO, "deprecated; use consecutive5xxErrors"),
    }
)
LB_SIMPLE = Enum("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST")
CONSISTENT_HASH = Obj(
    {
        "httpHeaderName": F(Str),
        "httpCookie": F(
            Obj(
                {
                    "name": F(Str),
                    "path": F(Str),
                    "ttl": F(Duration),
                    "attributes": F(ListOf(Obj({"name": F(Str), "value": F(Str)}))),
                }
            )
        ),
        "useSourceIp": F(Bool),
        "httpQueryParameterName": F(Str),
        "ringHash": F(Obj({"minimumRingSize": F(UInt)})),
        "maglev": F(Obj({"tableSize": F(UInt)})),
        "minimumRingSize": F(UInt, differs="deprecated: same as ringHash.minimumRingSize"),
    },
    one_of=("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"),
)
LOCALITY_LB = Obj(
    {
        "enabled": F(Bool),
        "distribute": F(ListOf(Obj({"from": F(Str), "to": F(MapOf(UInt))}))),
        "failover": F(ListOf(Obj({"from": F(Str), "to": F(Str)}))),
        "failoverPriority": F(ListOf(Str)),
    },
    one_of=("distribute", "failover"),
)
LOAD_BALANCER = Obj(
    {
        "simple": F(LB_SIMPLE),
        "consistentHash": F(CONSISTENT_HASH),
        "localityLbSetting": F(LOCALITY_LB),
        "warmupDurationSecs": F(Duration, NO, "slow start is not emitted"),
        "warmup": F(AnyMap, NO, "slow start is not emitted"),
    },
    one_of=("simple", "consistentHash"),
)
_POLICY_FIELDS = {
    "loadBalancer": F(LOAD_BALANCER),
    "connectionPool": F(CONNECTION_POOL),
    "outlierDetection": F(OUTLIER),
    "tls": F(CLIENT_TLS),
    "tunnel": F(AnyMap, NO, "HTTP CONNECT tunnelling is not implemented"),
    "proxyProtocol": F(AnyMap, NO, "not implemented"),
    "retryBudget": F(AnyMap, NO, "not implemented"),
}
PORT_POLICY = Obj({"port": F(PORT_SELECTOR), **{k: v for k, v in _POLICY_FIELDS.items()}})
TRAFFIC_POLICY = Obj({**_POLICY_FIELDS, "portLevelSettings": F(ListOf(PORT_POLICY))})
SUBSET = Obj({"name": F(Str), "labels": F(LABELS), "trafficPolicy": F(TRAFFIC_POLICY)})
DESTINATION_RULE = Obj(
    {
        "host": F(Str),
        "trafficPolicy": F(TRAFFIC_POLICY),
        "subsets": F(ListOf(SUBSET)),
        "exportTo": F(ListOf(Str)),
        "workloadSelector": F(AnyMap, NO, "a DestinationRule applies to every proxy it is visible to"),
    }
)

WORKLOAD = Obj(
    {
        "address": F(Str),
        "ports": F(MapOf(Port)),
        "labels": F(LABELS),
        "network": F(Str, NO, "single network"),
        "locality": F(Str),
        "weight": F(UInt),
        "serviceAccount": F(Str),
    }
)
SERVICE_PORT = Obj(
    {
        "number": F(Port),
        "protocol": F(Str),
        "name": F(Str),
        "targetPort": F(Port),
    }
)
SERVICE_ENTRY = Obj(
    {
        "hosts": F(ListOf(Str)),
        "addresses": F(
            ListOf(Str), differs="names the TCP listener <VIP>_<port>; it binds a port from node metadata"
        ),
        "ports": F(ListOf(SERVICE_PORT)),
        "location": F(Enum("MESH_EXTERNAL", "MESH_INTERNAL")),
        "resolution": F(Enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN")),
        "endpoints": F(ListOf(WORKLOAD)),
        "workloadSelector": F(Obj({"labels": F(LABELS)})),
        "exportTo": F(ListOf(Str)),
        "subjectAltNames": F(ListOf(Str)),
    }
)
NO_CAPTURE = "Mecha never captures traffic: listeners are bound explicitly, whatever the mode"
CAPTURE_MODE = Enum("DEFAULT", "IPTABLES", "NONE")
SIDECAR_PORT = Obj(
    {"number": F(Port), "protocol": F(Str), "name": F(Str), "targetPort": F(Port, NO, "not used")}
)
SIDECAR = Obj(
    {
        "workloadSelector": F(Obj({"labels": F(LABELS)})),
        "egress": F(
            ListOf(
                Obj(
                    {
                        "hosts": F(ListOf(Str)),
                        "port": F(
                            SIDECAR_PORT,
                            differs="an explicit listener bound on 127.0.0.1:<port> (no capture): apps "
                            "send to that port; its routes hold only the listed hosts",
                        ),
                        "bind": F(Str),
                        "captureMode": F(CAPTURE_MODE, differs=NO_CAPTURE),
                    }
                )
            )
        ),
        "ingress": F(
            ListOf(
                Obj(
                    {
                        "port": F(SIDECAR_PORT),
                        "bind": F(Str),
                        "defaultEndpoint": F(Str),
                        "captureMode": F(CAPTURE_MODE, differs=NO_CAPTURE),
                        "tls": F(AnyMap, NO, "no TLS termination on Sidecar ingress listeners"),
                        "connectionPool": F(AnyMap, NO, "not implemented"),
                    }
                )
            )
        ),
        "outboundTrafficPolicy": F(
            Obj(
                {
                    "mode": F(
                        Enum("REGISTRY_ONLY", "ALLOW_ANY"),
                        differs="ALLOW_ANY forwards by Host header through a dynamic forward proxy "
                        "(no capture, no original destination); without a Sidecar the default is "
                        "REGISTRY_ONLY (istiod's mesh default is ALLOW_ANY)",
                    ),
                    "egressProxy": F(AnyMap, NO, "no passthrough traffic"),
                }
            )
        ),
        "inboundConnectionPool": F(AnyMap, NO, "not implemented"),
    }
)

# Dapr: strict at the spec level, free-form inside values.
_DAPR_META_ITEM = Obj(
    {"name": F(Str), "value": F(AnyValue), "secretKeyRef": F(AnyMap), "envRef": F(Str)}, lenient=True
)
COMPONENT = Obj(
    {
        "type": F(Str),
        "version": F(Str),
        "metadata": F(ListOf(_DAPR_META_ITEM)),
        "initTimeout": F(Str),
        "ignoreErrors": F(Bool),
    }
)
_SUB_RULE = Obj({"match": F(Str), "path": F(Str)})
SUBSCRIPTION = Obj(
    {
        "pubsubname": F(Str),
        "topic": F(Str),
        "route": F(Str),
        "routes": F(Obj({"rules": F(ListOf(_SUB_RULE)), "default": F(Str)})),
        "metadata": F(MapOf(AnyValue)),
        "deadLetterTopic": F(Str),
        "bulkSubscribe": F(AnyMap),
    }
)
RESILIENCY = Obj(
    {
        "policies": F(
            Obj({"timeouts": F(MapOf(AnyValue)), "retries": F(AnyMap), "circuitBreakers": F(AnyMap)})
        ),
        "targets": F(Obj({"apps": F(AnyMap), "actors": F(AnyMap), "components": F(AnyMap)})),
    }
)

SPEC_BY_KIND: dict[str, Spec] = {
    "VirtualService": VIRTUAL_SERVICE,
    "DestinationRule": DESTINATION_RULE,
    "ServiceEntry": SERVICE_ENTRY,
    "WorkloadEntry": WORKLOAD,
    "Sidecar": SIDECAR,
    "Component": COMPONENT,
    "Subscription": SUBSCRIPTION,
    "Resiliency": RESILIENCY,
    **SECURITY_SPECS,
    **GATEWAY_SPECS,
    **TELEMETRY_SPECS,
    **WORKLOAD_GROUP_SPECS,
}
# Kinds checked by their table but kept as CarriedResource (xds.model.security/gateway parse them).
CHECKED_CARRIED: frozenset[str] = (
    frozenset(SECURITY_SPECS)
    | frozenset(GATEWAY_SPECS)
    | frozenset(TELEMETRY_SPECS)
    | frozenset(WORKLOAD_GROUP_SPECS)
)
