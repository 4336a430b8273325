"""Auto-registration: a proxy that connects naming a WorkloadGroup gets a WorkloadEntry, as istiod does.

Endpoints that follow the workloads are config, not ephemeral state (istiod's choice too): the entry is an
ordinary WorkloadEntry document in the config store, owned by `registration`, versioned and shared by every
replica. Annotations are istiod's (`istio.io/autoRegistrationGroup`, `istio.io/workloadController`,
`istio.io/connectedAt`, `istio.io/disconnectedAt`); health is istiod's `Healthy` status condition, and
draining a `Draining` condition of Mecha's (xds/model/parse.py endpoint_health turns them into EDS).

- connect: the replica holding the stream writes the entry (address from the node, labels from the group and
  the node, ports mapped to the proxy's inbound listener). The authenticator has already refused a node
  claiming a group, address or label its credential does not allow (xds/identity/authenticator.py).
- disconnect: that replica stamps `disconnectedAt`; the leader's clean-up job (jobs.py, exactly one replica)
  deletes entries disconnected longer than the grace period. A proxy that reconnects in time keeps its entry.
- health / draining: POST /api/v1/workloads/health with the workload credential (the capability service's
  app health check, SIGTERM) sets the conditions of the caller's own entry, never another's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xds.diagnostics import Location
from xds.identity.credential import Credential
from xds.model.workload_group import WorkloadGroup, workload_group
from xds.proxy import ProxyIdentity
from xds.sources import RawDocument

log = logging.getLogger("mecha.registration")

OWNER_REGISTRATION = "registration"
GROUP_ANNOTATION = "istio.io/autoRegistrationGroup"
CONTROLLER_ANNOTATION = "istio.io/workloadController"
CONNECTED_AT = "istio.io/connectedAt"
DISCONNECTED_AT = "istio.io/disconnectedAt"
PROXY_ANNOTATION = "mecha.io/proxyId"
API_VERSION = "networking.istio.io/v1"
_UNSAFE = re.compile(r"[^a-z0-9-]+")

ChangeFn = Callable[[Callable[[], Any]], Awaitable[dict[str, Any]]]


class RegistrationError(Exception):
    """A health report that cannot be applied; status is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def entry_name(group: str, proxy_id: str) -> str:
    """`<group>-<proxy id>` as a DNS-1123 name (istiod: `<group>-<ip>`; Mecha's instances often share one
    IP, so the proxy id tells them apart)."""
    tail = _UNSAFE.sub("-", proxy_id.lower()).strip("-") or "proxy"
    return f"{group}-{tail}"[:253].rstrip("-")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return None


def entry_body(
    group: WorkloadGroup, proxy: ProxyIdentity, controller: str, conditions: list[dict[str, str]]
) -> dict[str, Any]:
    """The WorkloadEntry istiod's controller would write for this proxy."""
    inbound = next((a.inbound_port for a in proxy.apps if a.inbound_port), None)
    # traffic for the group's ports enters through the proxy's inbound listener (Mecha binds it explicitly)
    ports = {name: inbound or port for name, port in group.ports}
    labels = {**dict(group.labels), **dict(proxy.labels)}
    spec: dict[str, Any] = {"address": proxy.address, "labels": labels}
    if ports:
        spec["ports"] = ports
    if group.service_account:
        spec["serviceAccount"] = group.service_account
    if group.locality or proxy.locality:
        spec["locality"] = proxy.locality or group.locality
    if group.weight:
        spec["weight"] = group.weight
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "WorkloadEntry",
        "metadata": {
            "name": entry_name(group.name, proxy.id),
            "namespace": group.namespace,
            "labels": labels,
            "annotations": {
                **dict(group.annotations),
                GROUP_ANNOTATION: group.name,
                CONTROLLER_ANNOTATION: controller,
                CONNECTED_AT: _now(),
                PROXY_ANNOTATION: proxy.id,
            },
        },
        "spec": spec,
    }
    if conditions:
        body["status"] = {"conditions": conditions}
    return body


def _document(body: dict[str, Any]) -> RawDocument:
    meta = body["metadata"]
    where = Location(
        file=OWNER_REGISTRATION, kind="WorkloadEntry", namespace=meta["namespace"], name=meta["name"]
    )
    return RawDocument(where, body["apiVersion"], "WorkloadEntry", body)


