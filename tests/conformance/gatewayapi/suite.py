"""The ConformanceTestSuite's role (conformance/utils/suite): the base manifests applied once, each test's
manifests applied before it and deleted after it, its status checks (conformance/utils/kubernetes/helpers.go)
and its HTTP round trips with eventual-consistency waits (conformance/utils/http/http.go), against one shared
`mecha serve` and the gateway Envoys of its Gateways."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import grpc

from tests.conformance.gatewayapi import grpcecho, h2cecho
from tests.conformance.gatewayapi.certs import Credentials, ca_signed, new_ca, self_signed
from tests.conformance.gatewayapi.harness import (
    CONTROLLER,
    GROUP,
    ControlPlane,
    Gateways,
    Kubelet,
    manifests,
)
from tests.conformance.gatewayapi.tcpecho import WELCOME as TCP_WELCOME
from xds.gatewayapi.addresses import HOST_PORT

# conformance/utils/config/timeout.go defaults (seconds)
POLL_S = 0.2  # DefaultPollInterval is 100 ms: twice that is as exact a wait on a shared 2-core machine
STATUS_S = 60.0
LATEST_GENERATION_S = 60.0
GATEWAY_CONDITION_S = 180.0
ADDRESS_S = 180.0
MAX_TIME_TO_CONSISTENCY_S = 30.0
REQUIRED_CONSECUTIVE_SUCCESSES = 3


async def await_convergence(
    what: str, attempt: Callable[[], Awaitable[str]], required: int = REQUIRED_CONSECUTIVE_SUCCESSES
) -> None:
    """http.AwaitConvergence, the loop under every "eventually consistent" check of the suite: `attempt`
    ('' on success, else why not) must succeed `required` times in a row within 30 s, a second between
    failures; ConformanceError "<what>: <why>" after that."""
    successes, deadline = 0, time.monotonic() + MAX_TIME_TO_CONSISTENCY_S
    while True:
        why = await attempt()
        if not why:
            successes += 1
            if successes >= required:
                return
            continue
        successes = 0
        if time.monotonic() > deadline:
            raise ConformanceError(f"{what}: {why}")
        await asyncio.sleep(1.0)


REQUEST_TIMEOUT_S = 10.0
INFRA_NS = "gateway-conformance-infra"
APP_NS = "gateway-conformance-app-backend"
WEB_NS = "gateway-conformance-web-backend"
SKIP_READINESS = "gateway-api/skip-this-for-readiness"  # GatewayExcludedFromReadinessChecks
REQUEST_ID_QUERY_PARAM = "gateway-api-conformance-request-id"
SPIFFE_SAN = "spiffe://abc.example.com/test-identity"
H2C_PROTOCOL = "H2C_PRIOR_KNOWLEDGE"


class ConformanceError(AssertionError):
    """An expectation of the upstream suite that did not hold within its timeout."""


async def poll(what: str, timeout: float, check: Callable[[], Awaitable[str | None]]) -> None:  # noqa: ASYNC109
    """wait.PollUntilContextTimeout: `check` returns None when satisfied, else why not (for the error)."""
    deadline = time.monotonic() + timeout
    why: str | None = "never checked"
    while time.monotonic() < deadline:
        why = await check()
        if why is None:
            return
        await asyncio.sleep(POLL_S)
    raise ConformanceError(f"timed out after {timeout:.0f}s waiting for {what}: {why}")


def _find(conditions: list[dict[str, Any]], ctype: str, status: str = "", reason: str = "") -> bool:
    """findConditionInList: an empty status or reason matches any."""
    return any(
        c.get("type") == ctype
        and (not status or c.get("status") == status)
        and (not reason or c.get("reason") == reason)
        for c in conditions
    )


def _stale(obj: dict[str, Any], conditions: list[dict[str, Any]]) -> str | None:
    """ConditionsHaveLatestObservedGeneration."""
    gen = obj["metadata"].get("generation")
    stale = [
        f"{c.get('type')} (generation {c.get('observedGeneration')})"
        for c in conditions
        if c.get("observedGeneration") != gen
    ]
    return f"stale conditions at generation {gen}: {', '.join(stale)}" if stale else None


@dataclass(frozen=True)
class GwAddr:
    """The suite's gwAddr (IP:listenerPort, or the IP alone) and where each listener port of it is bound."""

    host: str
    port: str  # "" when the test asked for the address without a port
    dial_by_port: dict[str, str]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def without_port(self) -> GwAddr:
        return GwAddr(self.host, "", self.dial_by_port)

    def dial(self, default_port: str = "80") -> str:
        """Where a request to this address connects: Go dials the scheme's port (80, 443 for HTTPS) for an
        address without one."""
        port = self.port or default_port
        if port not in self.dial_by_port:
            raise ConformanceError(f"Gateway address {self}: no listener port {port}")
        return self.dial_by_port[port]


