"""Service + EndpointSlice (or the older Endpoints) + Pod -> one MESH_INTERNAL ServiceEntry per Service.

The ServiceEntries then take the ordinary path (schema check, ServiceEntry -> registry Service), so an
imported Service routes exactly as the same ServiceEntry written by hand. What istiod does and this keeps:
host `name.namespace.svc.cluster.local`, port protocol from appProtocol / the name's prefix, endpoints from
the slices (ready ones, unless publishNotReadyAddresses), each with its Pod's labels and service account
(so DestinationRule subsets select as in the cluster), ExternalName as a DNS alias, the
networking.istio.io/exportTo annotation. What is lost is reported as a diagnostic on the Service.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from xds.diagnostics import Diagnostic, Location, Severity
from xds.kube.address_map import AddressMap, AddressMapError
from xds.kube.protocol import UNDECLARED, convert_protocol
from xds.sources.loader import RawDocument

SERVICE = ("", "Service")
ENDPOINT_SLICE = ("discovery.k8s.io", "EndpointSlice")
ENDPOINTS = ("", "Endpoints")
POD = ("", "Pod")
# Mecha's own kind: where imported endpoints are reached from here (xds/kube/address_map.py)
ADDRESS_MAP = ("mecha.io", "AddressMap")
ADDRESS_MAP_VERSIONS = frozenset({"mecha.io/v1alpha1"})
KUBE_REGISTRY_KINDS = frozenset({SERVICE, ENDPOINT_SLICE, ENDPOINTS, POD, ADDRESS_MAP})
DOMAIN_SUFFIX = "svc.cluster.local"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
SERVICE_ENTRY_API = "networking.istio.io/v1"


def is_registry_document(doc: RawDocument) -> bool:
    return (doc.group, doc.kind) in KUBE_REGISTRY_KINDS


@dataclass
class _Inputs:
    services: list[RawDocument] = field(default_factory=list)
    slices: dict[tuple[str, str], list[RawDocument]] = field(default_factory=dict)  # (ns, service) ->
    endpoints: dict[tuple[str, str], RawDocument] = field(default_factory=dict)
    pods: dict[tuple[str, str], RawDocument] = field(default_factory=dict)
    orphan_slices: list[tuple[RawDocument, str]] = field(default_factory=list)
    used: set[int] = field(default_factory=set)  # id() of the Pods and Endpoints a Service read


class _Report:
    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def __call__(self, where: Location, fld: str, msg: str, sev: Severity, code: str) -> None:
        self.items.append(Diagnostic(where, fld, msg, sev, code))


def registry_documents(
    docs: Iterable[RawDocument], address_map: AddressMap | None = None
) -> tuple[list[RawDocument], list[Diagnostic]]:
    """The documents with Services, EndpointSlices, Endpoints and Pods replaced by one ServiceEntry per
    Service (in the Service's place); everything else passes through untouched."""
    out: list[RawDocument | None] = []
    inputs = _Inputs()
    service_slots: list[int] = []
    report = _Report()
    map_docs: list[RawDocument] = []
    for doc in docs:
        key = (doc.group, doc.kind)
        if key not in KUBE_REGISTRY_KINDS:
            out.append(doc)
            continue
        ref = (doc.location.namespace, doc.location.name)
        if key == ADDRESS_MAP:  # read, never served: it only rewrites the endpoints of the Services below
            map_docs.append(doc)
        elif key == SERVICE:
            service_slots.append(len(out))
            out.append(doc)  # replaced below
            inputs.services.append(doc)
        elif key == POD:
            inputs.pods[ref] = doc
            out.append(doc)  # removed below once a Service reads it; otherwise reported as skipped
        elif key == ENDPOINTS:
            inputs.endpoints[ref] = doc
            out.append(doc)
        else:
            labels = (doc.body.get("metadata") or {}).get("labels") or {}
            owner = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, dict) else None
            if not isinstance(owner, str) or not owner:
                inputs.orphan_slices.append((doc, f"no {SERVICE_NAME_LABEL} label"))
                continue
            inputs.slices.setdefault((doc.location.namespace, owner), []).append(doc)
    address_map = _with_documents(address_map or AddressMap(), map_docs, report)
    if not inputs.services and not inputs.slices and not inputs.endpoints and not inputs.pods:
        return [d for d in out if d is not None], report.items

    names = {(s.location.namespace, s.location.name) for s in inputs.services}
    for (namespace, owner), found in sorted(inputs.slices.items()):
        if (namespace, owner) not in names:
            inputs.orphan_slices.extend(
                (s, f"its Service {namespace}/{owner} is not in the input") for s in found
            )
    for doc, why in inputs.orphan_slices:
        report(doc.location, "metadata.labels", f"ignored: {why}", Severity.WARNING, "kube-orphan")
    converted = [_service_entry(svc, inputs, address_map, report) for svc in inputs.services]
    for slot, entry in zip(service_slots, converted, strict=True):
        out[slot] = entry
    read = (POD, ENDPOINTS)
    kept = [d for d in out if d is not None and ((d.group, d.kind) not in read or id(d) not in inputs.used)]
    return kept, report.items


