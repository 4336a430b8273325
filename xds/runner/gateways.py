"""Gateway API gateways under `mecha up`: one gateway Envoy per Gateway of Mecha's classes, as istiod's
automated deployment gives each Gateway its own Deployment (`<name>-<class>`).

Each Envoy is a supervised child like the mesh's other proxies (restarted when it dies, drained and stopped
with them), with its own agent, started when the Gateway appears in the served config and stopped when the
Gateway is deleted or leaves Mecha's classes; a change of its listener ports starts it again. Its node
metadata names the Gateway (`gateways: [NS/NAME]`) and maps every listener port to the port it binds on
127.0.0.1: ports below 1024 move up by 8000 (80 -> 8080, 443 -> 8443), as Istio's gateway charts map the
Service's port 80 to the unprivileged targetPort 8080; others stay, and every one shifts with
--port-offset. A port that is taken (by another Gateway, or anything else) becomes the next free one. The
control plane reports what the Envoys bind in each Gateway's status.addresses (gatewayapi/addresses.py)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from xds.bootstrap import BootstrapParams, write
from xds.gatewayapi.kinds import BUILTIN_CLASSES, CONTROLLER_NAMES, GATEWAY, GATEWAY_CLASS, is_gateway_api
from xds.runner.envoy import envoy_argv, envoy_binary
from xds.runner.errors import StackError
from xds.runner.procs import Child, port_in_use, touch_private_log

if TYPE_CHECKING:
    from xds.runner.stack import Stack

UNPRIVILEGED_SHIFT = 8000  # 80 -> 8080, 443 -> 8443 (Istio's gateway targetPorts)
FIRST_UNPRIVILEGED = 1024
POLL_S = 0.5
START_WITHIN_S = 30.0
LOOPBACK = "127.0.0.1"
CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
# names that are safe in proxy ids and file names (Kubernetes object names are DNS subdomains)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def bound_port(port: int, offset: int = 0) -> int:
    """The port a listener port binds under `mecha up`: privileged ones moved up by 8000, then the offset."""
    return (port + UNPRIVILEGED_SHIFT if port < FIRST_UNPRIVILEGED else port) + offset


@dataclass(frozen=True)
class Wanted:
    """A Gateway of Mecha's classes in the served config: what its Envoy serves."""

    namespace: str
    name: str
    class_name: str
    ports: tuple[int, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def proxy_id(self) -> str:
        """istiod's Deployment name `<name>-<class>`, in its namespace as a pod id is."""
        return f"{self.name}-{self.class_name}.{self.namespace}"


def _spec(body: Any) -> dict[str, Any]:
    found = body.get("spec") if isinstance(body, dict) else None
    return found if isinstance(found, dict) else {}


def mecha_gateways(documents: Iterable[dict[str, Any]]) -> tuple[list[Wanted], list[str]]:
    """The Gateways to serve, from GET /api/v1/config documents (the control plane's class rule: a
    GatewayClass whose controllerName is Mecha's or istiod's, else the built-in `mecha` and `istio`), and
    one line per Gateway of those classes that cannot get an Envoy (a name unsafe in file names)."""
    docs = [d for d in documents if is_gateway_api(str(d.get("apiVersion", "")))]
    classes = {
        d.get("name"): _spec(d.get("body")).get("controllerName")
        for d in docs
        if d.get("kind") == GATEWAY_CLASS
    }
    ours = {n for n in BUILTIN_CLASSES if n not in classes} | {
        n for n, c in classes.items() if c in CONTROLLER_NAMES
    }
    wanted, skipped = [], []
    for d in docs:
        spec = _spec(d.get("body"))
        if d.get("kind") != GATEWAY or spec.get("gatewayClassName") not in ours:
            continue
        namespace, name, cls = (
            str(d.get("namespace", "")),
            str(d.get("name", "")),
            str(spec["gatewayClassName"]),
        )
        if not all(_NAME.match(part) for part in (namespace, name, cls)):
            skipped.append(f"Gateway {namespace}/{name}: no gateway Envoy for a name that is not a DNS name")
            continue
        ports = {ls.get("port") for ls in spec.get("listeners") or [] if isinstance(ls, dict)}
        valid = sorted(p for p in ports if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536)
        wanted.append(Wanted(namespace, name, cls, tuple(valid)))
    return sorted(wanted, key=lambda w: w.ref), skipped


@dataclass
class Deployed:
    wanted: Wanted
    admin_port: int
    ports: dict[int, int]  # listener port -> bound port on LOOPBACK
    envoy: Child | None = None
    agent: Child | None = None
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        w = self.wanted
        return {
            "mode": "gateway",
            "namespace": w.namespace,
            "address": LOOPBACK,
            "admin": f"{LOOPBACK}:{self.admin_port}",
            "labels": {CLASS_LABEL: w.class_name},
            "gateways": [w.ref],
            "gateway_ports": {str(p): b for p, b in self.ports.items()},
            "bind": LOOPBACK,
        }

    def addresses(self) -> dict[str, str]:
        return {str(p): f"{LOOPBACK}:{b}" for p, b in self.ports.items()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class GatewayDeployer:
    """Keeps one gateway Envoy per Mecha Gateway of the served config running, beside a Stack's proxies."""

    def __init__(self, stack: Stack, offset: int = 0) -> None:
        self.stack = stack
        self.offset = offset
        self.running: dict[str, Deployed] = {}
        self._failed: dict[str, Wanted] = {}  # not tried again until the Gateway changes
        self._skipped: set[str] = set()
        self._version: int | None = None

    # ---- the served config ---------------------------------------------------------------------------
    async def _get(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        async with session.get(self.stack.api + path, headers=self.stack.api_headers()) as resp:
            resp.raise_for_status()
            return dict(await resp.json())

    async def poll(self) -> None:
        """Read the config when its version changed, and start/stop Envoys to match it."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            version = (await self._get(session, "/readyz")).get("version")
            if version == self._version:
                return
            view = await self._get(session, "/api/v1/config")
        wanted, skipped = mecha_gateways(view.get("documents") or [])
        for line in skipped:
            if line not in self._skipped:
                self._skipped.add(line)
                self.stack.report(f"warning: {line}")
        await self.reconcile(wanted)
        self._version = version

    async def run(self, stop: asyncio.Event) -> None:
        """Until stop: follow the config (a control plane that is restarting is asked again next round)."""
        while not stop.is_set():
            try:
                await self.poll()
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), POLL_S)
            except TimeoutError:
                pass

    async def reconcile(self, wanted: list[Wanted]) -> None:
        by_ref = {w.ref: w for w in wanted}
        for ref, deployed in list(self.running.items()):
            now = by_ref.get(ref)
            if now != deployed.wanted:
                why = (
                    "deleted (or not of Mecha's classes any more)"
                    if now is None
                    else "its listener ports changed"
                )
                await self._stop(deployed, why)
        self._failed = {ref: w for ref, w in self._failed.items() if by_ref.get(ref) == w}
        for w in wanted:
            if w.ref not in self.running and w.ref not in self._failed:
                try:
                    await self._start(w)
                except Exception as exc:  # one Gateway's failure must not stop the others
                    self._failed[w.ref] = w
                    self.stack.report(f"warning: gateway Envoy for Gateway {w.ref} did not start: {exc}")

    # ---- one Envoy -----------------------------------------------------------------------------------
    def _allocate(self, w: Wanted) -> dict[int, int]:
        taken = set(self.stack.all_ports().values())
        taken |= {b for d in self.running.values() for b in d.ports.values()}
        out: dict[int, int] = {}
        for port in w.ports:
            want = bound_port(port, self.offset)
            while want in taken or port_in_use(want):
                want += 1
                if want > 65535:
                    raise RuntimeError(f"no free port for listener port {port}")
            out[port] = want
            taken.add(want)
        return out

    async def _start(self, w: Wanted) -> None:
        from xds.agent.launch import start_beside

        o, logs = self.stack.o, self.stack.logs
        deployed = Deployed(w, free_port(), self._allocate(w))
        self.running[w.ref] = deployed
        deadline = time.monotonic() + START_WITHIN_S
        try:
            meta = deployed.metadata()
            params = BootstrapParams(proxy_id=w.proxy_id, xds_port=o.xds_port, admin_port=deployed.admin_port,
                                     metadata=meta, cluster=f"{w.name}-{w.class_name}", delta=o.delta,
                                     initial_fetch_timeout_s=2.0)  # fmt: skip
            path = write(params, o.state_dir / "bootstrap" / f"{w.proxy_id}.yaml")
            admin = f"{LOOPBACK}:{deployed.admin_port}"
            if o.with_agents:  # its own agent: credential, SDS and xDS over Unix sockets, as the ingress's
                try:
                    path = await start_beside(self.stack.sup, logs, o.state_dir, w.proxy_id, meta, o.xds_port,
                                              path, deadline, admin)  # fmt: skip
                finally:
                    deployed.agent = self._child(f"agent-{w.proxy_id}")
            log = touch_private_log(logs / f"envoy-{w.proxy_id}.log")
            argv = envoy_argv(envoy_binary(), path, deployed.admin_port, log, w.proxy_id)
            child = Child(f"envoy-{w.proxy_id}", "envoy", argv, logs / f"envoy-{w.proxy_id}.out", admin=admin)
            deployed.envoy = await self.stack.sup.start(child)
            await self.stack._wait_http(deployed.envoy, f"http://{admin}/ready", deadline)
            await self.stack.wait_synced([w.proxy_id], deadline)
        except (StackError, RuntimeError, OSError) as exc:
            await self._stop(deployed, "", quiet=True)
            raise RuntimeError(str(exc)) from None
        listeners = (
            ", ".join(f"listener {p} on {a}" for p, a in deployed.addresses().items()) or "no listeners"
        )
        self.stack.report(f"[ready] gateway {w.ref} (Gateway API, class {w.class_name}): {listeners}")

    def _child(self, name: str) -> Child | None:
        return next((c for c in reversed(self.stack.sup.children) if c.name == name), None)

    async def _stop(self, deployed: Deployed, why: str, quiet: bool = False) -> None:
        self.running.pop(deployed.wanted.ref, None)
        for child in (deployed.envoy, deployed.agent):
            if child is not None:
                await self.stack.sup.stop_child(child)
                self.stack.sup.forget(child)
        if not quiet:
            self.stack.report(f"stopped the gateway Envoy of Gateway {deployed.wanted.ref}: {why}")

    def describe(self) -> dict[str, Any]:
        """For up.json and the summary: each Gateway's proxy and bound listener addresses."""
        return {
            ref: {
                "proxy": d.wanted.proxy_id,
                "class": d.wanted.class_name,
                "listeners": d.addresses(),
                "admin": f"http://{LOOPBACK}:{d.admin_port}",
            }
            for ref, d in sorted(self.running.items())
        }
