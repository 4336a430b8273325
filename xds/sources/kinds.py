"""Which (group, kind) pairs Mecha understands, and at which API versions."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum

from xds.gatewayapi import kinds as gateway_api


class Family(StrEnum):
    ISTIO_NETWORKING = "istio-networking"  # modelled and translated
    ISTIO_CARRIED = "istio-carried"  # accepted, carried for later stages
    DAPR = "dapr"
    GATEWAY_API = "gateway-api"  # converted into Gateway + VirtualService (xds/gatewayapi)


@dataclass(frozen=True, slots=True)
class KindInfo:
    group: str
    kind: str
    versions: frozenset[str]
    family: Family


_NET = frozenset({"v1alpha3", "v1beta1", "v1"})
_SEC = frozenset({"v1beta1", "v1"})
_DAPR = frozenset({"v1alpha1", "v2alpha1"})

KIND_TABLE: dict[tuple[str, str], KindInfo] = {
    (i.group, i.kind): i
    for i in (
        KindInfo("networking.istio.io", "VirtualService", _NET, Family.ISTIO_NETWORKING),
        KindInfo("networking.istio.io", "DestinationRule", _NET, Family.ISTIO_NETWORKING),
        KindInfo("networking.istio.io", "ServiceEntry", _NET, Family.ISTIO_NETWORKING),
        KindInfo("networking.istio.io", "WorkloadEntry", _NET, Family.ISTIO_NETWORKING),
        # template of auto-registered WorkloadEntries (xds/controlplane/registration.py)
        KindInfo("networking.istio.io", "WorkloadGroup", _NET, Family.ISTIO_CARRIED),
        KindInfo("networking.istio.io", "Gateway", _NET, Family.ISTIO_CARRIED),
        KindInfo("networking.istio.io", "Sidecar", _NET, Family.ISTIO_NETWORKING),
        KindInfo("security.istio.io", "PeerAuthentication", _SEC, Family.ISTIO_CARRIED),
        KindInfo("security.istio.io", "AuthorizationPolicy", _SEC, Family.ISTIO_CARRIED),
        KindInfo("security.istio.io", "RequestAuthentication", _SEC, Family.ISTIO_CARRIED),
        # tracing honoured (xds/model/telemetry.py); metrics and accessLogging reported as not supported
        KindInfo("telemetry.istio.io", "Telemetry", frozenset({"v1alpha1", "v1"}), Family.ISTIO_CARRIED),
        KindInfo("dapr.io", "Component", _DAPR, Family.DAPR),
        KindInfo("dapr.io", "Subscription", _DAPR, Family.DAPR),
        KindInfo("dapr.io", "Resiliency", _DAPR, Family.DAPR),
        KindInfo("dapr.io", "Configuration", _DAPR, Family.DAPR),
        *(
            KindInfo(gateway_api.GROUP, k, gateway_api.KIND_VERSIONS[k], Family.GATEWAY_API)
            for k in gateway_api.READ_KINDS
        ),
    )
}


def classify(api_version: str, kind: str) -> tuple[KindInfo | None, str | None]:
    """(info, None) when recognised; (None, None) for a foreign kind; (None, reason) for a bad version."""
    group, _, version = api_version.rpartition("/")
    info = KIND_TABLE.get((group, kind))
    if info is None:
        return None, None
    if version not in info.versions:
        allowed = ", ".join(sorted(info.versions))
        return None, f"{api_version!r} is not a supported version of {kind} (use {group}/{{{allowed}}})"
    return info, None


# Groups whose every kind Mecha knows: a kind it does not know there is a typo, not someone else's config.
MESH_GROUPS = frozenset(
    {"networking.istio.io", "security.istio.io", "telemetry.istio.io", "dapr.io", gateway_api.GROUP}
)
# Real kinds of those groups that Mecha does not read: skipped with a note (`mecha analyze` lists them).
UNREAD_MESH_KINDS = frozenset(
    {
        ("networking.istio.io", "EnvoyFilter"),
        ("networking.istio.io", "ProxyConfig"),
        ("networking.istio.io", "ExternalService"),  # pre-1.0 Istio (still in istiod's testdata)
        ("dapr.io", "HTTPEndpoint"),
        *((gateway_api.GROUP, k) for k in gateway_api.UNREAD_KINDS),
    }
)
# Kinds a mixed manifest carries next to mesh config, deliberately skipped: Kubernetes' own objects and the
# other Istio groups. Any other group is refused, so a mistyped apiVersion is not silently ignored.
SKIPPED_KINDS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "Namespace",
            "Pod",
            "Service",
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "Endpoints",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "LimitRange",
            "ResourceQuota",
            "List",
        }
    ),
    "apps": frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}),
    "batch": frozenset({"Job", "CronJob"}),
    "autoscaling": frozenset({"HorizontalPodAutoscaler"}),
    "policy": frozenset({"PodDisruptionBudget"}),
    "networking.k8s.io": frozenset({"Ingress", "IngressClass", "NetworkPolicy"}),
    "rbac.authorization.k8s.io": frozenset({"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}),
    "apiextensions.k8s.io": frozenset({"CustomResourceDefinition"}),
    "discovery.k8s.io": frozenset({"EndpointSlice"}),
    "extensions.istio.io": frozenset({"WasmPlugin"}),
}


# Istio kinds that change proxy behaviour Mecha cannot reproduce: accepted (so a whole Istio folder applies)
# but reported as dropped, a warning on `apply` and an error exit of `analyze`, never silently skipped.
DROPPED_KINDS: dict[tuple[str, str], str] = {
    ("networking.istio.io", "EnvoyFilter"): "raw Envoy patches are not applied to Mecha's listeners",
    ("extensions.istio.io", "WasmPlugin"): "Wasm filters are not loaded into the proxies",
    **{(gateway_api.GROUP, k): why for k, why in gateway_api.UNREAD_KINDS.items()},
}


def dropped_kind_reason(api_version: str, kind: str) -> str | None:
    """Why a kind's documents are dropped (what the proxies will lack), or None when it is not dropped."""
    return DROPPED_KINDS.get((api_version.rpartition("/")[0], kind))


def unknown_kind_problem(api_version: str, kind: str) -> str | None:
    """Why a kind KIND_TABLE does not hold is refused, or None when it is one Mecha deliberately skips."""
    group = api_version.rpartition("/")[0]
    if (group, kind) in UNREAD_MESH_KINDS or kind in SKIPPED_KINDS.get(group, frozenset()):
        return None
    if group in MESH_GROUPS:
        known = sorted(k for g, k in KIND_TABLE if g == group)
        close = difflib.get_close_matches(kind, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"known kinds: {', '.join(known)}"
        return f"{group} has no kind {kind!r} ({hint})"
    near = difflib.get_close_matches(kind, sorted({k for _, k in KIND_TABLE}), n=1, cutoff=0.8)
    hint = f"; did you mean {near[0]} ({_group_of(near[0])})?" if near else ""
    return f"{api_version} {kind} is neither mesh config Mecha reads nor a kind it skips{hint}"


def _group_of(kind: str) -> str:
    return next(g for g, k in KIND_TABLE if k == kind)