def _with_documents(address_map: AddressMap, docs: list[RawDocument], report: _Report) -> AddressMap:
    """The --address-map file's entries plus every AddressMap document's; a bad one is an error naming it."""
    for doc in sorted(docs, key=lambda d: (d.location.namespace, d.location.name)):
        if doc.api_version not in ADDRESS_MAP_VERSIONS:
            msg = f"{doc.api_version!r} is not a supported version of AddressMap (use mecha.io/v1alpha1)"
            report(doc.location, "apiVersion", msg, Severity.ERROR, "bad-version")
            continue
        spec = doc.body.get("spec")
        raw = spec.get("addresses") if isinstance(spec, dict) else None
        if not isinstance(raw, dict) or not raw:
            msg = "expected a non-empty map of 'pod IP[:port]' or 'namespace/pod[:port]' to 'host[:port]'"
            report(doc.location, "spec.addresses", msg, Severity.ERROR, "kube-address-map")
            continue
        try:
            found = AddressMap.parse(raw, "spec.addresses")
        except AddressMapError as exc:
            report(doc.location, "spec.addresses", str(exc), Severity.ERROR, "kube-address-map")
            continue
        address_map, conflicts = address_map.merged(found)
        if conflicts:
            msg = f"maps {', '.join(conflicts)} elsewhere already (--address-map or another AddressMap)"
            report(doc.location, "spec.addresses", msg, Severity.ERROR, "kube-address-map")
    return address_map


# ---- one Service ----------------------------------------------------------------------------------------


def _service_entry(
    svc: RawDocument, inputs: _Inputs, address_map: AddressMap, report: _Report
) -> RawDocument | None:
    where, namespace, name = svc.location, svc.location.namespace, svc.location.name

    def problem(fld: str, msg: str, sev: Severity = Severity.ERROR, code: str = "kube-service") -> None:
        report(where, fld, msg, sev, code)

    spec = svc.body.get("spec")
    if not isinstance(spec, dict):
        problem("spec", "missing or not a map")
        return None
    service_type = spec.get("type") or "ClusterIP"
    external_name = spec.get("externalName") if service_type == "ExternalName" else None
    if service_type == "ExternalName" and (not isinstance(external_name, str) or not external_name):
        problem("spec.externalName", "an ExternalName Service needs the name it aliases")
        return None
    ports = _ports(spec.get("ports"), problem)
    if ports is None:
        return None
    if not ports:
        problem(
            "spec.ports", "no TCP port: nothing to route (istiod builds no listener either)", Severity.WARNING
        )
        return None
    body: dict[str, Any] = {
        "apiVersion": SERVICE_ENTRY_API,
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [f"{name}.{namespace}.{DOMAIN_SUFFIX}"],
            "location": "MESH_EXTERNAL" if external_name else "MESH_INTERNAL",
            "resolution": "DNS" if external_name else "STATIC",
            "ports": [p.entry() for p in ports],
        },
    }
    annotations = (svc.body.get("metadata") or {}).get("annotations") or {}
    export_to = annotations.get(EXPORT_TO_ANNOTATION) if isinstance(annotations, dict) else None
    if isinstance(export_to, str) and export_to.strip():
        body["spec"]["exportTo"] = [e.strip() for e in export_to.split(",") if e.strip()]
    if external_name:
        body["spec"]["endpoints"] = [{"address": external_name}]
    else:
        if spec.get("clusterIP") == "None":
            problem(
                "spec.clusterIP",
                "headless: load-balanced over its endpoints here; per-Pod names (pod.name.namespace.svc) are "
                "not served",
                Severity.INFO,
                "kube-headless",
            )
        publish_not_ready = spec.get("publishNotReadyAddresses") is True
        endpoints = _endpoints(svc, ports, inputs, publish_not_ready, address_map, report)
        if endpoints is None:
            return None
        body["spec"]["endpoints"] = endpoints
    source = json.dumps(body, sort_keys=True)
    return RawDocument(where, SERVICE_ENTRY_API, "ServiceEntry", body, source)


