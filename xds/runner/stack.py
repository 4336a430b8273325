"""The `mecha up` topology on one machine: control plane, demo apps, one Envoy per app (or per node).

Used by `mecha up` and by the end-to-end tests (with free ports and a temporary state folder).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from xds.bootstrap import BootstrapParams, write
from xds.controlplane.auth import ENV_CONTROL_PLANE_TOKEN_FILE, READER_TOKEN_FILE, auth_headers
from xds.controlplane.envoy_admin import AdminError, admin_get_json
from xds.controlplane.report import diag_line
from xds.controlplane.security_env import xds_security
from xds.demo.config import DemoLayout, DemoProxy, RoutingKnobs, demo_config
from xds.runner.demofile import write_demo_config
from xds.runner.diagnose import explain_proxy
from xds.runner.envoy import envoy_argv, envoy_binary, nack_line, one_line, proxy_synced
from xds.runner.errors import ProxyRefused, StackError
from xds.runner.gateways import GatewayDeployer
from xds.runner.listeners import listener_ports
from xds.runner.ports import ephemeral_warning, out_of_range, read_ephemeral_range
from xds.runner.procs import Child, Supervisor, port_in_use, touch_private_log
from xds.statedir import ensure_private_dir

CAPABILITIES_WAIT_S = 15.0
LOOPBACK = "127.0.0.1"  # `mecha up` runs on one machine: every listener binds here


PROGRESS_EVERY_S = 2.0


async def all_or_first_error(*steps: Any) -> None:
    """Run the steps concurrently; the first failure cancels the others and is raised as itself (not as an
    ExceptionGroup), so `mecha up` prints one clear message."""
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


def capabilities_argv(p: DemoProxy, api: str) -> list[str]:
    """The capability service of one proxy: a sidecar's app, or (node mode) every app of the node in one
    process, each with its own app id, ports and app channel."""
    argv = [sys.executable, "-m", "capabilities", "--control-plane", api]
    if p.per_app_dapr:
        for w in p.workloads:
            argv += ["--app", f"{w.service}:{w.capabilities_http_port}:{w.capabilities_grpc_port}:"
                              f"http://127.0.0.1:{w.app_port}"]  # fmt: skip
        return argv
    app = p.workloads[0]
    app_id = app.service if p.mode == "sidecar" else p.id
    argv += ["--app-id", app_id, "--dapr-http-port", str(p.capabilities_http_port),
             "--dapr-grpc-port", str(p.capabilities_grpc_port), "--app-port", str(app.app_port)]  # fmt: skip
    return argv


def app_dapr_env(layout: DemoLayout, workload_name: str) -> dict[str, str]:
    """DAPR_HTTP_PORT / DAPR_GRPC_PORT of an app, as the Dapr SDKs read them: its proxy's Dapr listeners
    (node mode: the app's own pair on the node proxy)."""
    w = layout.workload(workload_name)
    proxy = layout.proxy_of(workload_name)
    http = w.dapr_http_port if proxy.per_app_dapr else proxy.dapr_http_port
    grpc = w.dapr_grpc_port if proxy.per_app_dapr else proxy.dapr_grpc_port
    return {"DAPR_HTTP_PORT": str(http), "DAPR_GRPC_PORT": str(grpc)}


def capabilities_available() -> bool:
    return importlib.util.find_spec("capabilities.__main__") is not None


@dataclass
class StackOptions:
    layout: DemoLayout
    state_dir: Path
    api_port: int
    xds_port: int
    delta: bool = False
    config_dir: Path | None = None  # the user's folder; None -> the generated demo config (watched)
    extra_config_dirs: list[Path] = field(default_factory=list)  # more watched folders (e.g. endpoints)
    knobs: RoutingKnobs | None = None
    watch_interval: float = 0.5
    with_capabilities: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    # DAPR_API_TOKEN / APP_API_TOKEN (None: from this process's environment, as `mecha up` reads them):
    # given to the capability services and put in each proxy's node metadata, so Envoy checks the token on
    # invoke routes (and adds APP_API_TOKEN towards the apps) like daprd does.
    dapr_api_token: str | None = None
    app_api_token: str | None = None
    # the layout's ingress gateway Envoy (Gateway bookinfo-gateway); `mecha up` turns it on
    with_gateway: bool = False
    # a `mecha agent` per Envoy (credential, key, SDS, TLS xDS: xds/agent/), embedded in the proxy's
    # capability service when one runs, else standalone (the gateway); False = --insecure-xds (transition)
    with_agents: bool = True
    # sidecars register in their WorkloadGroups (node metadata workload_group); None: only with the generated
    # demo config (a user's --config brings its own endpoints)
    register: bool | None = None
    trust_domain: str = "cluster.local"
    # one gateway Envoy per Gateway API Gateway of Mecha's classes (xds/runner/gateways.py); `mecha up` turns
    # it on; port_offset shifts their bound ports as every other port of the stack
    deploy_gateways: bool = False
    port_offset: int = 0


def capability_hosts_healthy(clusters: Any) -> bool:
    """Envoy's /clusters?format=json: the capability clusters (capabilities_http, capabilities_grpc, node
    mode's per-app ones) have hosts and every one is healthy: no failure flag set (failed_active_health_check,
    pending_active_hc, ...) and EDS health HEALTHY, what the text output prints as health_flags::healthy."""
    hosts = [
        host.get("health_status") or {}
        for cluster in clusters.get("cluster_statuses") or []
        if str(cluster.get("name", "")).startswith("capabilities")
        for host in cluster.get("host_statuses") or []
    ]
    return bool(hosts) and all(
        status.get("eds_health_status") == "HEALTHY"
        and not any(value for flag, value in status.items() if flag != "eds_health_status")
        for status in hosts
    )


def polls(deadline: float) -> Iterator[None]:
    """Rounds of a readiness wait until the deadline, but always one: the deadline may have passed while this
    event loop was busy elsewhere, and a wait that never looks reports a ready part as not ready."""
    yield
    while time.monotonic() < deadline:
        yield


def _version(row: dict[str, Any]) -> int:
    try:
        return int(row.get("config_version") or 0)
    except (TypeError, ValueError):
        return 0


def declared_workload_groups(folders: list[Path]) -> set[str]:
    """Names of the WorkloadGroups the YAML files in these folders declare (unreadable files: none)."""
    import yaml  # only when a user's config folder is given

    names: set[str] = set()
    for folder in folders:
        for path in sorted(folder.rglob("*.y*ml")):
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == "WorkloadGroup":
                    name = (doc.get("metadata") or {}).get("name")
                    if isinstance(name, str):
                        names.add(name)
    return names


def compile_packages() -> None:
    """Byte-compile our own packages once. From a source checkout with PYTHONDONTWRITEBYTECODE set (common in
    development images), every process would otherwise recompile them: ~60 ms of CPU per capability service
    start. An installed wheel is compiled by pip already; files that are up to date are skipped."""
    import compileall

    root = Path(__file__).resolve().parents[2]
    for package in ("xds", "capabilities"):
        folder = root / package
        if folder.is_dir() and os.access(folder, os.W_OK):
            compileall.compile_dir(str(folder), quiet=1, workers=1)


def api_tokens(options: StackOptions) -> dict[str, str]:
    """{"DAPR_API_TOKEN": ..., "APP_API_TOKEN": ...} of the ones that are set."""
    out = {}
    for env, value in (("DAPR_API_TOKEN", options.dapr_api_token), ("APP_API_TOKEN", options.app_api_token)):
        value = value if value is not None else os.environ.get(env)
        if value:
            out[env] = value
    return out


def proxy_metadata(proxy: DemoProxy, tokens: dict[str, str], register: bool = True) -> dict[str, Any]:
    # one machine: node-mode listeners bind loopback too (their default is every interface)
    meta = {**proxy.metadata(), "bind": LOOPBACK}
    if not register:  # a user's --config folder brings its own endpoints, not the demo's WorkloadGroups
        meta.pop("workload_group", None)
    if "DAPR_API_TOKEN" in tokens:
        meta["dapr_api_token"] = tokens["DAPR_API_TOKEN"]
    if "APP_API_TOKEN" in tokens:
        meta["app_api_token"] = tokens["APP_API_TOKEN"]
    return meta


Report = Callable[[str], None]


class Stack:
    def __init__(
        self, options: StackOptions, report: Report | None = None, on_change: Callable[[], None] | None = None
    ) -> None:
        self.o = options
        self.report = report or (lambda _line: None)
        self.sup = Supervisor(on_change=on_change, report=self.report)
        self.logs = options.state_dir / "logs"
        self.notes: list[str] = []
        # proxy id -> (capability service child, socket folder) of the agents embedded in capability services
        self._embedded_agents: dict[str, tuple[Child, Path]] = {}
        # proxy id -> (standalone agent child, socket folder) started beside the control plane (the gateway's)
        self._early_agents: dict[str, tuple[Child, Path]] = {}
        self.gateways = GatewayDeployer(self, options.port_offset) if options.deploy_gateways else None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.o.api_port}"

    def api_headers(self) -> dict[str, str]:
        """The operator's token of this stack's control plane (its state folder's api-token)."""
        return auth_headers(self.o.state_dir)

    @property
    def config_dir(self) -> Path:
        return self.o.config_dir or (self.o.state_dir / "config")

    # ---- checks ----------------------------------------------------------------------------------------
    def all_ports(self) -> dict[str, int]:
        """Every port this stack binds, by label (xds/runner/listeners.py)."""
        o = self.o
        capabilities = o.with_capabilities and capabilities_available()
        return listener_ports(
            o.layout, o.api_port, o.xds_port, gateway=o.with_gateway, capabilities=capabilities
        )

    def check_ports(self) -> None:
        refused = out_of_range(self.all_ports())
        if refused:
            raise StackError(refused)
        seen: dict[int, str] = {}
        for label, port in self.all_ports().items():
            if port in seen:
                raise StackError(f"port {port} is assigned twice ({seen[port]} and {label})")
            seen[port] = label
        busy = [f"{port} ({label})" for label, port in self.all_ports().items() if port_in_use(port)]
        if busy:
            raise StackError(
                "ports already in use: " + ", ".join(busy) + ". Stop whatever holds them (a previous "
                "`mecha up`? run `mecha down`) or shift every port with `mecha up --port-offset 1000`."
            )
        warning = ephemeral_warning(self.all_ports(), read_ephemeral_range())
        if warning:
            self.notes.append(warning)
            self.report(warning)

    # ---- start -----------------------------------------------------------------------------------------
    async def start(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        envoy = envoy_binary()
        self.check_ports()
        # bootstraps and env carry API tokens, logs may echo them: the folders are 0700, the files 0600
        ensure_private_dir(self.o.state_dir)
        ensure_private_dir(self.logs)
        early = not self._serial_start() and self.o.with_agents and self.o.with_capabilities
        _, early = await asyncio.gather(
            asyncio.to_thread(compile_packages), asyncio.to_thread(self._identity_made_early, early)
        )
        if self.o.config_dir is None:  # the demo's file; a user's edit of it is kept (xds/runner/demofile.py)
            if kept := write_demo_config(self.config_dir, demo_config(self.o.layout, self.o.knobs)):
                self.notes.append(kept)
                self.report(f"note: {kept}")
        if self._serial_start():
            await self._start_control_plane(deadline)
            await self._start_apps(deadline)
            await self._start_capabilities(deadline)
            await self._start_envoys(envoy, deadline)
            await self._converged(deadline)
            await self._capabilities_healthy_in_envoys(deadline)
            return
        # Concurrently, not one after the other: the apps need nothing, the capability services and Envoys
        # need the control plane (credentials, xDS); each part reports as it becomes ready.
        control_plane = await self._launch_control_plane()
        apps = await self._launch_apps()
        # their agents' credentials are signed here and their root is on disk: they start beside the control
        # plane (their agents retry until it listens) rather than after it is ready
        capabilities = await self._launch_capabilities() if early else None
        if early:
            await self._launch_standalone_agents()
        await self._control_plane_ready(control_plane, deadline)
        await self._refused_config_at_start()
        if capabilities is None:
            capabilities = await self._launch_capabilities()
        await all_or_first_error(
            self._wait_apps(apps, deadline),
            self._wait_capabilities(capabilities, deadline),
            self._start_envoys(envoy, deadline),
        )
        await self._converged(deadline)
        await self._capabilities_healthy_in_envoys(deadline)

    def _identity_made_early(self, wanted: bool) -> bool:
        """The CA root and the credentials' signing key, made before the control plane starts: it loads the
        same files (MECHA_CA_DIR; <state>/identity), so the agents' credentials and root need not wait for
        it. False (the control plane makes them, capability services start once it is ready): not wanted,
        mTLS off, or files it would refuse (another trust domain: its own error says so). StackError: an
        invalid MECHA_MTLS / MECHA_INSECURE_XDS (the control plane would refuse to start on it)."""
        env = {**os.environ, **self._control_plane_env()}
        try:
            security = xds_security(env)  # as Settings.from_env reads them
        except ValueError as exc:
            raise StackError(str(exc)) from None
        if not wanted or security.insecure_xds or not security.mtls:
            return False
        ca_dir = Path(env["MECHA_CA_DIR"])
        if ca_dir != self.o.state_dir / "ca":  # the agents are given <state>/ca/root-cert.pem
            return False
        from xds.ca.authority import CertificateAuthority
        from xds.identity.credential import CredentialError, CredentialIssuer

        try:
            CertificateAuthority.load_or_create(ca_dir, env.get("MECHA_TRUST_DOMAIN") or "cluster.local")
            CredentialIssuer.load_or_create(self.o.state_dir)
        except (ValueError, OSError, CredentialError):
            return False
        return True

    async def _converged(self, deadline: float) -> None:
        """Every proxy holds the config version that includes the sidecars' registrations: a registered
        endpoint is in the store before the debounced push reaches the callers (else a first call is 503)."""
        if not self.registers:
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"{self.api}/readyz") as resp:
                head = int((await resp.json()).get("version", 0))
        wanted = {p.id for p in self.o.layout.proxies}
        for _ in polls(deadline):
            rows = await self.proxies()
            held = {str(r.get("proxy_id")) for r in rows if proxy_synced(r) and _version(r) >= head}
            if wanted <= held:
                return
            await asyncio.sleep(0.05)
        raise StackError(f"proxies {sorted(wanted)} did not reach config version {head} in time")

    async def _capabilities_healthy_in_envoys(self, deadline: float) -> None:
        """Each Envoy health-checks its capability service (no panic routing: it answers 503 itself until the
        first check passes): ready only when every Envoy sees it healthy, so a first Dapr call is served."""
        if not (self.o.with_capabilities and capabilities_available()):
            return
        pending = {p.id: f"127.0.0.1:{p.admin_port}" for p in self.o.layout.proxies}
        for _ in polls(deadline):
            for proxy_id, admin in list(pending.items()):
                try:
                    clusters = await admin_get_json(admin, "/clusters?format=json", timeout_s=2.0)
                except AdminError:  # not listening yet, or busy: the next round asks again
                    continue
                if capability_hosts_healthy(clusters):
                    del pending[proxy_id]
            if not pending:
                break
            await asyncio.sleep(0.05)
        if pending:
            raise StackError(f"Envoys {sorted(pending)} never saw their capability service healthy")

    async def _start_control_plane(self, deadline: float) -> None:
        await self._control_plane_ready(await self._launch_control_plane(), deadline)

    async def _launch_control_plane(self) -> Child:
        argv = [
            sys.executable,
            "-m",
            "xds.cli",
            "serve",
            "--port",
            str(self.o.api_port),
            "--xds-port",
            str(self.o.xds_port),
            "--config",
            str(self.config_dir),
            "--watch-interval",
            str(self.o.watch_interval),
            "--state-dir",
            str(self.o.state_dir),
        ]
        for folder in self.o.extra_config_dirs:
            argv += ["--config", str(folder)]
        return await self.sup.start(
            Child("control-plane", "control-plane", argv, self.logs / "control-plane.log"),
            env=self._control_plane_env(),
        )

    def _control_plane_env(self) -> dict[str, str]:
        # e.g. MECHA_MTLS=1 (the CA + SDS), MECHA_CERT_TTL; the CA root is kept in the state folder so a
        # restarted control plane keeps signing with it (.mecha/ca for `mecha up`)
        env = {"MECHA_CA_DIR": str(self.o.state_dir / "ca"), **self.o.extra_env}
        if not self.o.with_agents:  # Envoys dial the control plane themselves: plaintext, no credential
            env.setdefault("MECHA_INSECURE_XDS", "1")
        return env

    async def _control_plane_ready(self, child: Child, deadline: float) -> None:
        await self._wait_http(child, f"{self.api}/readyz", deadline)
        self.report(f"[ready] control plane        API {self.api}  xDS 127.0.0.1:{self.o.xds_port}")

    async def _refused_config_at_start(self) -> None:
        """A config folder the control plane refused at start: say so now, with its first error, rather than
        starting Envoys on an empty config (they would report SYNCED at version 0)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"{self.api}/api/v1/config", headers=self.api_headers()) as resp:
                view = await resp.json() if resp.status == 200 else {}
        for source, status in (view.get("sources") or {}).items():
            if status.get("accepted") is False:
                diags = status.get("diagnostics") or []
                errors = [d for d in diags if d.get("severity") == "error"] or diags
                first = one_line(diag_line(errors[0])) if errors else "refused"
                more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
                log = self.logs / "control-plane.log"
                raise StackError(
                    f"the control plane refused the config of {source}: {first}{more}; fix it and start "
                    f"again (`mecha validate -f <folder>` checks it offline; log {log})"
                )

    async def start_control_plane_again(self, within_s: float = 20.0) -> Child:
        """Restart after a kill (tests): same ports, same folder."""
        await self._start_control_plane(time.monotonic() + within_s)
        return self.sup.children[-1]

    def _serial_start(self) -> bool:
        """A subclass (tests) that brings its own apps or capability services starts them in order, as these
        hooks were written for: its capability services may need its apps, its Envoys their agents."""
        own = type(self)
        return (
            own._start_apps is not Stack._start_apps
            or own._start_capabilities is not Stack._start_capabilities
        )

    async def _start_apps(self, deadline: float) -> None:
        await self._wait_apps(await self._launch_apps(), deadline)

    async def _start_capabilities(self, deadline: float) -> None:
        await self._wait_capabilities(await self._launch_capabilities(), deadline)

    async def _launch_apps(self) -> list[tuple[Any, Child]]:
        children = []
        for w in self.o.layout.workloads:
            proxy = self.o.layout.proxy_of(w.name)
            argv = [
                sys.executable,
                "-m",
                "xds.demo",
                w.service,
                "--port",
                str(w.app_port),
                "--version",
                w.version,
                "--proxy",
                f"127.0.0.1:{proxy.outbound_port}",
            ]
            child = Child(w.name, "app", argv, self.logs / f"{w.name}.log")
            children.append((w, await self.sup.start(child, env=app_dapr_env(self.o.layout, w.name))))
        return children

    async def _wait_apps(self, children: list[tuple[Any, Child]], deadline: float) -> None:
        for w, child in children:
            await self._wait_http(child, f"http://127.0.0.1:{w.app_port}/healthz", deadline)
            self.report(f"[ready] app {w.name:<16} http://127.0.0.1:{w.app_port}")

    async def _launch_capabilities(self) -> list[tuple[DemoProxy, Child]]:
        if not self.o.with_capabilities:
            return []
        if not capabilities_available():
            self.notes.append("capability service not started: the `capabilities` package has no __main__")
            return []
        started = []
        for p in self.o.layout.proxies:
            argv = capabilities_argv(p, self.api)
            credential = None
            if self.o.with_agents:  # the proxy's agent is its capability service's child process
                from xds.agent.launch import embedded_agent_argv, issue_for

                metadata = proxy_metadata(p, api_tokens(self.o), self.registers)
                credential = issue_for(self.o.state_dir, p.id, metadata)
                root = self.o.state_dir / "ca" / "root-cert.pem"
                xds = f"{LOOPBACK}:{self.o.xds_port}"
                admin = f"{LOOPBACK}:{p.admin_port}"  # proxy-config reads it through the agent
                argv += embedded_agent_argv(credential, xds, root, self.o.trust_domain, admin)
            log = self.logs / f"capabilities-{p.id}.log"
            # gRPC InvokeService forwards through this proxy's Dapr HTTP listener (mesh routing, retries);
            # node mode: the first app's (every app's listener has the same invoke routes)
            dapr_http = p.workloads[0].dapr_http_port if p.per_app_dapr else p.dapr_http_port
            env = {"MECHA_INVOKE_URL": f"http://127.0.0.1:{dapr_http}", **api_tokens(self.o),
                   # the read-only credential of GET /api/v1/dapr (a 0600 file the control plane wrote)
                   ENV_CONTROL_PLANE_TOKEN_FILE: str(self.o.state_dir / READER_TOKEN_FILE)}  # fmt: skip
            child = await self.sup.start(Child(f"capabilities-{p.id}", "capabilities", argv, log), env=env)
            if credential is not None:
                self._embedded_agents[p.id] = (child, credential.parent)
            started.append((p, child))
        return started

    async def _launch_standalone_agents(self) -> None:
        """The agents of the Envoys without a capability service (the gateway), started now rather than
        when their Envoy's turn comes: their ~0.5 s of imports run beside the control plane's start."""
        from xds.agent.launch import agent_argv, issue_for

        root = self.o.state_dir / "ca" / "root-cert.pem"
        for proxy_id, admin_port, _cluster, metadata in self._envoy_specs():
            if proxy_id in self._embedded_agents:
                continue
            credential = issue_for(self.o.state_dir, proxy_id, metadata)
            argv = agent_argv(credential, f"{LOOPBACK}:{self.o.xds_port}", root, credential.parent,
                              envoy_admin=f"{LOOPBACK}:{admin_port}")  # fmt: skip
            log = self.logs / f"agent-{proxy_id}.log"
            child = await self.sup.start(Child(f"agent-{proxy_id}", "agent", argv, log))
            self._early_agents[proxy_id] = (child, credential.parent)

    async def _wait_capabilities(self, started: list[tuple[DemoProxy, Child]], deadline: float) -> None:
        # Optional part: a bounded wait, so a slow capability service cannot starve the Envoys.
        budget = min(deadline, time.monotonic() + CAPABILITIES_WAIT_S)
        for p, child in started:
            ports = [w.capabilities_http_port for w in p.workloads] if p.per_app_dapr else []
            ports = ports or [p.capabilities_http_port]
            try:
                for port in ports:  # node mode: one process, one runtime (and port) per app
                    await self._wait_http(child, f"http://127.0.0.1:{port}/v1.0/healthz", budget)
                shown = ", ".join(f"http://127.0.0.1:{port}" for port in ports)
                self.report(f"[ready] capabilities {p.id:<12} {shown}")
            except StackError as exc:  # report and continue with the mesh (its Envoy gets a standalone agent)
                await self.sup.stop_child(child)
                self._embedded_agents.pop(p.id, None)
                self.notes.append(f"capability service for {p.id} did not start: {exc}")

    def _envoy_specs(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        """(proxy id, admin port, cluster, node metadata) of every Envoy to start."""
        tokens = api_tokens(self.o)
        specs = [
            (p.id, p.admin_port, p.workloads[0].service, proxy_metadata(p, tokens, self.registers))
            for p in self.o.layout.proxies
        ]
        gw = self.o.layout.gateway
        if self.o.with_gateway and gw is not None:
            # `mecha up` runs on one machine: the gateway listens on loopback (istiod's default is 0.0.0.0)
            specs.append((gw.id, gw.admin_port, gw.id, {**gw.metadata(), "bind": LOOPBACK}))
        return specs

    async def _start_envoys(self, envoy: Path, deadline: float) -> None:
        # Each Envoy starts as soon as its own agent listens, all at once: one after the other, an Envoy
        # waited for every earlier proxy's agent, and the gateway's standalone agent was started only then.
        specs = self._envoy_specs()
        waiting = {proxy_id for proxy_id, _a, _c, _m in specs}
        progress = asyncio.create_task(self._envoy_progress(waiting, len(specs)))
        try:
            await all_or_first_error(*(self._start_envoy(envoy, *spec, deadline, waiting) for spec in specs))
        finally:
            progress.cancel()

    async def _start_envoy(self, envoy: Path, proxy_id: str, admin_port: int, cluster: str,
                           metadata: dict[str, Any], deadline: float, waiting: set[str]) -> None:  # fmt: skip
        params = BootstrapParams(
            proxy_id=proxy_id,
            xds_port=self.o.xds_port,
            admin_port=admin_port,
            metadata=metadata,
            cluster=cluster,
            delta=self.o.delta,
            initial_fetch_timeout_s=2.0,
        )
        path = write(params, self.o.state_dir / "bootstrap" / f"{proxy_id}.yaml")
        if self.o.with_agents:  # Envoy reaches only its agent's Unix sockets: no credential, no key
            path = await self._through_agent(proxy_id, admin_port, metadata, path, deadline)
        log = touch_private_log(self.logs / f"envoy-{proxy_id}.log")
        argv = envoy_argv(envoy, path, admin_port, log, proxy_id)
        out, admin = self.logs / f"envoy-{proxy_id}.out", f"127.0.0.1:{admin_port}"
        # admin: drained through it before it is stopped (procs.py stop_all)
        child = await self.sup.start(Child(f"envoy-{proxy_id}", "envoy", argv, out, admin=admin))
        await self._envoy_ready(proxy_id, admin_port, child, deadline, waiting)

    async def _envoy_ready(self, proxy_id: str, admin_port: int, child: Child, deadline: float,
                           waiting: set[str]) -> None:  # fmt: skip
        await self._wait_http(child, f"http://127.0.0.1:{admin_port}/ready", deadline)
        try:
            await self.wait_synced([proxy_id], deadline)
        except ProxyRefused:  # Envoy's own message, already one line: no need to explain the connection
            raise
        except StackError as exc:  # say whether Envoy reached the control plane at all
            why = await explain_proxy(proxy_id, f"127.0.0.1:{admin_port}", f"127.0.0.1:{self.o.xds_port}")
            raise StackError(f"{why}\n{exc}") from None
        if self.registers and proxy_id in {p.id for p in self.o.layout.proxies if p.mode == "sidecar"}:
            await self.wait_registered(proxy_id, deadline)  # its endpoint is in EDS: callers can reach it
        waiting.discard(proxy_id)
        self.report(f"[ready] envoy {proxy_id:<14} admin http://127.0.0.1:{admin_port}  LIVE, xDS SYNCED")

    async def _envoy_progress(self, waiting: set[str], total: int) -> None:
        """While Envoys start: every PROGRESS_EVERY_S, how many are synced and which are still awaited."""
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            if waiting:
                self.report(f"  ... Envoys: {total - len(waiting)}/{total} SYNCED, waiting for "
                            + ", ".join(sorted(waiting)))  # fmt: skip

    async def _through_agent(self, proxy_id: str, admin_port: int, metadata: dict[str, Any], bootstrap: Path,
                             deadline: float) -> Path:  # fmt: skip
        """The bootstrap on the proxy's agent: the one in its capability service, else a standalone one."""
        from xds.agent.launch import agent_bootstrap, start_beside, wait_for_sockets

        try:
            if proxy_id in self._early_agents:
                child, sockets = self._early_agents[proxy_id]
                await wait_for_sockets(child, sockets, deadline, f"agent of {proxy_id}")
                return await agent_bootstrap(bootstrap, sockets)
            if proxy_id in self._embedded_agents:
                child, sockets = self._embedded_agents[proxy_id]
                try:
                    await wait_for_sockets(child, sockets, deadline, f"agent of {proxy_id} (in {child.name})")
                    return await agent_bootstrap(bootstrap, sockets)
                except RuntimeError:
                    if child.exited is None and proxy_id in self._embedded_agents:
                        raise
                    # its capability service failed while we waited (started concurrently): a standalone one
            admin = f"{LOOPBACK}:{admin_port}"  # proxy-config reads it through the agent
            return await start_beside(self.sup, self.logs, self.o.state_dir, proxy_id, metadata,
                                      self.o.xds_port, bootstrap, deadline, admin)  # fmt: skip
        except RuntimeError as exc:
            raise StackError(str(exc)) from None

    # ---- waiting -----------------------------------------------------------------------------------------
    async def _wait_http(self, child: Child, url: str, deadline: float) -> None:
        last = "no answer"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for _ in polls(deadline):
                if child.exited is not None:
                    raise StackError(
                        f"{child.name} exited with code {child.exited} before it was ready; "
                        f"log {child.log}:\n{child.log_tail()}"
                    )
                try:
                    async with session.get(url) as resp:
                        if 200 <= resp.status < 300:  # Dapr's healthz answers 204
                            return
                        last = f"HTTP {resp.status}"
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    last = type(exc).__name__
                await asyncio.sleep(0.1)
        raise StackError(
            f"{child.name} not ready at {url} in time (last: {last}); log {child.log}:\n{child.log_tail()}"
        )

    async def proxies(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            async with session.get(f"{self.api}/api/v1/proxies", headers=self.api_headers()) as resp:
                data = await resp.json()
        return list(data.get("proxies", []))

    async def wait_synced(self, proxy_ids: list[str] | None = None, deadline: float | None = None) -> None:
        """Wait until the named proxies (default all of the layout) are connected and SYNCED."""
        wanted = set(proxy_ids or [p.id for p in self.o.layout.proxies])
        deadline = deadline or time.monotonic() + 20
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                rows = await self.proxies()
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                rows = []
            synced = {str(r.get("proxy_id")) for r in rows if proxy_synced(r)}
            if wanted <= synced:
                return
            refused = [nack_line(r) for r in rows if str(r.get("proxy_id")) in wanted and nack_line(r)]
            if refused:  # Envoy rejected the config: waiting longer cannot help
                raise ProxyRefused("; ".join(refused))
            await asyncio.sleep(0.1)
        raise StackError(
            f"proxies {sorted(wanted)} not SYNCED in time (see {self.logs / 'control-plane.log'}); "
            f"status: {json.dumps(rows)[:2000]}"
        )

    @property
    def registers(self) -> bool:
        """The sidecars register in their WorkloadGroups: always with the generated demo config; with a
        user's --config only when it declares those groups (e.g. the demo's Bookinfo YAML copied into it)."""
        if self.o.register is not None:
            return self.o.register
        if self.o.config_dir is None:
            return True
        groups = {p.metadata().get("workload_group") for p in self.o.layout.proxies} - {None}
        folders = [self.o.config_dir, *self.o.extra_config_dirs]
        return bool(groups) and groups <= declared_workload_groups(folders)

    async def wait_registered(self, proxy_id: str, deadline: float) -> None:
        """Until the proxy's WorkloadEntry is registered in its WorkloadGroup; StackError says why not."""
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
                    session.get(f"{self.api}/api/v1/workloads", headers=self.api_headers()) as resp,
                ):
                    data = await resp.json()
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                data = {}
            rows = data.get("workloads") or []
            if any((r.get("annotations") or {}).get("mecha.io/proxyId") == proxy_id for r in rows):
                return
            await asyncio.sleep(0.1)
        why = (data.get("refused") or {}).get(proxy_id) or "no WorkloadEntry registered"
        log = self.logs / "control-plane.log"
        raise StackError(f"proxy {proxy_id} not registered in time: {why} (see {log})")

    async def stop(self) -> None:
        await self.sup.stop_all()

    # ---- reporting ---------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        layout = self.o.layout
        pp = layout.workload("productpage-v1")
        pp_proxy = layout.proxy_of(pp.name)
        return {
            "pid": None,
            "api": self.api,
            "xds": f"127.0.0.1:{self.o.xds_port}",
            "metrics": f"{self.api}/metrics",
            "config_dir": str(self.config_dir),
            "mode": layout.mode,
            "productpage": f"http://127.0.0.1:{pp.inbound_port}/productpage",
            "mesh_entry": f"http://127.0.0.1:{pp_proxy.outbound_port}",
            "productpage_proxy": pp_proxy.id,  # node mode: the node's proxy, not productpage-v1
            "apps": {
                w.name: {
                    "app": f"http://127.0.0.1:{w.app_port}",
                    "via_proxy": f"http://127.0.0.1:{w.inbound_port}",
                    # the app's DAPR_HTTP_PORT (node mode: its own listener on the node proxy)
                    "dapr": f"http://127.0.0.1:{w.dapr_http_port or layout.proxy_of(w.name).dapr_http_port}",
                    "dapr_grpc": f"127.0.0.1:{app_dapr_env(layout, w.name)['DAPR_GRPC_PORT']}",
                }
                for w in layout.workloads
            },
            "admin": {pid: f"http://127.0.0.1:{admin}" for pid, admin, _c, _m in self._envoy_specs()},
            # the ingress gateway's entry (Gateway bookinfo-gateway, port 80), when it runs
            "gateway": f"{gw.url}/productpage" if self.o.with_gateway and (gw := layout.gateway) else None,
            # Gateway API Gateways: each one's Envoy and bound listener addresses (xds/runner/gateways.py)
            "gateway_api": self.gateways.describe() if self.gateways is not None else {},
            "children": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "pid": c.pid,
                    "log": str(c.log),
                    "argv0": c.argv[0],
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                }
                for c in self.sup.children
                if c.exited is None
            ],
            "notes": self.notes,
        }
