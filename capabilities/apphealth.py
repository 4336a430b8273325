"""App health checks as daprd runs them, and what follows from them (Dapr's app-health-check).

`--enable-app-health-check` probes `GET <app-health-check-path>` (default /healthz) every
`--app-health-probe-interval` seconds (5) with a `--app-health-probe-timeout` in milliseconds (500); after
`--app-health-threshold` failures in a row (3) the app is unhealthy: pub/sub subscriptions and input bindings
pause (unsubscribed: nothing more is pulled, un-acked messages go back to the broker), and the proxy's
WorkloadEntry is reported unhealthy so callers' Envoys stop sending it requests. One success makes it
healthy again: deliveries resume, the entry is reported healthy.

The report goes to the control plane's POST /api/v1/workloads/health with the workload credential (the one
the embedded agent holds), so a workload can only ever change its own endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# asyncio loads where it runs: the service parses these flags before it spawns its agent (__main__.py), whose
# sockets Envoy's start waits for
if TYPE_CHECKING:
    import asyncio

    from capabilities.runtime import Runtime

log = logging.getLogger(__name__)

REPORT_PATH = "/api/v1/workloads/health"


@dataclass(frozen=True)
class AppHealthConfig:
    path: str = "/healthz"
    interval_s: float = 5.0
    timeout_s: float = 0.5
    threshold: int = 3

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"--app-health-check-path {self.path!r}: must start with /")
        if self.interval_s <= 0 or self.timeout_s <= 0 or self.threshold < 1:
            raise ValueError(
                "--app-health-probe-interval/-timeout must be positive, --app-health-threshold >= 1"
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("app health check (daprd's flags; env APP_HEALTH_CHECK=1 ...)")
    group.add_argument("--enable-app-health-check", action="store_true", default=None, help="probe the app")
    group.add_argument("--app-health-check-path", default=None, help="HTTP path probed (default /healthz)")
    group.add_argument("--app-health-probe-interval", type=float, default=None, help="seconds (default 5)")
    group.add_argument(
        "--app-health-probe-timeout", type=float, default=None, help="milliseconds (default 500)"
    )
    group.add_argument("--app-health-threshold", type=int, default=None, help="failures in a row (default 3)")
    group.add_argument(
        "--workload-credential",
        default=None,
        help="credential for health/drain reports (default: --agent-credential)",
    )


def config_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> AppHealthConfig | None:
    """None when health checks are off; ValueError names the flag that is wrong."""
    env = os.environ if env is None else env
    enabled = args.enable_app_health_check or env.get("APP_HEALTH_CHECK", "").lower() in ("1", "true", "yes")
    if not enabled:
        return None

    def pick(flag: Any, name: str, default: float) -> float:
        if flag is not None:
            return float(flag)
        try:
            return float(env[name]) if env.get(name) else default
        except ValueError:
            raise ValueError(f"{name}={env[name]!r}: expected a number") from None

    return AppHealthConfig(
        path=args.app_health_check_path or env.get("APP_HEALTH_CHECK_PATH") or "/healthz",
        interval_s=pick(args.app_health_probe_interval, "APP_HEALTH_PROBE_INTERVAL", 5.0),
        timeout_s=pick(args.app_health_probe_timeout, "APP_HEALTH_PROBE_TIMEOUT", 500.0) / 1000.0,
        threshold=int(pick(args.app_health_threshold, "APP_HEALTH_THRESHOLD", 3)),
    )


class WorkloadReporter:
    """Reports this workload's health / draining to the control plane with its workload credential."""

    def __init__(self, control_plane: str, credential_file: Path, timeout_s: float = 3.0) -> None:
        self.url = control_plane.rstrip("/") + REPORT_PATH
        self.credential_file = credential_file
        self.timeout_s = timeout_s
        self._registers: bool | None = None  # does the credential name a workload group (read once)

    async def report(self, **fields: Any) -> bool:
        """True when the control plane stored it, or when there is nothing to report: a credential naming no
        workload group registers no entry (its reports would only be refused). Failures are logged (the next
        transition retries)."""
        import asyncio

        import aiohttp

        if self._registers is None:  # read here, not at start: the JWT library is ~50 ms of CPU on that path
            self._registers = await asyncio.to_thread(_names_a_workload_group, self.credential_file)
        if not self._registers:
            return True
        try:
            token = (await asyncio.to_thread(self.credential_file.read_text)).strip()
            fields = {**fields, **_instance_of(token)}
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.url, json=fields, headers={"Authorization": f"Bearer {token}"}) as resp,
            ):
                if resp.status == 200:
                    return True
                log.warning("workload report %s: HTTP %d %s", fields, resp.status, (await resp.text())[:200])
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("workload report %s failed: %s", fields, exc)
        return False


