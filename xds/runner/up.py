"""`mecha up` / `mecha down`: run the stack in the foreground until Ctrl-C; state in ./.mecha/."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.demo.config import default_layout, demo_secret_env
from xds.runner.config_ports import unshifted_ports
from xds.runner.errors import StackError
from xds.runner.procs import pid_alive
from xds.runner.stack import Stack, StackOptions
from xds.statedir import write_private_file

PID_FILE = "up.json"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal was closed
WATCH_INTERVAL_S = 0.5


def _say(line: str) -> None:
    print(line, flush=True)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def _summary(info: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Mecha is up ({info['mode']} mode, pid {info['pid']}). Everything listens on 127.0.0.1 only:",
        f"  productpage (through its proxy):  {info['productpage']}",
        *([f"  ingress gateway (port 80):        {info['gateway']}"] if info.get("gateway") else []),
        f"  control plane API:                {info['api']}   (xDS on {info['xds']})",
        f"  metrics:                          {info['metrics']}",
        f"  config folder (watched):          {info['config_dir']}",
        "  Envoy admin: " + "  ".join(f"{k} {v}" for k, v in info["admin"].items()),
        *gateway_api_lines(info.get("gateway_api") or {}),
        "  apps (direct / via proxy inbound / Dapr HTTP API = DAPR_HTTP_PORT / Dapr gRPC = DAPR_GRPC_PORT):",
    ]
    for name, u in info["apps"].items():
        dapr = f"{u.get('dapr', '')}  {u.get('dapr_grpc', '')}"
        lines.append(f"    {name:<15} {u['app']}  {u['via_proxy']}  {dapr}")
    mesh = info["mesh_entry"]
    pp_proxy = info.get("productpage_proxy", "productpage-v1")  # node mode: the node's proxy
    lines += [
        "",
        "Try:",
        f"  curl -s {info['productpage']}",
        *([f"  curl -s {info['gateway']}   # through the ingress gateway"] if info.get("gateway") else []),
        f"  curl -s -H 'Host: reviews' {mesh}/reviews                      # 80% v1 / 20% v2",
        f"  curl -s -H 'Host: reviews' -H 'end-user: jason' {mesh}/reviews  # always v2",
        f"  curl -s -H 'Host: reviews' '{mesh}/fail?n=1&key=demo'           # retried: attempt 2",
        f"  curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: reviews' '{mesh}/slow?ms=3000'  # 504",
        f"  mecha proxy-status --server {info['api']}",
        f"  mecha proxy-config {pp_proxy} routes --server {info['api']}",
        "",
        "Logs: " + str(Path(info["state_dir"]) / "logs") + "   Stop: Ctrl-C (or `mecha down`)",
    ]
    lines += [f"note: {n}" for n in info.get("notes", [])]
    lines += [
        f"note: {c['name']} was restarted {c['restarts']} time(s) (last exit code {c.get('last_exit')})"
        for c in info.get("children", [])
        if c.get("restarts")
    ]
    return lines


def gateway_api_lines(gateways: dict[str, Any]) -> list[str]:
    """The Gateway API Gateways' Envoys: where each listener port is bound (more start when applied)."""
    if not gateways:
        return []
    lines = ["  Gateway API gateways (one Envoy each; listener port -> bound address):"]
    for ref, g in gateways.items():
        bound = (
            "  ".join(f"{port} -> {address}" for port, address in g["listeners"].items()) or "no listeners"
        )
        lines.append(f"    {ref:<28} {bound}   (proxy {g['proxy']})")
    return lines