@dataclass(frozen=True)
class _Port:
    number: int
    name: str  # the Service's port name ('' for a lone unnamed port): slices name their ports the same
    entry_name: str  # a ServiceEntry port needs a name
    protocol: str
    target_port: int | None  # numeric targetPort (a named one is resolved per Pod by the slice)

    def entry(self) -> dict[str, Any]:
        if self.protocol == UNDECLARED:  # no protocol: sniffed, as istiod does
            return {"number": self.number, "name": self.entry_name}
        return {"number": self.number, "name": self.entry_name, "protocol": self.protocol}


def _ports(raw: Any, problem: Any) -> list[_Port] | None:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problem("spec.ports", f"expected a list, got {type(raw).__name__}")
        return None
    ports: list[_Port] = []
    for i, p in enumerate(raw):
        at = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            problem(at, "expected a map")
            return None
        number, name = p.get("port"), p.get("name") or ""
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            problem(f"{at}.port", f"{number!r} is not a port number (1-65535)")
            return None
        if not isinstance(name, str):
            problem(f"{at}.name", "not a string")
            return None
        app_protocol = p.get("appProtocol")
        protocol = convert_protocol(number, name, str(p.get("protocol") or "TCP"), app_protocol)
        if protocol is None:
            what = p.get("protocol") or app_protocol or name
            msg = f"port {number} is {what}: the mesh proxies TCP only; skipped"
            problem(f"{at}.protocol", msg, Severity.WARNING, "kube-udp")
            continue
        target = p.get("targetPort")
        ports.append(
            _Port(
                number,
                name,
                name or f"{protocol.lower()}-{number}",
                protocol,
                target if isinstance(target, int) else None,
            )
        )
    return ports


# ---- endpoints ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Address:
    ip: str
    pod: tuple[str, str] | None  # (namespace, name) of targetRef when it is a Pod
    ports: dict[str, int]  # slice port name -> port
    where: Location
    fld: str


def _endpoints(
    svc: RawDocument,
    ports: list[_Port],
    inputs: _Inputs,
    publish_not_ready: bool,
    address_map: AddressMap,
    report: _Report,
) -> list[dict[str, Any]] | None:
    ref = (svc.location.namespace, svc.location.name)
    slices, legacy = inputs.slices.get(ref, []), inputs.endpoints.get(ref)
    if slices:
        for doc in slices:  # a not-ready Pod is read too (left out on purpose, not skipped)
            for e in doc.body.get("endpoints") or [] if isinstance(doc.body.get("endpoints"), list) else []:
                target = _target_pod(e.get("targetRef") if isinstance(e, dict) else None, ref[0])
                if target in inputs.pods:
                    inputs.used.add(id(inputs.pods[target]))
        addresses = _from_slices(slices, publish_not_ready, report)
    elif legacy is not None:
        inputs.used.add(id(legacy))
        addresses = _from_endpoints(legacy, publish_not_ready, report)
    else:
        msg = "no EndpointSlice or Endpoints for it in the input: no endpoints (export endpointslices too)"
        report(svc.location, "metadata.name", msg, Severity.WARNING, "kube-no-endpoints")
        return []
    if addresses is None:
        return None
    out: list[dict[str, Any]] = []
    unmapped: list[str] = []
    seen: set[str] = set()
    for a in addresses:
        if a.ip in seen:  # one Pod can appear in two slices while they are rebalanced
            continue
        seen.add(a.ip)
        pod_ref = f"{a.pod[0]}/{a.pod[1]}" if a.pod else ""
        entry: dict[str, Any] = {"address": a.ip}
        entry_ports: dict[str, int] = {}
        hosts: set[str] = set()
        for p in ports:
            number = a.ports.get(p.name) or p.target_port or p.number
            mapped = address_map.resolve(a.ip, pod_ref, number) if address_map else None
            if mapped is not None:
                hosts.add(mapped[0])
                number = mapped[1]
            entry_ports[p.entry_name] = number
        if len(hosts) > 1:
            msg = f"the address map sends the ports of {a.ip} to different hosts ({', '.join(sorted(hosts))})"
            report(a.where, a.fld, msg, Severity.ERROR, "kube-address-map")
            return None
        if hosts:
            entry["address"] = hosts.pop()
        else:
            unmapped.append(a.ip)
        entry["ports"] = entry_ports
        pod = inputs.pods.get(a.pod) if a.pod else None
        if pod is not None:
            inputs.used.add(id(pod))
            labels, account = _pod_identity(pod)
            if labels:
                entry["labels"] = labels
            if account:
                entry["serviceAccount"] = account
        elif a.pod is not None:
            msg = (
                f"Pod {pod_ref} is not in the input: its endpoint {a.ip} has no labels, so no "
                "DestinationRule subset selects it (export pods too)"
            )
            report(a.where, f"{a.fld}.targetRef", msg, Severity.WARNING, "kube-no-pod")
        out.append(entry)
    if unmapped:
        how = (
            "not in the address map"
            if address_map
            else "an AddressMap document or mecha import/apply --address-map points them here"
        )
        shown = ", ".join(unmapped[:3]) + (", ..." if len(unmapped) > 3 else "")
        msg = (
            f"{len(unmapped)} endpoint(s) keep their cluster address ({shown}): reachable only where Pod IPs "
            f"route; {how}"
        )
        report(
            svc.location,
            "metadata.name",
            msg,
            Severity.WARNING if address_map else Severity.INFO,
            "kube-pod-ip",
        )
    return out


