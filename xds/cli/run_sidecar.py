"""The processes of `mecha run` (plan: xds/cli/run.py): the app's capability service with its embedded agent,
its Envoy on the agent's sockets, then the app; the app's mesh documents applied through the API (owned by
the API) and its credential issued through it; all of it undone on exit (app exit, Ctrl-C, SIGTERM).

The credential is issued by the control plane's API (the signing key stays there, as `mecha bootstrap
--agent-dir` does it) and revoked when the app stops, so a copy left on disk admits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from xds.agent.launch import agent_bootstrap, claims_for, embedded_agent_argv
from xds.bootstrap import BootstrapParams, write
from xds.cli.client import Client
from xds.cli.commands import outcome_lines
from xds.cli.run import RunError, RunPlan, plan_from_args
from xds.controlplane.auth import ENV_CONTROL_PLANE_TOKEN_FILE, READER_TOKEN_FILE
from xds.runner.envoy import envoy_binary, nack_line, proxy_synced
from xds.runner.procs import Child, Supervisor, touch_private_log
from xds.statedir import api_token, ensure_private_dir, write_private_file

Say = Callable[[str], None]
READY_WAIT_S = 60.0
CREDENTIAL_TTL_S = 7 * 86400  # revoked on exit anyway; bounded for a `mecha run` killed with SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Sidecar:
    """One `mecha run`: what it started and applied, so `stop` undoes exactly that."""

    def __init__(self, plan: RunPlan, say: Say) -> None:
        self.plan = plan
        self.say = say
        self.sup = Supervisor(report=say)
        self.client = Client(plan.mesh.api, api_token(None, plan.mesh.state_dir))
        self.logs = plan.folder / "logs"
        self.applied = False
        self.jti = ""
        self.app: Child | None = None

    # ---- mesh side: credential and documents, through the API -------------------------------------------
    def issue_credential(self) -> tuple[Path, Path]:
        metadata = self.plan.proxy_metadata()
        body = {
            "proxy_id": self.plan.app_id,
            **claims_for(self.plan.app_id, metadata),
            "ttl_s": CREDENTIAL_TTL_S,
        }
        answer = self.client.post("/api/v1/credentials", body)
        self.jti = str(answer.get("jti") or "")
        credential = write_private_file(self.plan.folder / "credential.jwt", str(answer["token"]) + "\n")
        root = write_private_file(self.plan.folder / "root-cert.pem", str(answer["root_cert"]))
        return credential, root

    def _documents_file(self) -> list[dict[str, str]]:
        text = yaml.safe_dump_all(self.plan.mesh_documents(), sort_keys=False)
        return [{"name": f"mecha-run/{self.plan.app_id}.yaml", "text": text}]

    def apply_documents(self) -> None:
        outcome = self.client.post("/api/v1/apply", {"files": self._documents_file()})
        if not outcome.get("accepted"):
            raise RunError("the control plane refused the app's ServiceEntry/WorkloadEntry:\n"
                           + "\n".join(outcome_lines(outcome)))  # fmt: skip
        self.applied = True

    def undo_mesh_side(self) -> None:
        """Delete the documents, revoke the credential; each attempted even if the other fails."""
        from xds.cli.client import ApiError, ServerUnavailable

        if self.applied:
            try:
                self.client.post("/api/v1/delete", {"files": self._documents_file()})
                self.applied = False
            except (ApiError, ServerUnavailable) as exc:
                self.say(f"warning: could not delete {self.plan.app_id}'s ServiceEntry/WorkloadEntry: {exc}")
        if self.jti:
            try:
                self.client.post("/api/v1/credentials/revoke", {"jti": self.jti})
                self.jti = ""
            except (ApiError, ServerUnavailable) as exc:
                self.say(f"warning: could not revoke {self.plan.app_id}'s credential: {exc}")

    # ---- processes --------------------------------------------------------------------------------------
    async def start_capabilities(self, credential: Path, root: Path) -> Child:
        p, plan = self.plan.ports, self.plan
        argv = [sys.executable, "-m", "capabilities", "--control-plane", plan.mesh.api,
                "--app-id", plan.app_id,
                "--dapr-http-port", str(p.capabilities_http), "--dapr-grpc-port", str(p.capabilities_grpc),
                "--app-port", str(plan.app_port), "--state-dir", str(plan.mesh.state_dir)]  # fmt: skip
        for folder in plan.resources_paths:
            argv += ["--resources-path", str(folder)]
        argv += embedded_agent_argv(credential, plan.mesh.xds, root, "cluster.local", f"127.0.0.1:{p.admin}")
        env = {
            "MECHA_INVOKE_URL": f"http://127.0.0.1:{p.dapr_http}",  # gRPC invoke goes through the mesh
            "APP_PROTOCOL": plan.protocol,
            ENV_CONTROL_PLANE_TOKEN_FILE: str(plan.mesh.state_dir / READER_TOKEN_FILE),
        }
        child = Child(f"capabilities-{plan.app_id}", "capabilities", argv, self.logs / "capabilities.log")
        return await self.sup.start(child, env=env)

    async def start_envoy(self, sockets: Path) -> Child:
        p, plan = self.plan.ports, self.plan
        host, _, port = plan.mesh.xds.rpartition(":")
        params = BootstrapParams(proxy_id=plan.app_id, xds_port=int(port), xds_host=host or "127.0.0.1",
                                 admin_port=p.admin, metadata=plan.proxy_metadata(), cluster=plan.app_id,
                                 initial_fetch_timeout_s=2.0)  # fmt: skip
        bootstrap = write(params, plan.folder / "envoy.yaml")
        # Envoy starts with the capability service, not once its agent listens: it dials the agent's sockets
        # every <= 50 ms until they open (xds/agent/bootstrap.py), so its own start overlaps the agent's
        bootstrap = await agent_bootstrap(bootstrap, sockets)
        log = touch_private_log(self.logs / "envoy.log")
        argv = [str(envoy_binary()), "-c", str(bootstrap), "--concurrency", "1", "--disable-hot-restart",
                "--drain-strategy", "immediate", "--drain-time-s", "2", "--base-id", str(p.admin),
                "--log-level", "info", "--log-path", str(log), "--service-node", plan.app_id]  # fmt: skip
        child = Child(
            f"envoy-{plan.app_id}", "envoy", argv, self.logs / "envoy.out", admin=f"127.0.0.1:{p.admin}"
        )
        return await self.sup.start(child)

    async def start_app(self) -> Child:
        child = Child(self.plan.app_id, "app", self.plan.argv, self.logs / "app.log")
        try:
            self.app = await self.sup.start(child, env=self.plan.app_env())
        except OSError as exc:  # no such program, not executable
            raise RunError(f"cannot start {self.plan.argv[0]!r}: {exc.strerror or exc}") from None
        return self.app

    # ---- waiting ----------------------------------------------------------------------------------------
    async def wait_http(self, child: Child, url: str, deadline: float) -> None:
        import aiohttp

        last = "no answer"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if child.exited is not None:
                    raise RunError(f"{child.name} exited with code {child.exited}; log {child.log}:\n"
                                   f"{child.log_tail()}")  # fmt: skip
                try:
                    async with session.get(url) as resp:
                        if 200 <= resp.status < 300:
                            return
                        last = f"HTTP {resp.status}"
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    last = type(exc).__name__
                await asyncio.sleep(0.1)
        raise RunError(
            f"{child.name} not ready at {url} (last: {last}); log {child.log}:\n{child.log_tail()}"
        )

    async def wait_synced(self, envoy: Child, deadline: float) -> None:
        while time.monotonic() < deadline:
            if envoy.exited is not None:
                raise RunError(f"Envoy exited with code {envoy.exited}; log {self.logs / 'envoy.log'}")
            rows = (await asyncio.to_thread(self.client.get, "/api/v1/proxies")).get("proxies", [])
            mine = [r for r in rows if r.get("proxy_id") == self.plan.app_id]
            if mine and proxy_synced(mine[0]):
                return
            if mine and (refused := nack_line(mine[0])):
                raise RunError(refused)
            await asyncio.sleep(0.1)
        raise RunError(f"Envoy of {self.plan.app_id} not SYNCED in time; log {self.logs / 'envoy.log'}")

    async def stop(self) -> None:
        await self.sup.stop_all()
        await asyncio.to_thread(self.undo_mesh_side)


async def echo_log(path: Path, say: Say, prefix: str = "== APP == ") -> None:
    """Print the app's output as it comes (`dapr run` shows it too); the file stays for `mecha logs`."""
    offset, pending = 0, b""
    while True:
        try:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                say(prefix + line.decode(errors="replace"))
        await asyncio.sleep(0.2)


