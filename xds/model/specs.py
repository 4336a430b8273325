"""Field tables for every modelled kind (istio/api protos; Dapr CRDs). honoured=False -> warning when set."""

from __future__ import annotations

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
    Obj,
    Port,
    Spec,
    Str,
    UInt,
)

NO = False  # readability: F(spec, NO) = accepted but not translated yet

STRING_MATCH = Obj({"exact": F(Str), "prefix": F(Str), "regex": F(Str)}, one_of=("exact", "prefix", "regex"))
LABELS = MapOf(Str)
PORT_SELECTOR = Obj({"number": F(Port)})
DESTINATION = Obj({"host": F(Str), "subset": F(Str), "port": F(PORT_SELECTOR)})

HTTP_MATCH = Obj(
    {
        "name": F(Str),
        "uri": F(STRING_MATCH),
        "scheme": F(STRING_MATCH, NO),
        "method": F(STRING_MATCH),
        "authority": F(STRING_MATCH),
        "headers": F(MapOf(STRING_MATCH)),
        "port": F(Port),
        "sourceLabels": F(LABELS, NO, "per-proxy source filtering"),
        "gateways": F(ListOf(Str), NO),
        "queryParams": F(MapOf(STRING_MATCH)),
        "ignoreUriCase": F(Bool),
        "withoutHeaders": F(MapOf(STRING_MATCH)),
        "sourceNamespace": F(Str, NO),
        "statPrefix": F(Str, NO),
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
REWRITE = Obj({"uri": F(Str), "authority": F(Str), "uriRegexRewrite": F(AnyMap, NO)})
HTTP_ROUTE_DESTINATION = Obj({"destination": F(DESTINATION), "weight": F(Int), "headers": F(AnyMap, NO)})
HTTP_ROUTE = Obj(
    {
        "name": F(Str),
        "match": F(ListOf(HTTP_MATCH)),
        "route": F(ListOf(HTTP_ROUTE_DESTINATION)),
        "redirect": F(AnyMap, NO),
        "directResponse": F(AnyMap, NO),
        "delegate": F(Obj({"name": F(Str), "namespace": F(Str)})),
        "rewrite": F(REWRITE),
        "timeout": F(Duration),
        "retries": F(RETRY),
        "fault": F(AnyMap, NO),
        "mirror": F(DESTINATION, NO, "destination is still checked"),
        "mirrors": F(ListOf(Obj({"destination": F(DESTINATION), "percentage": F(AnyMap)})), NO),
        "mirrorPercent": F(UInt, NO),
        "mirrorPercentage": F(AnyMap, NO),
        "corsPolicy": F(AnyMap, NO),
        "headers": F(AnyMap, NO),
    }
)
VIRTUAL_SERVICE = Obj(
    {
        "hosts": F(ListOf(Str)),
        "gateways": F(ListOf(Str)),
        "http": F(ListOf(HTTP_ROUTE)),
        "tls": F(ListOf(AnyMap), NO),
        "tcp": F(ListOf(AnyMap), NO),
        "exportTo": F(ListOf(Str), NO, "every proxy sees every resource"),
    }
)

CONNECTION_POOL = Obj(
    {
        "tcp": F(
            Obj(
                {
                    "maxConnections": F(Int),
                    "connectTimeout": F(Duration),
                    "tcpKeepalive": F(AnyMap, NO),
                    "maxConnectionDuration": F(Duration, NO),
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
                    "h2UpgradePolicy": F(Enum("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"), NO),
                    "useClientProtocol": F(Bool, NO),
                    "maxConcurrentStreams": F(Int, NO),
                }
            )
        ),
    }
)
OUTLIER = Obj(
    {
        "splitExternalLocalOriginErrors": F(Bool, NO),
        "consecutiveLocalOriginFailures": F(UInt, NO),
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
LOAD_BALANCER = Obj(
    {
        "simple": F(LB_SIMPLE),
        "consistentHash": F(AnyMap, NO),
        "localityLbSetting": F(AnyMap, NO),
        "warmupDurationSecs": F(Duration, NO),
        "warmup": F(AnyMap, NO),
    },
    one_of=("simple", "consistentHash"),
)
_POLICY_FIELDS = {
    "loadBalancer": F(LOAD_BALANCER),
    "connectionPool": F(CONNECTION_POOL),
    "outlierDetection": F(OUTLIER),
    "tls": F(AnyMap, NO, "plaintext upstreams"),
    "tunnel": F(AnyMap, NO),
    "proxyProtocol": F(AnyMap, NO),
    "retryBudget": F(AnyMap, NO),
}
PORT_POLICY = Obj({"port": F(PORT_SELECTOR), **{k: v for k, v in _POLICY_FIELDS.items()}})
TRAFFIC_POLICY = Obj({**_POLICY_FIELDS, "portLevelSettings": F(ListOf(PORT_POLICY), NO)})
SUBSET = Obj({"name": F(Str), "labels": F(LABELS), "trafficPolicy": F(TRAFFIC_POLICY)})
DESTINATION_RULE = Obj(
    {
        "host": F(Str),
        "trafficPolicy": F(TRAFFIC_POLICY),
        "subsets": F(ListOf(SUBSET)),
        "exportTo": F(ListOf(Str), NO, "every proxy sees every resource"),
        "workloadSelector": F(AnyMap, NO),
    }
)

WORKLOAD = Obj(
    {
        "address": F(Str),
        "ports": F(MapOf(Port)),
        "labels": F(LABELS),
        "network": F(Str, NO),
        "locality": F(Str, NO),
        "weight": F(UInt),
        "serviceAccount": F(Str, NO),
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
        "addresses": F(ListOf(Str), NO, "no VIP listeners"),
        "ports": F(ListOf(SERVICE_PORT)),
        "location": F(Enum("MESH_EXTERNAL", "MESH_INTERNAL")),
        "resolution": F(Enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN")),
        "endpoints": F(ListOf(WORKLOAD)),
        "workloadSelector": F(Obj({"labels": F(LABELS)})),
        "exportTo": F(ListOf(Str), NO, "every proxy sees every resource"),
        "subjectAltNames": F(ListOf(Str), NO),
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
    "Component": COMPONENT,
    "Subscription": SUBSCRIPTION,
    "Resiliency": RESILIENCY,
}