def _target_pod(target: Any, namespace: str) -> tuple[str, str] | None:
    if not isinstance(target, dict) or target.get("kind") != "Pod" or not target.get("name"):
        return None
    return (str(target.get("namespace") or namespace), str(target["name"]))


def _from_slices(
    slices: list[RawDocument], publish_not_ready: bool, report: _Report
) -> list[_Address] | None:
    found: list[_Address] = []
    for doc in sorted(slices, key=lambda d: d.location.name):
        body, where = doc.body, doc.location
        if body.get("addressType") == "FQDN":
            report(
                where,
                "addressType",
                "FQDN endpoints are not supported: slice ignored",
                Severity.WARNING,
                "kube-fqdn",
            )
            continue
        ports = _named_ports(body.get("ports"), "ports", where, report)
        endpoints = body.get("endpoints") or []
        if ports is None or not isinstance(endpoints, list):
            if ports is not None:
                report(where, "endpoints", "expected a list", Severity.ERROR, "kube-endpoints")
            return None
        for i, e in enumerate(endpoints):
            fld = f"endpoints[{i}]"
            if not isinstance(e, dict) or not isinstance(e.get("addresses"), list) or not e["addresses"]:
                report(
                    where, f"{fld}.addresses", "expected a non-empty list", Severity.ERROR, "kube-endpoints"
                )
                return None
            given = e.get("conditions")
            conditions = given if isinstance(given, dict) else {}
            if conditions.get("ready") is False and not publish_not_ready:  # unset means ready
                continue
            pod = _target_pod(e.get("targetRef"), where.namespace)
            found.append(_Address(str(e["addresses"][0]), pod, ports, where, fld))
    return found


def _from_endpoints(doc: RawDocument, publish_not_ready: bool, report: _Report) -> list[_Address] | None:
    where, found = doc.location, []
    subsets = doc.body.get("subsets") or []
    if not isinstance(subsets, list):
        report(where, "subsets", "expected a list", Severity.ERROR, "kube-endpoints")
        return None
    for i, subset in enumerate(subsets):
        if not isinstance(subset, dict):
            report(where, f"subsets[{i}]", "expected a map", Severity.ERROR, "kube-endpoints")
            return None
        ports = _named_ports(subset.get("ports"), f"subsets[{i}].ports", where, report)
        if ports is None:
            return None
        groups = ["addresses"] + (["notReadyAddresses"] if publish_not_ready else [])
        for group in groups:
            for j, a in enumerate(subset.get(group) or []):
                fld = f"subsets[{i}].{group}[{j}]"
                if not isinstance(a, dict) or not a.get("ip"):
                    report(where, f"{fld}.ip", "missing", Severity.ERROR, "kube-endpoints")
                    return None
                found.append(
                    _Address(
                        str(a["ip"]), _target_pod(a.get("targetRef"), where.namespace), ports, where, fld
                    )
                )
    return found


def _named_ports(raw: Any, fld: str, where: Location, report: _Report) -> dict[str, int] | None:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        report(where, fld, "expected a list", Severity.ERROR, "kube-endpoints")
        return None
    out: dict[str, int] = {}
    for i, p in enumerate(raw):
        number = p.get("port") if isinstance(p, dict) else None
        if not isinstance(number, int) or not 0 < number < 65536:
            report(
                where,
                f"{fld}[{i}].port",
                f"{number!r} is not a port number",
                Severity.ERROR,
                "kube-endpoints",
            )
            return None
        out[str(p.get("name") or "")] = number
    return out


def _pod_identity(pod: RawDocument) -> tuple[dict[str, str], str]:
    labels = (pod.body.get("metadata") or {}).get("labels") or {}
    spec = pod.body.get("spec") or {}
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    clean = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    return clean, str(account)