@dataclass
class Suite:
    workdir: Path
    cp: ControlPlane = field(init=False)
    kubelet: Kubelet = field(default_factory=Kubelet)
    gateways: Gateways = field(init=False)
    http: aiohttp.ClientSession | None = None
    _base: list[dict[str, Any]] = field(default_factory=list)
    _extra: list[dict[str, Any]] = field(default_factory=list)  # the current test's Services and Deployments
    config_maps: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cp = ControlPlane(self.workdir)
        self.gateways = Gateways(self.cp, self.workdir)
        self.credentials = Credentials(self.cp.credentials, INFRA_NS)

    # ---- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        # suite.Setup's programmatic Secrets and the CA ConfigMap the TLS tests read (the client-certificate
        # and BackendTLSPolicy ones serve features Mecha does not claim)
        for ns, name, hosts in (
            (WEB_NS, "certificate", ["*"]),
            (INFRA_NS, "tls-validity-checks-certificate", ["*", "*.org", "*.wildcard.org"]),
        ):
            crt, key = self_signed(hosts)
            self.credentials.write(ns, name, {"tls.crt": crt, "tls.key": key})
        ca = new_ca()
        self.config_maps[(INFRA_NS, "tls-checks-ca-certificate")] = {"ca.crt": ca.pem}
        self.config_maps[(INFRA_NS, "mismatch-ca-certificate")] = {"ca.crt": new_ca().pem}  # signs nothing
        for ns, name, hosts in (
            (INFRA_NS, "tls-checks-certificate", ["abc.example.com", SPIFFE_SAN, "other.example.com"]),
            (INFRA_NS, "tls-passthrough-checks-certificate", ["abc.example.com"]),
            (APP_NS, "tls-passthrough-checks-certificate", ["abc.example.com"]),
            (INFRA_NS, "tls-terminate-checks-certificate", ["tls.example.com"]),
        ):
            crt, key = ca_signed(hosts, ca)
            self.credentials.write(ns, name, {"tls.crt": crt, "tls.key": key})
        self.kubelet.echo.workdir = self.workdir
        await self.cp.start()
        self._base = manifests("base/manifests.yaml")
        await self.kubelet.echo.start(self.kubelet.schedule(self._base, self.credentials.secrets))
        await self.cp.apply("base/manifests.yaml", self._base)
        await self.cp.apply("suite-configmaps.yaml", self.config_map_documents())
        await self._publish_registry()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))

    def config_map_documents(self) -> list[dict[str, Any]]:
        """The CA ConfigMaps suite.Setup creates (MustCreateCACertConfigMap), as documents."""
        return [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns},
                "data": {k: v.decode() for k, v in data.items()},
            }
            for (ns, name), data in sorted(self.config_maps.items())
        ]

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.gateways.stop()
        await self.kubelet.echo.stop()
        await self.cp.stop()

    async def _publish_registry(self) -> None:
        """The Pods and EndpointSlices kubelet and the endpoint controller would add to the API server."""
        await self.cp.apply("kubelet.yaml", self.kubelet.registry(self._base + self._extra))
        await self.gateways.reconcile()

    async def apply(self, relative: str) -> list[dict[str, Any]]:
        """Apply a test's manifests (suite.Applier.MustApplyWithCleanup); returns them for `cleanup`."""
        docs = manifests(relative)
        for secret in (d for d in docs if d.get("kind") == "Secret"):  # Mecha reads Secrets as files
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            self.credentials.write(secret["metadata"]["namespace"], secret["metadata"]["name"], data)
        docs = [d for d in docs if d.get("kind") != "Secret"]
        new_pods = self.kubelet.schedule(docs, self.credentials.secrets)
        if new_pods:
            await self.kubelet.echo.start(new_pods)
        self._extra += [d for d in docs if d.get("kind") in ("Service", "Deployment")]
        await self.cp.apply(relative, docs)
        await self._publish_registry()
        return docs

    @contextlib.asynccontextmanager
    async def using(self, *relative: str) -> AsyncIterator[None]:
        """A test's manifests for its duration (MustApplyWithCleanup), deleted afterwards."""
        applied = []
        try:
            for name in relative:
                applied.append((name, await self.apply(name)))
            yield
        finally:
            for name, docs in reversed(applied):
                await self.cleanup(name, docs)

    async def cleanup(self, relative: str, docs: list[dict[str, Any]]) -> None:
        for secret in (d for d in manifests(relative) if d.get("kind") == "Secret"):
            self.credentials.remove(secret["metadata"]["namespace"], secret["metadata"]["name"])
        stored = {
            (d.get("kind"), d.get("namespace", ""), d.get("name"))
            for d in (await self.cp.get_json("/api/v1/config")).get("documents") or []
        }
        left = [
            d
            for d in docs
            if (d.get("kind"), d["metadata"].get("namespace", ""), d["metadata"]["name"]) in stored
        ]
        if left:  # what the test itself deleted is gone already
            await self.cp.delete(relative, left)
        self._extra = [d for d in self._extra if d not in docs]
        await self.gateways.reconcile()

    # ---- status checks (helpers.go) ----------------------------------------------------------------------
    async def gateway_address(self, gw: tuple[str, str], listener: str | None = None) -> GwAddr:
        """WaitForGatewayAddress: the Gateway's first address with the (named, else first) listener's port.
        Gateways here share 127.0.0.1, so the address also carries where each listener port is bound, from
        the `mecha.io/HostPort` addresses Mecha reports (one per listener port, in port order): a
        LoadBalancer Service would expose the listener port itself on the Gateway's own IP."""
        found: list[GwAddr] = []

        async def check() -> str | None:
            obj = await self.cp.get("gateways", *gw)
            if obj is None:
                return "no such Gateway"
            status = obj.get("status") or {}
            stale = _stale(obj, status.get("conditions") or [])
            if stale:
                return stale
            listeners = obj["spec"].get("listeners") or []
            chosen = next((ls for ls in listeners if ls.get("name") == listener), listeners[0])
            typed = [a for a in status.get("addresses") or [] if a.get("type")]
            if not typed:
                return "no address in status.addresses"
            ports = sorted({ls["port"] for ls in listeners})
            bound = [a["value"] for a in typed if a["type"] == HOST_PORT]
            if len(bound) != len(ports):
                return f"expected one {HOST_PORT} address per listener port {ports}: {typed}"
            dial = {str(p): b for p, b in zip(ports, bound, strict=True)}
            found.append(GwAddr(typed[0]["value"], str(chosen["port"]), dial))
            return None

        await poll(f"Gateway {gw[0]}/{gw[1]} to have an address", ADDRESS_S, check)
        return found[-1]

    async def route_must_have_parents(
        self, kind: str, route: tuple[str, str], parents: list[dict[str, Any]], namespace_required: bool
    ) -> None:
        """RouteMustHaveParents + parentsForRouteMatch."""

        async def check() -> str | None:
            obj = await self.cp.get(kind, *route)
            if obj is None:
                return f"no {kind} {route[0]}/{route[1]}"
            actual = (obj.get("status") or {}).get("parents") or []
            for p in actual:
                stale = _stale(obj, p.get("conditions") or [])
                if stale:
                    return stale
            for want in parents:
                if not any(_parent_matches(want, got, namespace_required) for got in actual):
                    return f"no parent matches {want}; got {actual}"
            return None

        await poll(f"{kind} {route[0]}/{route[1]} to have parents", STATUS_S, check)

    async def listeners_must_have_conditions(
        self, gw: tuple[str, str], conditions: list[tuple[str, str, str]], names: tuple[str, ...] = ()
    ) -> None:
        """GatewayListenersMustHaveConditions."""

        async def check() -> str | None:
            obj = await self.cp.get("gateways", *gw)
            listeners = ((obj or {}).get("status") or {}).get("listeners") or []
            unmatched = set(names)
            for ctype, status, reason in conditions:
                for ls in listeners:
                    if names and ls.get("name") not in names:
                        continue
                    if not _find(ls.get("conditions") or [], ctype, status, reason):
                        return (
                            f"listener {ls.get('name')}: no {ctype}={status} {reason}: {ls.get('conditions')}"
                        )
                    unmatched.discard(ls.get("name"))
            return f"listeners {sorted(unmatched)} not in status" if unmatched else None

        await poll(f"Gateway {gw[0]}/{gw[1]} listeners' conditions", STATUS_S, check)

    async def gateway_and_routes_must_be_accepted(
        self,
        gw: tuple[str, str],
        routes: list[tuple[str, str]],
        listeners: tuple[str, ...] = (),
        kind: str = "httproutes",
        use_port: bool = True,
    ) -> GwAddr:
        """GatewayAndRoutesMustBeAccepted: returns gwAddr (IP:port, or the IP alone without use_port)."""
        addr = await self.gateway_address(gw, listeners[0] if listeners else None)
        if not use_port:
            addr = addr.without_port()
        for route in routes:
            parents = [
                {
                    "parentRef": {
                        "group": GROUP,
                        "kind": "Gateway",
                        "name": gw[1],
                        "namespace": gw[0],
                        **({"sectionName": ls} if ls else {}),
                    },
                    "controllerName": CONTROLLER,
                    "conditions": [("Accepted", "True", "Accepted")],
                }
                for ls in (listeners or ("",))
            ]
            await self.route_must_have_parents(kind, route, parents, route[0] != gw[0])
        await self.listeners_must_have_conditions(
            gw, [("ResolvedRefs", "True", ""), ("Accepted", "True", ""), ("Programmed", "True", "")]
        )
        return addr

    async def gateway_and_tls_routes_must_be_accepted(
        self, gw: tuple[str, str], routes: list[tuple[str, str]]
    ) -> tuple[GwAddr, list[str]]:
        """GatewayAndTLSRoutesMustBeAccepted: the Gateway's address, each route Accepted by it (no listener
        checks, unlike the HTTP variant); returns the last route's spec.hostnames."""
        addr = await self.gateway_address(gw)
        hostnames: list[str] = []
        for route in routes:
            parent = {
                "parentRef": {"group": GROUP, "kind": "Gateway", "name": gw[1], "namespace": gw[0]},
                "controllerName": CONTROLLER,
                "conditions": [("Accepted", "True", "Accepted")],
            }
            await self.route_must_have_parents("tlsroutes", route, [parent], route[0] != gw[0])
            obj = await self.cp.get("tlsroutes", *route)
            hostnames = list(((obj or {}).get("spec") or {}).get("hostnames") or [])
        return addr, hostnames

    async def route_must_have_condition(
        self,
        route: tuple[str, str],
        gw: tuple[str, str],
        condition: tuple[str, str, str],
        kind: str = "httproutes",
    ) -> None:
        """HTTPRouteMustHaveCondition."""

        async def check() -> str | None:
            obj = await self.cp.get(kind, *route)
            if obj is None:
                return "no such route"
            found = False
            parents = (obj.get("status") or {}).get("parents") or []
            for p in parents:
                stale = _stale(obj, p.get("conditions") or [])
                if stale:
                    return stale
                ref = p.get("parentRef") or {}
                if ref.get("name") == gw[1] and ref.get("namespace") in (None, gw[0]):
                    found = found or _find(p.get("conditions") or [], *condition)
            return None if found else f"no {condition} for parent {gw}: {parents}"

        await poll(f"{kind} {route[0]}/{route[1]} condition {condition}", STATUS_S, check)

    async def namespaces_must_be_ready(self, namespaces: list[str]) -> None:
        """NamespacesMustBeReady: every Gateway there Accepted and Programmed at its generation, but those
        annotated to be excluded from readiness checks (the pods here are ready once the echo server
        listens, before any test runs)."""

        async def check() -> str | None:
            for ns in namespaces:
                for doc in await self.cp.documents("Gateway", ns):
                    obj = await self.cp.get("gateways", ns, doc["name"])
                    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
                    if annotations.get(SKIP_READINESS) == "true":
                        continue
                    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
                    stale = _stale(obj or {"metadata": {}}, conditions)
                    if stale:
                        return f"Gateway {ns}/{doc['name']}: {stale}"
                    for ctype in ("Accepted", "Programmed"):
                        if not _find(conditions, ctype, "True"):
                            return f"Gateway {ns}/{doc['name']} not {ctype}: {conditions}"
            return None

        await poll(f"namespaces {namespaces} to be ready", 300.0, check)

    async def gateway_status_must_have_listeners(
        self, gw: tuple[str, str], listeners: list[dict[str, Any]]
    ) -> None:
        """GatewayStatusMustHaveListeners + gatewayListenersMatch: each expected listener (name,
        supportedKinds as (group, kind), attachedRoutes, conditions as (type, status, reason)), no other."""

        async def check() -> str | None:
            obj = await self.cp.get("gateways", *gw)
            if obj is None:
                return "no such Gateway"
            status = obj.get("status") or {}
            stale = _stale(obj, status.get("conditions") or [])
            if stale:
                return stale
            actual = status.get("listeners") or []
            if len(actual) != len(listeners):
                return f"expected {len(listeners)} listeners in status, got {len(actual)}"
            for want in listeners:
                got = next((a for a in actual if a.get("name") == want["name"]), None)
                if got is None:
                    return f"no status for listener {want['name']}"
                kinds = {
                    (k.get("group", GROUP) or GROUP, k.get("kind")) for k in got.get("supportedKinds") or []
                }
                if not want["supportedKinds"] and kinds:
                    return f"listener {want['name']}: expected no supportedKinds, got {kinds}"
                for kind in want["supportedKinds"]:
                    if kind not in kinds:
                        return f"listener {want['name']}: {kind} not in supportedKinds {kinds}"
                if got.get("attachedRoutes") != want["attachedRoutes"]:
                    have, need = got.get("attachedRoutes"), want["attachedRoutes"]
                    return f"listener {want['name']}: attachedRoutes {have}, want {need}"
                conditions = got.get("conditions") or []
                if len(conditions) < len(want["conditions"]) or not all(
                    _find(conditions, *c) for c in want["conditions"]
                ):
                    return f"listener {want['name']}: conditions {conditions}, want {want['conditions']}"
            return None

        await poll(f"Gateway {gw[0]}/{gw[1]} listeners in status", STATUS_S, check)

    async def must_have_latest_conditions(self, kind: str, name: tuple[str, str]) -> None:
        """GatewayMustHaveLatestConditions / GatewayClassMustHaveLatestConditions /
        HTTPRouteMustHaveLatestConditions: every condition observed at the object's generation (a route's
        are its parents' conditions)."""

        async def check() -> str | None:
            obj = await self.cp.get(kind, *name)
            if obj is None:
                return f"no {kind} {name[0]}/{name[1]}"
            status = obj.get("status") or {}
            if kind.endswith("routes"):
                conditions = [c for p in status.get("parents") or [] for c in p.get("conditions") or []]
            else:
                conditions = status.get("conditions") or []
            return _stale(obj, conditions)

        await poll(f"{kind} {name[0]}/{name[1]} latest conditions", LATEST_GENERATION_S, check)

    async def gateway_must_have_condition(self, gw: tuple[str, str], condition: tuple[str, str, str]) -> None:
        """GatewayMustHaveCondition."""

        async def check() -> str | None:
            obj = await self.cp.get("gateways", *gw)
            if obj is None:
                return "no such Gateway"
            conditions = (obj.get("status") or {}).get("conditions") or []
            stale = _stale(obj, conditions)
            if stale:
                return stale
            return None if _find(conditions, *condition) else f"no {condition}: {conditions}"

        await poll(f"Gateway {gw[0]}/{gw[1]} condition {condition}", GATEWAY_CONDITION_S, check)

    async def gwc_must_be_accepted(self, name: str, status: str = "") -> str:
        """gwcMustBeAccepted (GWCMustHaveAcceptedConditionTrue / Any): returns its controllerName."""
        found: list[str] = []

        async def check() -> str | None:
            obj = await self.cp.get("gatewayclasses", "", name)
            if obj is None:
                return "no such GatewayClass"
            found.append(str((obj.get("spec") or {}).get("controllerName", "")))
            conditions = (obj.get("status") or {}).get("conditions") or []
            stale = _stale(obj, conditions)
            if stale:
                return stale
            return None if _find(conditions, "Accepted", status) else f"no Accepted={status}: {conditions}"

        await poll(f"GatewayClass {name} Accepted", GATEWAY_CONDITION_S, check)
        return found[-1]

    async def patch(self, relative: str, doc: dict[str, Any]) -> None:
        """client.Patch of one object of a test's manifests: the changed object applied over the stored."""
        await self.cp.apply(relative, [doc])

    async def gateway_must_have_zero_routes(self, gw: tuple[str, str]) -> None:
        """GatewayMustHaveZeroRoutes: no listeners, or one with attachedRoutes 0."""

        async def check() -> str | None:
            obj = await self.cp.get("gateways", *gw)
            if obj is None:
                return "no such Gateway"
            status = obj.get("status") or {}
            stale = _stale(obj, status.get("conditions") or [])
            if stale:
                return stale
            listeners = status.get("listeners") or []
            if not listeners or (len(listeners) == 1 and listeners[0].get("attachedRoutes") == 0):
                return None
            return f"listeners {listeners}"

        await poll(f"Gateway {gw[0]}/{gw[1]} to have zero routes", STATUS_S, check)

    async def route_must_have_no_accepted_parents(
        self, route: tuple[str, str], kind: str = "httproutes"
    ) -> None:
        """HTTPRouteMustHaveNoAcceptedParents: no parents (seen twice, a second apart), or exactly one whose
        Accepted is False."""
        empty_seen = False
        deadline = time.monotonic() + STATUS_S
        why = ""
        while time.monotonic() < deadline:
            obj = await self.cp.get(kind, *route)
            if obj is None:
                raise ConformanceError(f"no {kind} {route[0]}/{route[1]}")
            parents = (obj.get("status") or {}).get("parents") or []
            if not parents:
                if empty_seen:
                    return
                empty_seen = True
            elif len(parents) == 1 and not _stale(obj, parents[0].get("conditions") or []):
                if _find(parents[0].get("conditions") or [], "Accepted", "False"):
                    return
            why = f"parents {parents}"
            await asyncio.sleep(1.0)
        raise ConformanceError(f"{kind} {route[0]}/{route[1]} has accepted parents: {why}")

    async def backend_tls_policy_must_have_condition(
        self, policy: tuple[str, str], gw: tuple[str, str], condition: tuple[str, str, str]
    ) -> None:
        """BackendTLSPolicyMustHaveCondition: every ancestor's conditions at the latest generation, the
        Gateway's ancestor holding the condition."""

        async def check() -> str | None:
            obj = await self.cp.get("backendtlspolicies", *policy)
            if obj is None:
                return "no such BackendTLSPolicy"
            ancestors = (obj.get("status") or {}).get("ancestors") or []
            for a in ancestors:
                stale = _stale(obj, a.get("conditions") or [])
                if stale:
                    return stale
                ref = a.get("ancestorRef") or {}
                if ref.get("name") == gw[1] and ref.get("namespace", gw[0]) == gw[0]:
                    if _find(a.get("conditions") or [], *condition):
                        return None
            return f"no ancestor {gw[0]}/{gw[1]} with {condition}: {ancestors}"

        await poll(f"BackendTLSPolicy {policy[0]}/{policy[1]} to have {condition}", STATUS_S, check)

    async def expect_failure(self, gw_addr: GwAddr, exp: Expected) -> None:
        """MakeRequestAndExpectFailure (WaitForConsistentFailureResponse): 5 answers in a row that are
        neither 200 nor a timeout, within 30 s; a 200 fails at once."""

        async def attempt() -> str:
            try:
                got = await self.round_trip(gw_addr, exp)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return f"Request failed, not ready yet: {exc!r}"
            if got.status == 200:
                raise ConformanceError(f"Request {exp.request} should failed, returned HTTP Status OK (200)")
            return f"timeout status {got.status}" if got.status in (408, 504) else ""

        await await_convergence("timeout while waiting for a consistent failure", attempt, required=5)

    async def resolved_refs_true(self, route: tuple[str, str], gw: tuple[str, str]) -> None:
        await self.route_must_have_condition(route, gw, ("ResolvedRefs", "True", "ResolvedRefs"))

    # ---- HTTP (http.go) ----------------------------------------------------------------------------------
    async def expect(
        self, gw_addr: GwAddr, exp: Expected, required: int = REQUIRED_CONSECUTIVE_SUCCESSES
    ) -> None:
        """MakeRequestAndExpectEventuallyConsistentResponse: 3 (`required`) matching round trips in a row,
        within 30 s."""

        async def attempt() -> str:
            try:
                return compare(exp, await self.round_trip(gw_addr, exp))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                return f"request failed: {exc!r}"

        await await_convergence(exp.name(), attempt, required)

    async def expect_mirrored(
        self, gw_addr: GwAddr, exp: Expected, mirrored_to: list[tuple[str, str]]
    ) -> None:
        """ExpectMirroredRequest around MakeRequestAndExpectEventuallyConsistentResponse: each mirrored
        backend (namespace, Deployment name) must log the request's URI within RequestTimeout of the watch's
        start (the watch starts before the requests, polled every second, as assert.Eventually does)."""
        pattern = re.compile(f"Echoing back request made to {re.escape(exp.request.path)} to client")

        async def watch(namespace: str, name: str) -> str | None:
            deadline = time.monotonic() + REQUEST_TIMEOUT_S
            while True:
                ips = [
                    p.ip for p in self.kubelet.pods if p.namespace == namespace and _deployed_by(p.name, name)
                ]
                if any(pattern.search(line) for ip in ips for line in self.kubelet.echo.logs.get(ip, [])):
                    return None
                if time.monotonic() > deadline:
                    return f'Couldn\'t find mirrored request in "{namespace}/{name}" logs'
                await asyncio.sleep(1.0)

        watchers = [asyncio.ensure_future(watch(ns, name)) for ns, name in mirrored_to]
        try:
            await self.expect(gw_addr, exp)
        finally:
            missing = [why for why in await asyncio.gather(*watchers) if why]
        if missing:
            raise ConformanceError(f"{exp.name()}: " + "; ".join(missing))

    async def tls_expect(self, gw_addr: GwAddr, exp: Expected, server_cert: bytes, server_name: str) -> None:
        """tls.MakeTLSRequestAndExpectEventuallyConsistentResponse: HTTPS with SNI server_name, the server's
        certificate the only root, its name checked as Go's crypto/x509 checks it; 3 matches in a row."""
        context = ssl.create_default_context(cadata=server_cert.decode())
        # Go trusts any certificate of its root pool as an anchor, a CA-signed leaf included
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.check_hostname = False  # Go's rules instead: OpenSSL refuses a wildcard like *.org
        context.sslobject_class = _GoHostnameCheck

        async def attempt() -> str:
            try:
                return compare(exp, await self.round_trip(gw_addr, exp, context, server_name))
            except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as exc:
                return f"request failed: {exc!r}"

        await await_convergence(exp.name(), attempt)

    async def tcp_expect(
        self, gw_addr: GwAddr, root: bytes, server_name: str, use_tls: bool, exp: TcpExpected
    ) -> None:
        """tcp.MakeTCPRequestAndExpectEventuallyValidResponse: a new connection each second (TLS with SNI
        server_name and root as the only CA) until one completes welcome, PING, IS_TLS and TEST within 30 s;
        that exchange's answers must then be the expected ones."""
        context = None
        if use_tls:
            context = ssl.create_default_context(cadata=root.decode() if root else None)
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # Go: any root-pool certificate anchors
            context.check_hostname = False
            context.sslobject_class = _GoHostnameCheck
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        host, _, port = gw_addr.dial().rpartition(":")
        deadline, why = time.monotonic() + MAX_TIME_TO_CONSISTENCY_S, ""
        while time.monotonic() < deadline:
            try:
                answers = await asyncio.wait_for(
                    _tcp_exchange(host, int(port), context, server_name), REQUEST_TIMEOUT_S
                )
            except (OSError, TimeoutError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as exc:
                why = f"client could not connect or complete the exchange: {exc!r}"
                await asyncio.sleep(1.0)
                continue
            welcome, pong, is_tls, payload = answers
            problems = []
            if welcome != TCP_WELCOME:
                problems.append(f"TCPServer welcome message does not match: {welcome!r}")
            if pong != "PONG\n":
                problems.append(f"PING answered {pong!r}")
            if is_tls.rstrip("\n") != str(exp.backend_is_tls).lower():
                problems.append(f"IS_TLS answered {is_tls!r}, want {exp.backend_is_tls}")
            if payload.get("namespace") != exp.namespace:
                problems.append(
                    f"namespace does not match: {payload.get('namespace')!r} != {exp.namespace!r}"
                )
            if not str(payload.get("pod", "")).startswith(f"{exp.backend}-"):
                problems.append(f"backend name does not match with pod prefix. pod={payload.get('pod')}")
            tls_facts = payload.get("tls") or {}
            if exp.hostname and tls_facts.get("serverName") != exp.hostname:
                problems.append(f"SNI seen {tls_facts.get('serverName')!r}, want {exp.hostname!r}")
            if problems:
                raise ConformanceError("; ".join(problems))
            return
        raise ConformanceError(f"no valid TCP response within {MAX_TIME_TO_CONSISTENCY_S:.0f}s: {why}")

    async def tls_connection_rejected(self, gw_addr: GwAddr, server_name: str) -> None:
        """tls.MakeTLSConnectionAndExpectEventuallyConnectionRejection: within 30 s, a TLS dial with SNI
        server_name (the system roots, TLS 1.2+) ends in EOF or a reset during the handshake."""
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        host, _, port = gw_addr.dial().rpartition(":")
        deadline, why = time.monotonic() + MAX_TIME_TO_CONSISTENCY_S, "never tried"
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), ssl=context, server_hostname=server_name),
                    REQUEST_TIMEOUT_S,
                )
                writer.close()
                why = "client could connect"
            except (
                ssl.SSLEOFError,
                ssl.SSLZeroReturnError,
                ConnectionResetError,
                asyncio.IncompleteReadError,
            ):
                return
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                why = f"client could not connect: {exc!r}"
            await asyncio.sleep(1.0)
        raise ConformanceError(f"TLS connection with SNI {server_name} was not rejected: {why}")

    async def grpc_expect(self, gw_addr: GwAddr, exp: GrpcExpected) -> None:
        """grpc.MakeRequestAndExpectEventuallyConsistentResponse: a DefaultClient of its own (one channel,
        reset after an INTERNAL status), 3 matching RPCs in a row within 30 s."""
        chan = grpcecho.channel(gw_addr.dial(), exp.authority)
        successes, why, start = 0, "", time.monotonic()
        try:
            while True:
                elapsed = time.monotonic() - start
                try:
                    got = await grpcecho.send_rpc(
                        chan, exp.method, exp.metadata, max(MAX_TIME_TO_CONSISTENCY_S - elapsed, 0.1)
                    )
                    if got.code == grpc.StatusCode.INTERNAL:
                        await chan.close()
                        chan = grpcecho.channel(gw_addr.dial(), exp.authority)
                    why = grpc_compare(exp, got)
                except (grpc.aio.AioRpcError, OSError) as exc:
                    why = f"failed to send RPC: {exc!r}"
                if not why:
                    successes += 1
                    if successes >= REQUIRED_CONSECUTIVE_SUCCESSES:
                        return
                    continue
                successes = 0
                if time.monotonic() - start > MAX_TIME_TO_CONSISTENCY_S:
                    raise ConformanceError(f"{exp.name()}: {why}")
                await asyncio.sleep(1.0)
        finally:
            await chan.close()

    async def grpc_expect_all(self, gw_addr: GwAddr, cases: list[GrpcExpected]) -> None:
        failures = []
        for i, case in enumerate(cases):
            try:
                await self.grpc_expect(gw_addr, case)
            except ConformanceError as exc:
                failures.append(f"case {i}: {exc}")
        if failures:
            raise ConformanceError("\n".join(failures))

    async def expect_all(self, gw_addr: GwAddr, cases: list[Expected]) -> None:
        """The Go tests' t.Run per case: every case is tried, and the test fails naming each failing one."""
        failures = []
        for i, case in enumerate(cases):
            try:
                await self.expect(gw_addr, case)
            except ConformanceError as exc:
                failures.append(f"case {i}: {exc}")
        if failures:
            raise ConformanceError("\n".join(failures))

    async def round_trip(
        self, gw_addr: GwAddr, exp: Expected, tls: ssl.SSLContext | None = None, server_name: str = ""
    ) -> Captured:
        assert self.http is not None
        req = exp.request
        path, _, query = req.path.partition("?")
        host = req.host or calculate_host(gw_addr)
        headers = {"Host": host, **req.headers}
        headers["X-Echo-Set-Header"] = ",".join(
            f"{k}:{v}" for k, v in exp.backend_set_response_headers.items()
        )
        if req.protocol == H2C_PROTOCOL:
            h2 = await h2cecho.get(gw_addr.dial(), host, req.path, REQUEST_TIMEOUT_S)
            captured = Captured(h2.status, h2.headers)
            if 200 <= h2.status < 300 and "application/json" in ",".join(h2.headers.get("content-type", [])):
                captured.request = json.loads(h2.body)
            return captured
        scheme = "https" if tls is not None else "http"
        dial = gw_addr.dial("443" if tls is not None else "80")
        url = f"{scheme}://{dial}{path}" + (f"?{query}" if query else "")
        async with self.http.request(
            req.method,
            aiohttp.client.URL(url, encoded=True),
            headers=headers,
            allow_redirects=False,
            data=req.body or None,
            **({"ssl": tls, "server_hostname": server_name} if tls is not None else {}),
        ) as resp:
            text = await resp.text()
            captured = Captured(resp.status, {k.lower(): resp.headers.getall(k) for k in resp.headers})
            if 200 <= resp.status < 300 and "application/json" in resp.headers.get("Content-Type", ""):
                captured.request = json.loads(text)
            if resp.status in (300, 301, 302, 303, 304, 305, 307, 308):
                loc = urlsplit(resp.headers.get("Location", ""))
                captured.redirect = Redirect(loc.scheme, loc.hostname or "", str(loc.port or ""), loc.path)
            return captured