async def run(plan: RunPlan, say: Say) -> int:
    """Start everything, run until the app exits or a stop signal; the app's exit code (0 when stopped)."""
    import os

    ensure_private_dir(plan.folder.parent)
    ensure_private_dir(plan.folder)
    sidecar = Sidecar(plan, say)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    echo: asyncio.Task[None] | None = None
    try:
        deadline = time.monotonic() + READY_WAIT_S
        credential, root = await asyncio.to_thread(sidecar.issue_credential)
        await asyncio.to_thread(sidecar.apply_documents)
        capabilities = await sidecar.start_capabilities(credential, root)
        envoy = await sidecar.start_envoy(credential.parent)
        app = await sidecar.start_app()
        echo = asyncio.create_task(echo_log(app.log, say))
        ready = asyncio.gather(
            sidecar.wait_http(
                capabilities, f"http://127.0.0.1:{plan.ports.capabilities_http}/v1.0/healthz", deadline
            ),
            sidecar.wait_http(envoy, f"http://127.0.0.1:{plan.ports.admin}/ready", deadline),
            sidecar.wait_synced(envoy, deadline),
        )
        waiting = asyncio.create_task(stop.wait())
        either: set[asyncio.Future[Any]] = {ready, waiting}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            ready.cancel()
            return 130
        waiting.cancel()
        ready.result()
        logs = {
            "app": str(app.log),
            "capabilities": str(capabilities.log),
            "envoy": str(sidecar.logs / "envoy.log"),
        }
        write_private_file(plan.record_file, json.dumps(plan.record(os.getpid(), app.pid, logs), indent=2))
        p = plan.ports
        say(
            f"You're up and running! {plan.app_id}: app :{plan.app_port}, DAPR_HTTP_PORT {p.dapr_http}, "
            f"DAPR_GRPC_PORT {p.dapr_grpc}; in the mesh as http://{plan.app_id}:9080 (pid {os.getpid()})"
        )
        return await watch(sidecar, app, stop)
    except RunError as exc:
        say(f"mecha run failed: {exc}")
        return 1
    finally:
        if echo is not None:
            await asyncio.sleep(0.3)  # the app's last lines
            echo.cancel()
        plan.record_file.unlink(missing_ok=True)
        await sidecar.stop()
        for name in ("credential.jwt", "root-cert.pem", "envoy.yaml", "envoy.agent.yaml"):
            (plan.folder / name).unlink(missing_ok=True)
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        say(f"Exited {plan.app_id}: app and sidecar stopped, its mesh documents deleted")


async def watch(sidecar: Sidecar, app: Child, stop: asyncio.Event) -> int:
    """Until the app exits (its code) or a stop signal (0); a crashed sidecar part is restarted."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
        if app.exited is not None:
            sidecar.say(f"{sidecar.plan.app_id} exited with code {app.exited}")
            return int(app.exited)
        await sidecar.sup.restart_dead()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    try:
        return asyncio.run(run(plan, say=lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return 130
