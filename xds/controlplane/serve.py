"""`mecha serve`: run the control plane (xDS gRPC + HTTP API + watched folders) until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal

from xds.controlplane.settings import Settings

log = logging.getLogger("mecha.serve")


class StartupError(RuntimeError):
    """The control plane cannot start (port in use, bad folder...): the message says why."""


async def serve(settings: Settings, ready_message: bool = True) -> None:
    from xds.controlplane.api import start_api
    from xds.controlplane.runtime import ControlPlane

    try:
        cp = ControlPlane(settings)
    except ValueError as exc:  # e.g. an unreadable MECHA_CA_DIR: the message names the file
        raise StartupError(str(exc)) from None
    runner = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            runner, api_port = await start_api(
                cp, settings.api_host, settings.api_port, settings.state_dir, settings.allowed_hosts
            )
        except OSError as exc:
            raise StartupError(_port_message("HTTP API", settings.api_host, settings.api_port, exc)) from None
        try:
            xds_port = await cp.start()
        except ValueError as exc:  # e.g. a corrupt config store (StoreError): the message names the file
            raise StartupError(str(exc)) from None
        except (OSError, RuntimeError) as exc:
            raise StartupError(_port_message("xDS gRPC", settings.xds_host, settings.xds_port, exc)) from None
        if ready_message:
            dirs = ", ".join(str(d) for d in settings.config_dirs) or "none (use `mecha apply`)"
            print(
                f"mecha control plane ready: API http://{settings.api_host}:{api_port}  "
                f"xDS grpc://{settings.xds_host}:{xds_port}  config version {cp.store.version}  "
                f"watching: {dirs}",
                flush=True,
            )
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await cp.stop()
        if runner is not None:
            await runner.cleanup()


def _port_message(what: str, host: str, port: int, exc: BaseException) -> str:
    if (isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE) or "address" in str(exc).lower():
        return (
            f"cannot start the {what} on {host}:{port}: the port is in use "
            f"(another `mecha serve`/`mecha up`? stop it with `mecha down`, or pick another port)"
        )
    return f"cannot start the {what} on {host}:{port}: {exc}"