def _parent_matches(want: dict[str, Any], got: dict[str, Any], namespace_required: bool) -> bool:
    if got.get("controllerName") != want["controllerName"]:
        return False
    w, g = want["parentRef"], got.get("parentRef") or {}
    if g.get("group") != w.get("group") or g.get("kind") != w.get("kind") or g.get("name") != w["name"]:
        return False
    if g.get("namespace") != w.get("namespace") and (namespace_required or g.get("namespace") is not None):
        return False
    conditions = got.get("conditions") or []
    return all(_find(conditions, *c) for c in want["conditions"])


@dataclass
class TcpExpected:
    """tcp.ExpectedResponse."""

    backend_is_tls: bool = False
    backend: str = ""
    namespace: str = ""
    hostname: str = ""


async def _tcp_exchange(
    host: str, port: int, context: ssl.SSLContext | None, server_name: str
) -> tuple[str, str, str, dict[str, Any]]:
    """One connection: the welcome line and the answers to PING, IS_TLS and TEST."""
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=server_name if context is not None else None
    )
    try:
        welcome = (await reader.readline()).decode()
        answers = []
        for command in ("PING", "IS_TLS", "TEST"):
            writer.write(f"{command}\n".encode())
            await writer.drain()
            answers.append((await reader.readline()).decode())
        if not answers[2]:
            raise asyncio.IncompleteReadError(b"", None)
        return welcome, answers[0], answers[1], dict(json.loads(answers[2]))
    finally:
        writer.close()


