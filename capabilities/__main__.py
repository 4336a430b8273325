"""Entry point.

python -m capabilities --app-id X --dapr-http-port P [--resources-path DIR] [--control-plane URL]
    [--app-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from capabilities.config.settings import Settings

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
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
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
    )
    if settings.app_url is None and settings.app_port:
        settings.app_url = f"http://127.0.0.1:{settings.app_port}"
    return settings


async def serve(settings: Settings) -> int:
    """Start order is tuned for start-up time: HTTP listens first (healthz answers at once), the component
    load (control-plane fetch, backend connects) runs while the gRPC API is imported and bound, and
    healthz/outbound turns 204 only when both components and the gRPC API are ready."""
    from aiohttp import web

    from capabilities.api.http.app import build_app
    from capabilities.config.documents import ConfigError
    from capabilities.runtime import Runtime

    runtime = Runtime(settings)
    runner = web.AppRunner(build_app(runtime), access_log=None)
    await runner.setup()
    # Listen before loading components: metadata and healthz answer at once (healthz 500 until ready).
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    stop_grpc = None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runtime.request_shutdown)
    code = 0
    starting = asyncio.create_task(runtime.start(), name="components")
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
            "capability service for app %r listening on http://%s:%d (%d components)",
            runtime.app_id, settings.http_host, settings.http_port, len(runtime.component_specs),
        )  # fmt: skip
        await runtime.shutdown_requested.wait()
    except ConfigError as exc:
        log.error("%s", exc)
        code = 1
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
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"capabilities: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