def _instance_of(token: str) -> dict[str, str]:
    """A credential shared by scaled replicas: which one reports ({"proxy_id": <id>.<host name>}, the node id
    the embedded agent gives this replica's Envoy)."""
    import socket

    from xds.identity.credential import CredentialError, node_id_of, read_unverified

    try:
        cred = read_unverified(token)
    except CredentialError:
        return {}  # the control plane says what is wrong with it
    return {"proxy_id": node_id_of(cred, socket.gethostname())} if cred.instances else {}


def reporter_for(control_plane: str | None, credential: str | None) -> WorkloadReporter | None:
    """A reporter when there is a control plane and a credential; whether the credential names a workload
    group (else there is no entry to report on) is read at its first report, off the service's start path."""
    if not control_plane or not credential:
        return None
    return WorkloadReporter(control_plane, Path(credential))


def _names_a_workload_group(credential: Path) -> bool:
    from xds.identity.credential import CredentialError, read_token_file, read_unverified

    try:
        return bool(read_unverified(read_token_file(credential)).workload_group)
    except CredentialError as exc:  # not readable yet: keep reporting, the control plane decides
        log.warning("workload credential %s: %s", credential, exc)
        return True


class AppHealth:
    """Probes the app; on each transition pauses or resumes delivery and reports the workload's health."""

    def __init__(
        self, runtime: Runtime, config: AppHealthConfig, reporter: WorkloadReporter | None = None
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.reporter = reporter
        self.healthy: bool | None = None  # None: not probed yet (deliveries start as without checks)
        self.failures = 0
        self.transitions = 0
        self.unreported = False  # the last report was not stored: sent again at the next probe
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        import asyncio

        self._task = asyncio.create_task(self._loop(), name=f"app-health:{self.runtime.app_id}")

    async def stop(self) -> None:
        import asyncio

        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def probe(self) -> bool:
        grpc_delivery = getattr(self.runtime, "grpc_app_delivery", None)
        if grpc_delivery is not None:
            return await self._probe_grpc(grpc_delivery.channel)
        try:
            response = await self.runtime.app_channel.call(
                "GET", self.config.path, body=None, headers={}, timeout=self.config.timeout_s
            )
        except Exception as exc:  # refused, timed out: a failed probe, as daprd counts it
            log.debug("app health probe failed: %s", exc)
            return False
        return 200 <= response.status < 300

    async def _probe_grpc(self, channel: Any) -> bool:
        """daprd probes a gRPC app with AppCallbackHealthCheck/HealthCheck (the path is for HTTP apps); an app
        that does not implement it (UNIMPLEMENTED) fails the probe, as in daprd."""
        from google.protobuf import empty_pb2

        try:
            await channel.call(channel.health.HealthCheck, empty_pb2.Empty(), timeout_s=self.config.timeout_s)
        except Exception as exc:
            log.debug("app health probe (gRPC HealthCheck) failed: %s", exc)
            return False
        return True

    async def check_once(self) -> None:
        if self.unreported and self.healthy is not None:  # e.g. sent before the proxy registered (404)
            await self._report(self.healthy)
        if await self.probe():
            self.failures = 0
            if self.healthy is not True:
                await self._set(True)
            return
        self.failures += 1
        if self.failures >= self.config.threshold and self.healthy is not False:
            await self._set(False)

    async def _set(self, healthy: bool) -> None:
        first = self.healthy is None
        self.healthy = healthy
        self.transitions += 1
        if not (first and healthy):
            log.warning("app %s is %s", self.runtime.app_id, "healthy again" if healthy else "unhealthy")
        for deliveries in _deliveries(self.runtime):
            await (deliveries.resume() if healthy else deliveries.pause("app unhealthy"))
        await self._report(healthy)

    async def _report(self, healthy: bool) -> None:
        if self.reporter is not None:
            message = "" if healthy else f"GET {self.config.path}: {self.failures} failed probes"
            self.unreported = not await self.reporter.report(healthy=healthy, message=message)

    async def _loop(self) -> None:
        import asyncio

        while True:
            try:
                await self.check_once()
            except Exception:
                log.exception("app health check round failed")
            await asyncio.sleep(self.config.interval_s)


async def drain(runtime: Runtime, reporter: WorkloadReporter | None) -> None:
    """SIGTERM: the endpoint is marked DRAINING first (callers stop sending), then subscriptions and input
    bindings stop pulling; in-flight deliveries finish (or, unacked, go back to the broker)."""
    if reporter is not None:
        await reporter.report(draining=True)
    for deliveries in _deliveries(runtime):
        await deliveries.pause("shutting down")


def _deliveries(runtime: Runtime) -> list[Any]:
    """What delivers to the app: the HTTP delivery manager and, for APP_PROTOCOL=grpc, the gRPC one (each has
    pause(reason) / resume())."""
    from capabilities.delivery.http import manager_for

    found = [manager_for(runtime), getattr(runtime, "grpc_app_delivery", None)]
    return [d for d in found if d is not None]