def run_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    if state and pid_alive(int(state.get("pid", 0))):
        starting = " and still starting" if state.get("status") == "starting" else ""
        _say(f"mecha up is already running here{starting} (pid {state['pid']}, state {state_dir}):")
        for line in _summary(state)[1:]:
            _say(line)
        _say("Run `mecha down` first to restart it.")
        return 1
    if state:  # the supervisor died (killed, machine crash): its children may still hold the ports
        leftovers = _stop_leftovers(state)
        (state_dir / PID_FILE).unlink(missing_ok=True)
        _say(
            f"note: stale state in {state_dir} from a `mecha up` that is gone (pid {state.get('pid')}); "
            f"cleaned it up (stopped {len(leftovers)} leftover processes)"
        )
    if args.config and args.demo:
        _say("mecha up: --demo and --config are exclusive (the demo config or yours)")
        return 2
    folders = [Path(c).resolve() for c in args.config or []]
    for given, folder in zip(args.config or [], folders, strict=True):
        if not folder.is_dir():
            _say(f"mecha up: --config {given}: no such folder")
            return 2
    config_dir = folders[0] if folders else None
    offset = args.port_offset
    notes = unshifted_ports(folders, args.mode, offset)  # the user's files are theirs: named, not rewritten
    for note in notes:
        _say(f"note: {note}")
    if config_dir is None:  # the demo's secret store serves these (xds/demo/config.py); the user's win
        for key, value in demo_secret_env().items():
            os.environ.setdefault(key, value)
    options = StackOptions(
        layout=default_layout(args.mode, offset),
        state_dir=state_dir,
        api_port=DEFAULT_API_PORT + offset,
        xds_port=DEFAULT_XDS_PORT + offset,
        delta=args.delta,
        config_dir=config_dir,
        extra_config_dirs=folders[1:],
        with_gateway=True,
        deploy_gateways=True,  # an Envoy per Gateway API Gateway (xds/runner/gateways.py)
        port_offset=offset,
        extra_env={"MECHA_MTLS": "0"} if args.no_mtls else {},
    )
    try:
        return asyncio.run(_up(options, args.timeout, notes))
    except KeyboardInterrupt:  # second Ctrl-C while stopping; children were already signalled
        return 130


def _write_state(stack: Stack, status: str) -> None:
    """up.json: the supervisor's pid and every running child's (kept current on each start and restart, so
    `mecha down` stops what runs now, even after an early death); 0600 as it sits beside the tokens."""
    info = {**stack.describe(), "pid": os.getpid(), "state_dir": str(stack.o.state_dir), "status": status}
    write_private_file(stack.o.state_dir / PID_FILE, json.dumps(info, indent=2))


async def _up(options: StackOptions, within_s: float, notes: list[str]) -> int:
    status = {"now": "starting"}
    stack = Stack(options, report=_say, on_change=lambda: _write_state(stack, status["now"]))
    stack.notes.extend(notes)  # repeated under the summary
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    pid_file = options.state_dir / PID_FILE
    try:
        _say(f"Starting Mecha ({options.layout.mode} mode) - state in {options.state_dir}")
        _write_state(stack, "starting")  # before the first child: `mecha down` works from here on
        start = asyncio.create_task(stack.start(within_s))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            start.cancel()
            _say("interrupted while starting; stopping what was started")
            return 130
        stopper.cancel()
        start.result()  # raises StackError
        if stack.gateways is not None:  # the Gateways of the config it started with, before the summary
            try:
                await stack.gateways.poll()
            except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                _say(f"warning: could not read the Gateways of the config: {exc}")
        status["now"] = "up"
        _write_state(stack, "up")
        info = read_state(options.state_dir) or {}
        for line in _summary(info):
            _say(line)
        follow = asyncio.create_task(stack.gateways.run(stop)) if stack.gateways is not None else None
        await _watch_children(stack, stop)
        if follow is not None:
            await follow
        _say("stopping...")
        return 0
    except StackError as exc:
        _say(f"mecha up failed: {exc}")
        return 1
    finally:
        await stack.stop()
        pid_file.unlink(missing_ok=True)
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        _say("all processes stopped")


async def _watch_children(stack: Stack, stop: asyncio.Event) -> None:
    """Until Ctrl-C/SIGTERM/SIGHUP: restart every child that exits on its own (with backoff; the supervisor
    prints each death and restart and rewrites up.json)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), WATCH_INTERVAL_S)
        except TimeoutError:
            pass
        if not stop.is_set():
            await stack.sup.restart_dead()


def run_down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    if state is None:
        _say(f"nothing to stop: no {PID_FILE} in {state_dir}")
        return 0
    pid = int(state.get("pid", 0))
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    leftovers = _stop_leftovers(state)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    extra = f" (killed {len(leftovers)} leftover processes)" if leftovers else ""
    _say(f"stopped mecha up (pid {pid}){extra}")
    return 0


def _stop_leftovers(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The supervisor died without cleaning up: stop its recorded children by PID."""
    leftovers = [c for c in state.get("children", []) if c.get("pid") and _same_process(c)]
    for child in leftovers:
        try:
            os.kill(int(child["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leftovers


def _same_process(child: dict[str, Any]) -> bool:
    """The pid is alive and still runs the program we started (pids get reused)."""
    pid = int(child["pid"])
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # the envoy wrapper script execs the real binary, so compare program names, not full paths
    name = Path(str(child.get("argv0", ""))).name
    return bool(name) and name in " ".join(part.decode(errors="replace") for part in cmdline)
