"""Entry point.

python -m capabilities --app-id X --dapr-http-port P [--resources-path DIR] [--control-plane URL]
    [--app-url URL]
python -m capabilities --app APPID:HTTP_PORT:GRPC_PORT:APP_URL [--app ...] [--control-plane URL] ...
    node mode: one process, one runtime per --app (own app id, ports, app channel, subscriptions,
    delivery); the other flags (control plane, resources, token, body limit) apply to every runtime.
    --agent-credential FILE --agent-socket-dir DIR --agent-root-cert PEM --agent-control-plane HOST:PORT
    starts the proxy's mecha agent as this service's supervised child (capabilities/identity_agent.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import TYPE_CHECKING, Any

# asyncio, the settings and the rest load after the embedded agent is started (main): the agent's sockets
# are on Envoy's start path, and those imports (~60 ms) would come first
if TYPE_CHECKING:
    from capabilities.apphealth import AppHealthConfig, WorkloadReporter
    from capabilities.config.settings import Settings
    from capabilities.runtime import Runtime

log = logging.getLogger("capabilities")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m capabilities", description="Mecha capability service (Dapr API)"
    )
    parser.add_argument("--app-id", help="application id (env APP_ID)")
    parser.add_argument("--dapr-http-port", type=int, help="HTTP API port (env DAPR_HTTP_PORT, default 3500)")
    parser.add_argument(
        "--dapr-grpc-port", type=int, help="gRPC API port (env DAPR_GRPC_PORT, default 50001)"
    )
    parser.add_argument("--dapr-listen-address", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--resources-path", "--components-path", action="append", dest="resources_paths", default=None,
        help="folder of Component/Subscription/Resiliency YAML (repeatable)",
    )  # fmt: skip
    parser.add_argument("--control-plane", help="control plane base URL (env MECHA_CONTROL_PLANE)")
    parser.add_argument(
        "--app-url", help="base URL of the app (env MECHA_APP_URL); default http://127.0.0.1:APP_PORT"
    )
    parser.add_argument("--app-port", type=int, help="app port (env APP_PORT)")
    parser.add_argument(
        "--max-body-bytes", type=int, help="request body limit (env MECHA_MAX_BODY_BYTES, 4 MiB)"
    )
    parser.add_argument(
        "--app", action="append", dest="apps", default=None, metavar="APPID:HTTP_PORT:GRPC_PORT:APP_URL",
        help="node mode: host one more app in this process (repeatable; GRPC_PORT 0 = no gRPC API; "
        "APP_URL may be empty when the app is not called back)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-file-root", action="append", dest="allowed_file_roots", default=None, metavar="DIR",
        help="folder file components (bindings.localstorage, secretstores.local.file, state.sqlite) may use; "
        "repeatable, adds to MECHA_ALLOWED_FILE_ROOTS; once given, file components must stay under one",
    )  # fmt: skip
    parser.add_argument(
        "--state-dir", help="the Mecha state folder file components must not touch (env MECHA_STATE_DIR)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    from capabilities.identity_agent import add_arguments as add_agent_arguments

    add_agent_arguments(parser)  # --agent-*: the mecha agent, started and supervised by this service
    from capabilities.apphealth import add_arguments as add_health_arguments

    add_health_arguments(parser)  # daprd's --enable-app-health-check ... (capabilities/apphealth.py)
    return parser.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class AppSpec:
    """One --app APPID:HTTP_PORT:GRPC_PORT:APP_URL."""

    app_id: str
    http_port: int
    grpc_port: int
    app_url: str | None


def parse_app_spec(text: str) -> AppSpec:
    """Parse --app; the URL may contain ':' (it is the rest of the value). ValueError names the field."""
    parts = text.split(":", 3)
    if len(parts) < 3:
        raise ValueError(f"--app {text!r}: expected APPID:HTTP_PORT:GRPC_PORT:APP_URL")
    app_id, http_raw, grpc_raw = parts[:3]
    url = parts[3] if len(parts) == 4 else ""
    if not app_id:
        raise ValueError(f"--app {text!r}: APPID is empty")
    ports = []
    for label, raw, low in (("HTTP_PORT", http_raw, 1), ("GRPC_PORT", grpc_raw, 0)):
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"--app {text!r}: {label} {raw!r} is not a port number") from None
        if not low <= port < 65536:
            raise ValueError(f"--app {text!r}: {label} {port} is out of range {low}-65535")
        ports.append(port)
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"--app {text!r}: APP_URL {url!r} must start with http:// or https://")
    return AppSpec(app_id, ports[0], ports[1], url or None)


def settings_from_args(args: argparse.Namespace) -> Settings:
    from capabilities.config.settings import Settings

    settings = Settings.from_env(
        app_id=args.app_id,
        http_port=args.dapr_http_port,
        grpc_port=args.dapr_grpc_port,
        http_host=args.dapr_listen_address,
        resources_paths=args.resources_paths,
        control_plane=args.control_plane,
        app_url=args.app_url,
        app_port=args.app_port,
        max_body_bytes=args.max_body_bytes,
        allowed_file_roots=args.allowed_file_roots,
        state_dir=args.state_dir,
    )
    if settings.app_url is None and settings.app_port:
        settings.app_url = f"http://127.0.0.1:{settings.app_port}"
    return settings


def app_settings_from_args(args: argparse.Namespace) -> list[Settings]:
    """One Settings per hosted app: the single-app flags, or one per --app (sharing the other flags)."""
    if not args.apps:
        return [settings_from_args(args)]
    for flag, value in (("--app-id", args.app_id), ("--dapr-http-port", args.dapr_http_port),
                        ("--dapr-grpc-port", args.dapr_grpc_port), ("--app-url", args.app_url),
                        ("--app-port", args.app_port)):  # fmt: skip
        if value is not None:
            raise ValueError(f"{flag} cannot be combined with --app (give each app's value in its --app)")
    base = settings_from_args(args)
    out: list[Settings] = []
    used: dict[int, str] = {}
    for text in args.apps:
        spec = parse_app_spec(text)
        for port in (spec.http_port, spec.grpc_port):
            if port and port in used:
                raise ValueError(f"--app {text!r}: port {port} is also used by --app {used[port]!r}")
            used[port] = text
        out.append(
            dataclasses.replace(
                base,
                app_id=spec.app_id,
                http_port=spec.http_port,
                grpc_port=spec.grpc_port,
                app_url=spec.app_url,
                app_port=None,
                resources_paths=list(base.resources_paths),
            )
        )
    return out


async def serve(settings: Settings) -> int:
    """One app (the daprd-like process)."""
    return await serve_apps([settings])


async def serve_apps(
    all_settings: list[Settings],
    health: AppHealthConfig | None = None,
    reporter: WorkloadReporter | None = None,
) -> int:
    """Host one runtime per Settings in this event loop; SIGINT/SIGTERM, or one runtime failing to start,
    stops them all. Returns the process exit code (1 when any runtime failed)."""
    import asyncio
    import signal

    from capabilities.runtime import Runtime
    from capabilities.shared_components import SharedComponents

    # several apps: identical state/secret/lock/sequencer components share one instance (one pool)
    shared = SharedComponents() if len(all_settings) > 1 else None
    runtimes = [Runtime(s, shared=shared) for s in all_settings]

    def stop_all() -> None:
        for runtime in runtimes:
            runtime.request_shutdown()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_all)
    try:
        codes = await asyncio.gather(*(_serve_runtime(r, stop_all, health, reporter) for r in runtimes))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return max(codes, default=0)


async def _serve_runtime(
    runtime: Runtime,
    on_failure: Any,
    health: AppHealthConfig | None = None,
    reporter: WorkloadReporter | None = None,
) -> int:
    """Start order is tuned for start-up time: HTTP listens first (healthz answers at once), the component
    load (control-plane fetch, backend connects) runs while the gRPC API is imported and bound, and
    healthz/outbound turns 204 only when both components and the gRPC API are ready."""
    import asyncio

    from aiohttp import web

    from capabilities.api.http.app import build_app
    from capabilities.apphealth import AppHealth, drain
    from capabilities.config.documents import ConfigError
    from capabilities.eventloop import loop_name

    settings = runtime.settings
    runner = web.AppRunner(build_app(runtime), access_log=None)
    await runner.setup()
    # Listen before loading components: metadata and healthz answer at once (healthz 500 until ready).
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    try:
        await site.start()
    except OSError as exc:  # the port is taken: this app cannot serve, say which one
        log.error("app %r: HTTP API not started on %s:%d: %s", runtime.app_id, settings.http_host,
                  settings.http_port, exc)  # fmt: skip
        await runner.cleanup()
        await runtime.stop()
        on_failure()
        return 1
    stop_grpc = None
    code = 0
    starting = asyncio.create_task(runtime.start(), name=f"components:{runtime.app_id}")
    try:
        if settings.grpc_port > 0:  # DAPR_GRPC_PORT; 0 or less disables the gRPC API
            runtime.servers_ready.clear()
            await asyncio.sleep(0)  # let the component load send its first request before the import
            from capabilities.api.grpc.server import start_grpc

            try:
                stop_grpc = await start_grpc(runtime, settings.grpc_port)
            except OSError as exc:  # port taken: keep serving HTTP, say why gRPC is missing
                log.error("gRPC API not started: %s", exc)
            runtime.servers_ready.set()
        await starting
        log.info(
            "capability service for app %r listening on http://%s:%d (%d components, %s loop)",
            runtime.app_id, settings.http_host, settings.http_port, len(runtime.component_specs),
            loop_name(asyncio.get_running_loop()),
        )  # fmt: skip
        checker = AppHealth(runtime, health, reporter) if health is not None else None
        if checker is not None:
            checker.start()
        await runtime.shutdown_requested.wait()
        if checker is not None:
            await checker.stop()
        await drain(runtime, reporter)  # DRAINING in EDS, subscriptions stop pulling, in-flight ones finish
    except ConfigError as exc:
        log.error("app %r: %s", runtime.app_id, exc)
        code = 1
        on_failure()
    finally:
        if not starting.done():
            starting.cancel()
        if stop_grpc is not None:
            await stop_grpc()
        await runner.cleanup()
        await runtime.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from capabilities.identity_agent import EmbeddedAgent, config_from_args

    try:
        agent_config = config_from_args(args)
    except ValueError as exc:
        print(f"capabilities: {exc}", file=sys.stderr)
        return 2
    # the agent first (its own process), before this service's own imports: Envoy waits for its sockets, and
    # its certificate does not depend on the components
    agent = EmbeddedAgent(agent_config) if agent_config is not None else None
    if agent is not None:
        agent.start()
    try:
        return _serve(args)
    finally:
        if agent is not None:
            agent.stop()


def _serve(args: argparse.Namespace) -> int:
    from capabilities.apphealth import config_from_args as health_config_from_args
    from capabilities.apphealth import reporter_for

    try:
        all_settings = app_settings_from_args(args)
        health = health_config_from_args(args)
        credential = args.workload_credential or args.agent_credential
        reporter = reporter_for(all_settings[0].control_plane, credential)
    except ValueError as exc:
        print(f"capabilities: {exc}", file=sys.stderr)
        return 2
    from capabilities.eventloop import loop_factory

    try:
        factory = loop_factory()
    except (ValueError, ImportError) as exc:
        print(f"capabilities: {exc}", file=sys.stderr)
        return 2
    import asyncio

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve_apps(all_settings, health, reporter))


if __name__ == "__main__":
    sys.exit(main())
