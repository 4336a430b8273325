"""The conformance suite's environment without Kubernetes: `mecha serve` in a child process plays the API
server and the controller, this module plays kubelet (the suite's Deployments become echo pods on loopback
addresses, listed to the control plane as the Pods and EndpointSlices a `kubectl get -o yaml` export would
hold, so Services take the kubectl-import path) and the gateway deployment (one real Envoy per Gateway of
Mecha's classes, with the node metadata `mecha up` gives it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conformance.gatewayapi.echo import EchoPods, Pod
from xds.bootstrap import BootstrapParams, render
from xds.cli.get import STATUS_PATH, merged
from xds.runner.gateways import Deployed, Wanted, mecha_gateways
from xds.testing.envoy import EnvoyProcess, free_port

UPSTREAM = Path(__file__).resolve().parent / "upstream"
GATEWAY_CLASS = "mecha"  # the suite's --gateway-class (Istio runs it with its built-in class `istio`)
CONTROLLER = "mecha.io/gateway-controller"
GROUP = "gateway.networking.k8s.io"
POD_NET = "127.77"
KIND_OF = {
    "gateways": "Gateway",
    "httproutes": "HTTPRoute",
    "grpcroutes": "GRPCRoute",
    "gatewayclasses": "GatewayClass",
    "tlsroutes": "TLSRoute",
    "backendtlspolicies": "BackendTLSPolicy",
}  # pod IPs 127.77.X.Y: every pod listens on echo-basic's own port 3000


def manifests(relative: str) -> list[dict[str, Any]]:
    """A vendored manifest file's documents, with the suite's {GATEWAY_CLASS_NAME} and
    {GATEWAY_CONTROLLER_NAME} placeholders filled in."""
    text = (UPSTREAM / relative).read_text().replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS)
    text = text.replace("{GATEWAY_CONTROLLER_NAME}", CONTROLLER)
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass
class Kubelet:
    """Deployments -> echo pods; Services -> EndpointSlices of the pods they select (ready, targetRef)."""

    echo: EchoPods = field(default_factory=EchoPods)  # the suite gives it a workdir for pod certificates
    pods: list[Pod] = field(default_factory=list)

    def schedule(
        self, docs: list[dict[str, Any]], secrets: dict[tuple[str, str], dict[str, bytes]] | None = None
    ) -> list[Pod]:
        """The pods of docs' Deployments; secrets: what a pod's mounted certificate Secret holds."""
        new = []
        for d in docs:
            if d.get("kind") != "Deployment":
                continue
            meta, spec = d["metadata"], d.get("spec") or {}
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            containers = (template.get("spec") or {}).get("containers") or []
            env = {e.get("name") for c in containers for e in c.get("env") or []}
            mounted = [
                (v.get("secret") or {}).get("secretName")
                for v in (template.get("spec") or {}).get("volumes") or []
                if v.get("secret")
            ]
            found = (secrets or {}).get((meta["namespace"], mounted[0])) if mounted else None
            tls = (found["tls.crt"], found["tls.key"]) if found and "TLS_SERVER_CERT" in env else None
            suffix = hashlib.sha1(f"{meta['namespace']}/{meta['name']}".encode()).hexdigest()[:9]
            for i in range(int(spec.get("replicas", 1))):
                n = len(self.pods) + len(new)
                ip = f"{POD_NET}.{n // 250}.{n % 250 + 1}"
                name = f"{meta['name']}-{suffix}-{i}"
                labelled = tuple(sorted(labels.items()))
                grpc, tcp = "GRPC_ECHO_SERVER" in env, "TCP_ECHO_SERVER" in env
                new.append(Pod(meta["namespace"], name, ip, labelled, grpc, tcp, tls))
        self.pods += new
        return new

    def registry(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for pod in self.pods:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
                    "status": {"podIP": pod.ip},
                }
            )
        for svc in (d for d in docs if d.get("kind") == "Service"):
            meta, spec = svc["metadata"], svc.get("spec") or {}
            if not spec.get("selector"):
                continue  # the endpoint controller leaves a selector-less Service's slices to their writer
            selected = [
                p
                for p in self.pods
                if p.namespace == meta["namespace"] and _selects(spec.get("selector") or {}, dict(p.labels))
            ]
            ports = [
                {"name": p.get("name", ""), "port": p.get("targetPort", p["port"]), "protocol": "TCP"}
                for p in spec.get("ports") or []
            ]
            out.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{meta['name']}-slice",
                        "namespace": meta["namespace"],
                        "labels": {"kubernetes.io/service-name": meta["name"]},
                    },
                    "addressType": "IPv4",
                    "ports": ports,
                    "endpoints": [
                        {
                            "addresses": [p.ip],
                            "conditions": {"ready": True},
                            "targetRef": {"kind": "Pod", "name": p.name, "namespace": p.namespace},
                        }
                        for p in selected
                    ],
                }
            )
        return out


class ControlPlane:
    """`mecha serve` in a child process, reached through its HTTP API like `mecha apply` / `mecha get`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.api_port = free_port()
        self.xds_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.token = ""
        self.credentials = workdir / "credentials"  # the Secrets, as credential files (certs.py)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def start(self) -> None:
        state = self.workdir / "state"
        log = open(self.workdir / "mecha-serve.log", "wb")  # noqa: ASYNC230 - a local log file
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "xds.cli",
            "serve",
            "--port",
            str(self.api_port),
            "--xds-port",
            str(self.xds_port),
            "--insecure-xds",
            "--state-dir",
            str(state),
            "--debounce-after",
            "0.05",
            "--debounce-max",
            "0.3",
            stdout=log,
            stderr=log,
            env={**os.environ, "MECHA_STATE_DIR": str(state), "MECHA_CREDENTIALS_DIR": str(self.credentials)},
        )
        log.close()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(self.api + "/readyz") as resp:
                    if resp.status == 200 and (state / "api-token").exists():
                        self.token = (state / "api-token").read_text().strip()
                        return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.2)
        raise RuntimeError(
            f"mecha serve did not start: {(self.workdir / 'mecha-serve.log').read_text()[-2000:]}"
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _send(self, verb: str, name: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.post(
            f"{self.api}/api/v1/{verb}",
            params={"filename": name},
            data=dump(docs),
            headers={**self._headers(), "Content-Type": "application/yaml"},
        ) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise AssertionError(f"{verb} {name}: {resp.status} {json.dumps(body)[:2000]}")
            return dict(body)

    async def apply(self, name: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._send("apply", name, docs)

    async def delete(self, name: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._send("delete", name, docs)

    async def get_json(self, path: str, **params: str) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.get(self.api + path, params=params, headers=self._headers()) as resp:
            resp.raise_for_status()
            return dict(await resp.json())

    async def documents(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        """The stored Gateway API documents of one kind in a namespace (GET /api/v1/config)."""
        config = await self.get_json("/api/v1/config")
        return [
            d
            for d in config.get("documents") or []
            if d.get("kind") == kind
            and d.get("namespace") == namespace
            and str(d.get("apiVersion", "")).startswith(GROUP + "/")
        ]

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """`mecha get KIND NAME -n NAMESPACE -o json`: the stored object with the status the control plane
        computed (both read at one config version, as `mecha get` reads them)."""
        for _ in range(3):
            config = await self.get_json("/api/v1/config")
            scope = {"namespace": namespace} if namespace else {}  # "": cluster-scoped (GatewayClass)
            status = await self.get_json(STATUS_PATH, kind=kind, **scope)
            if config.get("version") == status.get("version"):
                break
        want = KIND_OF[kind]
        item = next(
            (
                i
                for i in status.get("items") or []
                if i["metadata"].get("name") == name and i["metadata"].get("namespace", "") in ("", namespace)
            ),
            None,
        )
        for doc in config.get("documents") or []:
            # the store files a cluster-scoped object under "default"
            ns = "" if kind == "gatewayclasses" else doc.get("namespace")
            if (doc.get("kind"), ns, doc.get("name")) == (want, namespace, name):
                if str(doc.get("apiVersion", "")).startswith(GROUP + "/"):
                    return merged(doc, item)
        return None


@dataclass
class GatewayEnvoy:
    deployed: Deployed
    envoy: EnvoyProcess


class Gateways:
    """One gateway Envoy per Gateway of Mecha's classes in the served config, as `mecha up` deploys them."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp = cp
        self.workdir = workdir
        self.running: dict[str, GatewayEnvoy] = {}

    async def reconcile(self) -> None:
        view = await self.cp.get_json("/api/v1/config")
        wanted, _skipped = mecha_gateways(view.get("documents") or [])
        by_ref = {w.ref: w for w in wanted}
        for ref, gw in list(self.running.items()):
            if by_ref.get(ref) != gw.deployed.wanted:
                await gw.envoy.stop()
                del self.running[ref]
        for w in wanted:
            if w.ref not in self.running:
                await self._start(w)

    async def _start(self, w: Wanted) -> None:
        deployed = Deployed(w, free_port(), {p: free_port() for p in w.ports})
        params = BootstrapParams(
            proxy_id=w.proxy_id,
            xds_port=self.cp.xds_port,
            admin_port=deployed.admin_port,
            metadata=deployed.metadata(),
            cluster=f"{w.name}-{w.class_name}",
            initial_fetch_timeout_s=2.0,
        )
        envoy = EnvoyProcess(render(params), self.workdir / "envoys", name=w.proxy_id, log_level="warning")
        await envoy.start(wait_ready=False)
        self.running[w.ref] = GatewayEnvoy(deployed, envoy)

    async def stop(self) -> None:
        for gw in self.running.values():
            await gw.envoy.stop()
        self.running.clear()