@dataclass
class GrpcExpected:
    """grpc.ExpectedResponse: the method called (Echo, EchoTwo or EchoThree), the request metadata and
    :authority, the status code expected and, when OK, the backend and namespace that answer."""

    method: str = "Echo"
    metadata: dict[str, str] = field(default_factory=dict)
    authority: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    backend: str = ""
    namespace: str = ""

    def name(self) -> str:
        req = f"request to '{self.authority}{grpcecho.full_method(self.method)}'"
        if self.metadata:
            req += " with headers '{" + ",".join(f"{k}:{v}" for k, v in sorted(self.metadata.items())) + "}'"
        return (
            f"{req} should go to {self.backend}"
            if self.backend
            else f"{req} should receive a {self.code.name}"
        )


def grpc_compare(exp: GrpcExpected, got: grpcecho.RpcResult) -> str:
    """compareResponse: '' when the RPC's outcome matches, else why not."""
    if got.code != exp.code:
        return f"expected status code to be {exp.code.name}, but got {got.code.name}"
    if got.code == grpc.StatusCode.OK:
        a = got.response.assertions
        if a.fully_qualified_method != grpcecho.full_method(exp.method):
            return f"expected path to be {grpcecho.full_method(exp.method)}, got {a.fully_qualified_method}"
        if exp.namespace and exp.namespace != a.context.namespace:
            return f"expected namespace to be {exp.namespace}, got {a.context.namespace}"
        if not a.context.pod.startswith(exp.backend):
            return f"expected pod name to start with {exp.backend}, got {a.context.pod}"
    return ""


