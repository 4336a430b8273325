"""Status of Gateway API objects as the API server would hold it: metav1.Conditions (type, status, reason,
message, observedGeneration, lastTransitionTime) on GatewayClass, Gateway (+ listeners) and HTTPRoute
(parents[]). Conversion (convert.py) decides the conditions; `render` writes the Kubernetes shape. There is
no API server to keep lastTransitionTime, so a TransitionClock remembers when each condition last changed
status in this process (the first time it is seen: the time it was first computed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from xds.gatewayapi.kinds import CONTROLLER_NAME, GROUP
from xds.gatewayapi.objects import ObjectMeta

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


def ok(kind: str, reason: str, message: str) -> Condition:
    return Condition(kind, TRUE, reason, message)


def failed(kind: str, reason: str, message: str) -> Condition:
    return Condition(kind, FALSE, reason, message)


@dataclass
class ListenerStatus:
    name: str
    supported_kinds: list[tuple[str, str]]
    conditions: list[Condition]
    attached_routes: int = 0


@dataclass
class ParentStatus:
    parent_ref: dict[str, Any]  # as written in spec.parentRefs
    conditions: list[Condition]


@dataclass
class ObjectStatus:
    """One object's status: conditions (GatewayClass, Gateway), listeners (Gateway), parents (routes)."""

    meta: ObjectMeta
    conditions: list[Condition] = field(default_factory=list)
    listeners: list[ListenerStatus] | None = None
    parents: list[ParentStatus] | None = None
    ancestors: list[ParentStatus] | None = None  # policies (BackendTLSPolicy): the Gateways they affect

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


Clock = Callable[[tuple[str, ...], Condition], str]


def _epoch_clock(_key: tuple[str, ...], _condition: Condition) -> str:
    return "1970-01-01T00:00:00Z"


class TransitionClock:
    """(object, path, condition type) -> when its status last changed, as seen by this process."""

    def __init__(self, now: Callable[[], str] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self._seen: dict[tuple[str, ...], tuple[str, str]] = {}

    def __call__(self, key: tuple[str, ...], condition: Condition) -> str:
        found = self._seen.get(key)
        if found is None or found[0] != condition.status:
            found = (condition.status, self._now())
            self._seen[key] = found
        return found[1]


def _conditions(
    items: list[Condition], meta: ObjectMeta, where: tuple[str, ...], clock: Clock
) -> list[dict[str, Any]]:
    return [
        {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
            "observedGeneration": meta.generation,
            "lastTransitionTime": clock((meta.kind, meta.namespace, meta.name, *where, c.type), c),
        }
        for c in items
    ]


def _defaulted(ref: dict[str, Any]) -> dict[str, Any]:
    """A parentRef as the API server stores it: the CRD defaults group and kind (the suite compares both)."""
    return {"group": GROUP, "kind": "Gateway", **ref}


def render(status: ObjectStatus, clock: Clock = _epoch_clock) -> dict[str, Any]:
    """The object as `kubectl get -o yaml` would show it, metadata and status only."""
    meta = status.meta
    metadata: dict[str, Any] = {"name": meta.name, "generation": meta.generation}
    if meta.kind != "GatewayClass":
        metadata["namespace"] = meta.namespace
    if meta.created:
        metadata["creationTimestamp"] = meta.created
    body: dict[str, Any] = {}
    if status.parents is not None:
        body["parents"] = [
            {
                "parentRef": _defaulted(p.parent_ref),
                "controllerName": CONTROLLER_NAME,
                "conditions": _conditions(p.conditions, meta, ("parents", _ref_key(p.parent_ref)), clock),
            }
            for p in status.parents
        ]
    elif status.ancestors is not None:  # a policy's PolicyStatus
        body["ancestors"] = [
            {
                "ancestorRef": a.parent_ref,
                "controllerName": CONTROLLER_NAME,
                "conditions": _conditions(a.conditions, meta, ("ancestors", _ref_key(a.parent_ref)), clock),
            }
            for a in status.ancestors
        ]
    else:
        body["conditions"] = _conditions(status.conditions, meta, (), clock)
    if status.listeners is not None:
        body["listeners"] = [
            {
                "name": ls.name,
                "supportedKinds": [{"group": g, "kind": k} for g, k in ls.supported_kinds],
                "attachedRoutes": ls.attached_routes,
                "conditions": _conditions(ls.conditions, meta, ("listeners", ls.name), clock),
            }
            for ls in status.listeners
        ]
    return {"apiVersion": meta.api_version, "kind": meta.kind, "metadata": metadata, "status": body}


def _ref_key(ref: dict[str, Any]) -> str:
    return "/".join(
        str(ref.get(k) or "") for k in ("group", "kind", "namespace", "name", "sectionName", "port")
    )


def pending(meta: ObjectMeta) -> ObjectStatus:
    """What the CRD defaults a Gateway's status to until a controller takes it (not Mecha's class)."""
    waiting = "Waiting for controller"
    return ObjectStatus(
        meta,
        [
            Condition("Accepted", UNKNOWN, "Pending", waiting),
            Condition("Programmed", UNKNOWN, "Pending", waiting),
        ],
    )


HTTP_ROUTE_KIND = (GROUP, "HTTPRoute")
GRPC_ROUTE_KIND = (GROUP, "GRPCRoute")
