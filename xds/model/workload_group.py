"""WorkloadGroup (networking.istio.io): the template auto-registered WorkloadEntries are made from.

Kept as a CarriedResource (schema-checked by WORKLOAD_GROUP_SPECS); xds/controlplane/registration.py reads
it with `workload_group()` when a proxy naming the group connects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from xds.model.meta import CarriedResource, Labels
from xds.model.schema import F, Int, ListOf, MapOf, Obj, Port, Spec, Str, UInt

NO = False
LABELS = MapOf(Str)
_PROBE_NOTE = (
    "health comes from the capability service's Dapr app health check (appHealthCheckPath...); a probe "
    "only makes the entry unhealthy until the first report"
)

WORKLOAD_TEMPLATE = Obj(
    {
        "address": F(Str, NO, "the address comes from the connecting proxy"),
        "ports": F(MapOf(Port)),
        "labels": F(LABELS),
        "network": F(Str, NO, "single network"),
        "locality": F(Str),
        "weight": F(UInt),
        "serviceAccount": F(Str),
    }
)
_HTTP_GET = Obj(
    {
        "path": F(Str),
        "port": F(Port),
        "host": F(Str),
        "scheme": F(Str),
        "httpHeaders": F(ListOf(Obj({"name": F(Str), "value": F(Str)}))),
    }
)
PROBE = Obj(
    {
        "initialDelaySeconds": F(Int),
        "timeoutSeconds": F(Int),
        "periodSeconds": F(Int),
        "successThreshold": F(Int),
        "failureThreshold": F(Int),
        "httpGet": F(_HTTP_GET),
        "tcpSocket": F(Obj({"host": F(Str), "port": F(Port)})),
        "exec": F(Obj({"command": F(ListOf(Str))})),
        "grpc": F(Obj({"port": F(Port), "service": F(Str)})),
    }
)
WORKLOAD_GROUP = Obj(
    {
        "metadata": F(Obj({"labels": F(LABELS), "annotations": F(LABELS)})),
        "template": F(WORKLOAD_TEMPLATE),
        "probe": F(PROBE, NO, _PROBE_NOTE),
    }
)
WORKLOAD_GROUP_SPECS: dict[str, Spec] = {"WorkloadGroup": WORKLOAD_GROUP}


@dataclass(frozen=True, slots=True)
class WorkloadGroup:
    namespace: str
    name: str
    labels: Labels = ()  # metadata.labels merged with template.labels: every registered entry carries them
    annotations: Labels = ()
    ports: tuple[tuple[str, int], ...] = ()  # template port name -> port
    service_account: str = ""
    locality: str = ""
    weight: int = 0
    probed: bool = False  # spec.probe set: an entry is unhealthy until its first health report


def workload_group(carried: CarriedResource) -> WorkloadGroup:
    spec = json.loads(carried.spec_json)
    meta = spec.get("metadata") or {}
    template = spec.get("template") or {}
    labels = {**(meta.get("labels") or {}), **(template.get("labels") or {})}
    return WorkloadGroup(
        namespace=carried.meta.namespace,
        name=carried.meta.name,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        annotations=tuple(sorted((str(k), str(v)) for k, v in (meta.get("annotations") or {}).items())),
        ports=tuple(sorted((str(k), int(v)) for k, v in (template.get("ports") or {}).items())),
        service_account=str(template.get("serviceAccount") or ""),
        locality=str(template.get("locality") or ""),
        weight=int(template.get("weight") or 0),
        probed=spec.get("probe") is not None,
    )