class _GoHostnameCheck(ssl.SSLObject):
    """crypto/x509 VerifyHostname on the peer certificate once the handshake is done: a DNS SAN equal to the
    server name label by label (case insensitive), a leftmost `*` label matching any one label."""

    def do_handshake(self) -> None:
        super().do_handshake()
        name = str(self.server_hostname or "")
        sans = [v for k, v in (self.getpeercert() or {}).get("subjectAltName", ()) if k == "DNS"]
        want = name.lower().rstrip(".").split(".")
        for san in sans:
            labels = str(san).lower().split(".")
            if len(labels) == len(want) and all(
                p == h or (i == 0 and p == "*") for i, (p, h) in enumerate(zip(labels, want, strict=True))
            ):
                return
        raise ssl.SSLCertVerificationError(f"x509: certificate is not valid for {name}, only for {sans}")


def _deployed_by(pod: str, deployment: str) -> bool:
    """A pod name is its Deployment's name plus two hash parts (the harness names them so)."""
    return pod.rsplit("-", 2)[0] == deployment


def add_request_id_query_param(exp: Expected, request_id: str) -> None:
    """ExpectedResponse.AddRequestIDQueryParam: a unique query parameter on the request (and on the expected
    request's path), so a mirrored request can be found by its URI."""
    exp.request.path = _add_query_param(exp.request.path, REQUEST_ID_QUERY_PARAM, request_id)
    if exp.expected_request is not None:
        if not exp.expected_request.path:
            exp.expected_request.path = exp.request.path
        else:
            exp.expected_request.path = _add_query_param(
                exp.expected_request.path, REQUEST_ID_QUERY_PARAM, request_id
            )