def _condition(kind: str, value: bool, reason: str, message: str = "") -> dict[str, str]:
    out = {
        "type": kind,
        "status": "True" if value else "False",
        "lastTransitionTime": _now(),
        "reason": reason,
    }
    if message:
        out["message"] = message[:256]
    return out


@dataclass
class Registered:
    """What this replica last wrote for a proxy it holds the stream of."""

    key: tuple[str, str, str]
    connected_at: float  # of the stream: a new one (restarted proxy) gets fresh conditions


class Registration:
    """Keeps the store's auto-registered WorkloadEntries in step with this replica's connected proxies."""

    def __init__(
        self,
        store: Any,
        change: ChangeFn,
        connected: Callable[[], list[tuple[ProxyIdentity, float]]],
        controller: str,
        grace_s: float = 300.0,
        interval_s: float = 0.5,
    ) -> None:
        """store: the ConfigStore (read); change(make_plan): ControlPlane._change (serialized, validated,
        durable); connected(): (proxy, stream opened at) per stream here; controller: this replica."""
        self.store = store
        self.change = change
        self.connected = connected
        self.controller = controller
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.refused: dict[str, str] = {}  # proxy id -> why it is not registered (no such group...)
        self._mine: dict[str, Registered] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="registration")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def poke(self) -> None:
        """A proxy connected: reconcile now rather than at the next tick."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("registration round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    # ---- connect / disconnect ----------------------------------------------------------------------------
    def _groups(self) -> dict[tuple[str, str], WorkloadGroup]:
        config = self.store.config
        carried = getattr(config, "carried", ()) if config is not None else ()
        return {
            (c.meta.namespace, c.meta.name): workload_group(c)
            for c in carried
            if c.meta.kind == "WorkloadGroup"
        }

    def _entries(self) -> dict[tuple[str, str, str], RawDocument]:
        return {
            key: doc
            for key, doc in self.store.documents.items()
            if key[0] == "WorkloadEntry" and self.store.owner(key) == OWNER_REGISTRATION
        }

    async def reconcile(self) -> None:
        """One round: register proxies that arrived (or moved), stamp disconnectedAt on those that left."""
        groups = self._groups()
        entries = self._entries()
        live: dict[str, tuple[ProxyIdentity, float]] = {}
        for proxy, opened in self.connected():
            if proxy.workload_group and (proxy.id not in live or opened < live[proxy.id][1]):
                live[proxy.id] = (proxy, opened)
        writes: list[dict[str, Any]] = []
        for proxy, opened in live.values():
            group = groups.get((proxy.namespace, proxy.workload_group))
            if group is None:
                reason = f"WorkloadGroup {proxy.namespace}/{proxy.workload_group} does not exist"
                if self.refused.get(proxy.id) != reason:
                    log.warning("proxy %s not registered: %s", proxy.id, reason)
                self.refused[proxy.id] = reason
                continue
            self.refused.pop(proxy.id, None)
            key = ("WorkloadEntry", group.namespace, entry_name(group.name, proxy.id))
            existing = entries.get(key)
            if existing is not None and not self._needs_write(existing.body, proxy, opened):
                continue
            writes.append(entry_body(group, proxy, self.controller, self._fresh_conditions(group)))
            self._mine[proxy.id] = Registered(key, opened)
        for proxy_id in [p for p in self._mine if p not in live]:
            gone = self._mine.pop(proxy_id)
            doc = entries.get(gone.key)
            if doc is None or self._annotation(doc.body, CONTROLLER_ANNOTATION) != self.controller:
                continue  # deleted, or another replica holds the proxy now
            body = _copy(doc.body)
            body["metadata"]["annotations"][DISCONNECTED_AT] = _now()
            writes.append(body)
        if writes:
            await self._write(writes, "registration")

    def _needs_write(self, body: dict[str, Any], proxy: ProxyIdentity, opened: float) -> bool:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        return (
            DISCONNECTED_AT in annotations
            or annotations.get(CONTROLLER_ANNOTATION) != self.controller
            or (body.get("spec") or {}).get("address") != proxy.address
            or (mine := self._mine.get(proxy.id)) is None
            or mine.connected_at != opened  # a new stream of this proxy: fresh conditions (no Draining)
        )

    @staticmethod
    def _fresh_conditions(group: WorkloadGroup) -> list[dict[str, str]]:
        # istiod: with health checks, an entry is not ready until the first probe says so
        return [_condition("Healthy", False, "WaitingForFirstReport")] if group.probed else []

    @staticmethod
    def _annotation(body: dict[str, Any], name: str) -> str:
        return str(((body.get("metadata") or {}).get("annotations") or {}).get(name) or "")

    async def _write(self, bodies: list[dict[str, Any]], why: str) -> dict[str, Any]:
        docs = [_document(b) for b in bodies]
        outcome = await self.change(lambda: self.store.plan_apply(docs, OWNER_REGISTRATION))
        if not outcome.get("accepted"):
            log.error("%s refused: %s", why, outcome.get("diagnostics"))
        return outcome

    # ---- clean-up (leader only) ---------------------------------------------------------------------------
    async def clean_up(self, now: float | None = None) -> int:
        """Delete entries disconnected for longer than the grace period; returns how many went."""
        moment = time.time() if now is None else now
        stale = []
        for key, doc in self._entries().items():
            stamped = _parse_time(self._annotation(doc.body, DISCONNECTED_AT))
            if stamped is not None and moment - stamped >= self.grace_s:
                stale.append(key)
        if not stale:
            return 0
        outcome = await self.change(lambda: self.store.plan_delete(stale, OWNER_REGISTRATION))
        if outcome.get("accepted"):
            log.info("endpoint clean-up: removed %d disconnected workload entries", len(stale))
            return len(stale)
        log.error("endpoint clean-up refused: %s", outcome.get("diagnostics"))
        return 0

    # ---- health -------------------------------------------------------------------------------------------
    async def report(
        self,
        cred: Credential,
        healthy: bool | None,
        draining: bool | None,
        message: str = "",
        proxy_id: str = "",
    ) -> dict[str, Any]:
        """Set the Healthy / Draining conditions of the caller's own entry (its credential names it; an
        instance credential's caller names which of its instances, <id>.<instance>)."""
        if not cred.workload_group:
            raise RegistrationError(403, f"credential of proxy {cred.proxy_id!r} names no workload group")
        proxy_id = proxy_id or cred.proxy_id
        if not cred.allows_proxy_id(proxy_id):
            problem = f"field 'proxy_id': {proxy_id!r} is not a proxy the credential names"
            raise RegistrationError(403, problem)
        key = ("WorkloadEntry", cred.namespace, entry_name(cred.workload_group, proxy_id))
        doc = self._entries().get(key)
        if doc is None:
            raise RegistrationError(404, f"proxy {proxy_id!r} has no registered workload entry ({key[2]})")
        body = _copy(doc.body)
        conditions = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
        changed = False
        for kind, value, reason in (
            ("Healthy", healthy, "HealthCheck"),
            ("Draining", draining, "Terminating"),
        ):
            if value is None:
                continue
            current = conditions.get(kind)
            if current is None or current.get("status") != ("True" if value else "False"):
                conditions[kind] = _condition(kind, value, reason, message)
                changed = True
        if changed:
            body["status"] = {"conditions": [conditions[k] for k in sorted(conditions)]}
            outcome = await self._write([body], f"health report of {proxy_id}")
            if not outcome.get("accepted"):
                raise RegistrationError(409, "the health report was not stored; retry")
        return {"entry": f"{key[1]}/{key[2]}", "changed": changed, "conditions": body.get("status", {})}

    def view(self) -> list[dict[str, Any]]:
        """Registered entries and refusals (the API's GET /api/v1/workloads)."""
        rows = []
        for (_, namespace, name), doc in sorted(self._entries().items()):
            meta = doc.body.get("metadata") or {}
            rows.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "address": (doc.body.get("spec") or {}).get("address"),
                    "annotations": meta.get("annotations") or {},
                    "conditions": (doc.body.get("status") or {}).get("conditions") or [],
                }
            )
        return rows


def _copy(body: dict[str, Any]) -> dict[str, Any]:
    """Deep enough: metadata, annotations and status are replaced, never mutated in the stored document."""
    meta = dict(body.get("metadata") or {})
    meta["annotations"] = dict(meta.get("annotations") or {})
    out = {**body, "metadata": meta}
    if "status" in body:
        out["status"] = {
            **body["status"],
            "conditions": [dict(c) for c in body["status"].get("conditions") or []],
        }
    return out
