"""Which (group, kind) pairs Mecha understands, and at which API versions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Family(StrEnum):
    ISTIO_NETWORKING = "istio-networking"  # modelled and translated
    ISTIO_CARRIED = "istio-carried"  # accepted, carried for later stages
    DAPR = "dapr"


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
        KindInfo("networking.istio.io", "Gateway", _NET, Family.ISTIO_CARRIED),
        KindInfo("networking.istio.io", "Sidecar", _NET, Family.ISTIO_NETWORKING),
        KindInfo("security.istio.io", "PeerAuthentication", _SEC, Family.ISTIO_CARRIED),
        KindInfo("security.istio.io", "AuthorizationPolicy", _SEC, Family.ISTIO_CARRIED),
        KindInfo("security.istio.io", "RequestAuthentication", _SEC, Family.ISTIO_CARRIED),
        KindInfo("dapr.io", "Component", _DAPR, Family.DAPR),
        KindInfo("dapr.io", "Subscription", _DAPR, Family.DAPR),
        KindInfo("dapr.io", "Resiliency", _DAPR, Family.DAPR),
        KindInfo("dapr.io", "Configuration", _DAPR, Family.DAPR),
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