def _add_query_param(raw: str, name: str, value: str) -> str:
    """addQueryParam: url.Values.Set then Encode (keys sorted, form-encoded)."""
    parts = urlsplit(raw)
    query = parse_qs(parts.query, keep_blank_values=True)
    query[name] = [value]
    encoded = urlencode([(k, v) for k in sorted(query) for v in query[k]])
    return urlunsplit(("", "", parts.path, encoded, parts.fragment))


def calculate_host(gw_addr: GwAddr) -> str:
    """CalculateHost: the URL's host, which is the Host header when the request names none."""
    return gw_addr.host if gw_addr.port in ("80", "") else str(gw_addr)


# ---- ExpectedResponse and CompareRoundTrip ---------------------------------------------------------------
@dataclass
class Request:
    host: str = ""
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    unfollow_redirect: bool = False
    body: str = ""
    protocol: str = ""  # H2C_PROTOCOL: HTTP/2 with prior knowledge (roundtripper.H2CPriorKnowledgeProtocol)
    sni: str = ""  # as in Go: without an ExpectedRequest, the SNI the backend must have seen


@dataclass
class ExpectedRequest:
    host: str = ""
    method: str = ""
    path: str = ""  # as in Go: compared as given (tests that set an ExpectedRequest set its path)
    headers: dict[str, str] | None = None
    absent_headers: list[str] = field(default_factory=list)
    sni: str = ""  # the TLS server name the backend saw


@dataclass
class Redirect:
    scheme: str = ""
    host: str = ""
    port: str = ""
    path: str = ""


@dataclass
class Expected:
    request: Request = field(default_factory=Request)
    expected_request: ExpectedRequest | None = None
    redirect: Redirect | None = None
    status: tuple[int, ...] = (200,)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_absent_headers: list[str] = field(default_factory=list)
    backend_set_response_headers: dict[str, str] = field(default_factory=dict)
    backend: str = ""
    namespace: str = ""

    def name(self) -> str:
        req = f"request to '{self.request.host}{self.request.path}'"
        return f"{req} should go to {self.backend}" if self.backend else f"{req} should receive {self.status}"


@dataclass
class Captured:
    status: int
    headers: dict[str, list[str]]
    request: dict[str, Any] | None = None
    redirect: Redirect | None = None


def compare(exp: Expected, got: Captured) -> str:
    """CompareRoundTrip: '' when the round trip matches, else why not."""
    if got.status in (408, 504) and any(s in (408, 504) for s in exp.status):
        return ""
    if got.status not in exp.status:
        return f"expected status code to be one of {list(exp.status)}, got {got.status}"
    if got.status in (200, 204):
        er = exp.expected_request or ExpectedRequest(
            host=exp.request.host,
            method=exp.request.method,
            path=exp.request.path,
            headers=exp.request.headers or None,
            sni=exp.request.sni,
        )
        creq = got.request or {}
        method = er.method or "GET"
        path = er.path
        if er.host and er.host != creq.get("host"):
            return f"expected host to be {er.host}, got {creq.get('host')}"
        if path != creq.get("path"):
            return f"expected path to be {path}, got {creq.get('path')}"
        if method != creq.get("method"):
            return f"expected method to be {method}, got {creq.get('method')}"
        if exp.namespace != creq.get("namespace"):
            return f"expected namespace to be {exp.namespace}, got {creq.get('namespace')}"
        seen = {k.lower(): v for k, v in (creq.get("headers") or {}).items()}
        for name, value in (er.headers or {}).items():
            if name.lower() not in seen:
                return f"expected {name} header to be set, actual headers: {seen}"
            if ",".join(seen[name.lower()]) != value:
                return f"expected {name} header to be set to {value}, got {','.join(seen[name.lower()])}"
        for name, value in exp.response_headers.items():
            if name.lower() not in got.headers:
                return f"expected {name} response header to be set, actual headers: {got.headers}"
            if ",".join(got.headers[name.lower()]) != value:
                return (
                    f"expected {name} header to be set to {value}, got {','.join(got.headers[name.lower()])}"
                )
        for name in exp.response_absent_headers:
            if name.lower() in got.headers:
                return f"expected {name} response header to not be set, got {got.headers[name.lower()]}"
        for name in er.absent_headers:
            if name.lower() in seen:
                return f"expected {name} header to not be set, got {seen[name.lower()]}"
        if not str(creq.get("pod", "")).startswith(exp.backend):
            return f"expected pod name to start with {exp.backend}, got {creq.get('pod')}"
        seen_sni = (creq.get("tls") or {}).get("serverName", "")
        if er.sni and er.sni != seen_sni:
            return f"expected SNI {seen_sni!r} to be equal to {er.sni!r}"
    elif got.status in (300, 301, 302, 303, 304, 305, 307, 308) and exp.redirect is not None:
        want, have = exp.redirect, got.redirect or Redirect()
        host = want.host or have.host
        scheme = want.scheme or "http"
        path = want.path or exp.request.path.partition("?")[0]
        if host != have.host:
            return f"expected redirected hostname to be {host!r}, got {have.host!r}"
        if want.port == "":
            if have.scheme.lower() == "http" and have.port not in ("80", ""):
                return f"for http scheme, expected redirected port to be 80 or not set, got {have.port!r}"
            if have.scheme.lower() == "https" and have.port not in ("443", ""):
                return f"for https scheme, expected redirected port to be 443 or not set, got {have.port!r}"
        elif want.port != have.port:
            return f"expected redirected port to be {want.port!r}, got {have.port!r}"
        if scheme != have.scheme:
            return f"expected redirected scheme to be {scheme!r}, got {have.scheme!r}"
        if path != have.path:
            return f"expected redirected path to be {path!r}, got {have.path!r}"
    return ""
