"""`mecha list`, `mecha logs`, `mecha invoke`, `mecha publish`: the apps of the running mesh, as the dapr CLI
shows them. They read the nearest `mecha up` state (.mecha/up.json, see client.py) and `mecha run`'s
records (.mecha/run/<app-id>.json); invoke and publish go through an app's Dapr HTTP API, so the call takes
the mesh's path (its proxy's routes, retries, policies) as an app's own call would."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from xds.statedir import find_state_dir

UP_FILE = "up.json"  # = xds/runner/up.py PID_FILE
RUN_FOLDER = "run"  # `mecha run` writes run/<app-id>.json here while its app runs
STATE_HELP = "the state folder of the running mesh (default: $MECHA_STATE_DIR, else the nearest .mecha/)"
VERBS = ("GET", "POST", "PUT", "DELETE", "PATCH")


class AppsError(RuntimeError):
    """Nothing runs, or the app named is not one of the mesh's; the message says which and what runs."""


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("list", help="apps of the running mesh with their ports (as `dapr list`)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.add_argument("--state-dir", default=None, help=STATE_HELP)
    p = sub.add_parser("logs", help="an app's log (or its capability service's / Envoy's)")
    p.add_argument("app", help="app id (e.g. reviews: every version) or workload name (reviews-v2)")
    p.add_argument(
        "--of",
        choices=["app", "capabilities", "envoy"],
        default="app",
        help="whose log: the app's, its capability service's (daprd's role) or its Envoy's",
    )
    p.add_argument("-n", "--tail", type=int, default=0, help="only the last N lines (0: all)")
    p.add_argument("--state-dir", default=None, help=STATE_HELP)
    p = sub.add_parser("invoke", help="call a method of an app through the mesh (as `dapr invoke`)")
    p.add_argument("app", help="the app id to invoke")
    p.add_argument("method", help="the method (path) on the app, e.g. reviews or v1/orders")
    p.add_argument("-d", "--data", default=None, help="request body (JSON or text)")
    p.add_argument("--verb", choices=VERBS, default=None, help="HTTP verb (default: POST with -d, else GET)")
    p.add_argument("--via", default=None, help="the app whose Dapr API makes the call (default: the first)")
    p.add_argument("--state-dir", default=None, help=STATE_HELP)
    p = sub.add_parser("publish", help="publish an event to a topic (as `dapr publish`)")
    p.add_argument("pubsub", help="the pub/sub component's name")
    p.add_argument("topic", help="the topic")
    p.add_argument("data", help="the event (JSON, or text)")
    p.add_argument("--via", default=None, help="the app whose Dapr API publishes (default: the first)")
    p.add_argument("--state-dir", default=None, help=STATE_HELP)


# ---- what runs ---------------------------------------------------------------------------------------------
def state_folder(given: str | None) -> Path:
    folder = Path(given) if given else find_state_dir()
    if folder is None or not (folder / UP_FILE).exists():
        where = folder or Path.cwd()
        raise AppsError(f"no running mesh found from {where} (no {UP_FILE}); start one with `mecha up`")
    return folder


def running_apps(folder: Path) -> list[dict[str, Any]]:
    """One row per app: name, app_id, app, dapr_http, dapr_grpc, pid, logs {app, capabilities, envoy}."""
    info = json.loads((folder / UP_FILE).read_text())
    children = {c["name"]: c for c in info.get("children", [])}
    rows = []
    for name, urls in (info.get("apps") or {}).items():
        rows.append(
            {
                "name": name,
                "app_id": name.rsplit("-v", 1)[0] if "-v" in name else name,
                "app": urls.get("app", ""),
                "dapr_http": urls.get("dapr", ""),
                "dapr_grpc": urls.get("dapr_grpc", ""),
                "pid": (children.get(name) or {}).get("pid"),
                "logs": _logs_of(children, name),
                "source": "mecha up",
            }
        )
    for record in sorted((folder / RUN_FOLDER).glob("*.json")) if (folder / RUN_FOLDER).is_dir() else []:
        try:
            row = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(row.get("pid") or 0)):
            rows.append({**row, "source": "mecha run"})
    return rows


def _logs_of(children: dict[str, Any], name: str) -> dict[str, str]:
    logs = {}
    for kind, child in (("app", name), ("capabilities", f"capabilities-{name}"), ("envoy", f"envoy-{name}")):
        if child in children:
            log = Path(children[child]["log"])
            if kind == "envoy" and log.with_suffix(".log").exists():  # its --log-path; .out is only stdout
                log = log.with_suffix(".log")
            logs[kind] = str(log)
    return logs


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port(url: str) -> str:
    return url.rsplit(":", 1)[-1].split("/", 1)[0] if url else "-"


def _matching(rows: list[dict[str, Any]], app: str) -> list[dict[str, Any]]:
    found = [r for r in rows if app in (r["name"], r["app_id"])]
    if not found:
        known = ", ".join(sorted({r["app_id"] for r in rows})) or "none"
        raise AppsError(f"no app {app!r} in the running mesh (apps: {known}; see `mecha list`)")
    return found


# ---- commands ----------------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from xds.cli.tables import table

    rows = running_apps(state_folder(args.state_dir))
    if args.output == "json":
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    cells = [
        (r["app_id"], r["name"], _port(r["app"]), _port(r["dapr_http"]), _port(r["dapr_grpc"]),
         str(r.get("pid") or "-"), r["source"])
        for r in rows
    ]  # fmt: skip
    print(table(("APP ID", "WORKLOAD", "APP PORT", "HTTP PORT", "GRPC PORT", "PID", "STARTED BY"), cells))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    rows = _matching(running_apps(state_folder(args.state_dir)), args.app)
    for row in rows:
        log = row["logs"].get(args.of)
        if not log:
            raise AppsError(f"{row['name']} has no {args.of} log (it runs without one)")
        lines = Path(log).read_text(errors="replace").splitlines()
        if args.tail > 0:
            lines = lines[-args.tail :]
        if len(rows) > 1:
            print(f"==> {row['name']} ({args.of}: {log}) <==")
        for line in lines:
            print(line)
    return 0


def _caller(rows: list[dict[str, Any]], via: str | None) -> str:
    pool = _matching(rows, via) if via else [r for r in rows if r["dapr_http"]]
    if not pool or not pool[0]["dapr_http"]:
        raise AppsError("no app of the mesh has a Dapr HTTP API to call through")
    return str(pool[0]["dapr_http"]).rstrip("/")


def _send(method: str, url: str, data: str | None) -> int:
    body = None if data is None else data.encode()
    headers = {}
    if data is not None:
        headers["Content-Type"] = "application/json" if _is_json(data) else "text/plain"
    if os.environ.get("DAPR_API_TOKEN"):  # as the Dapr SDKs and CLI send it
        headers["dapr-api-token"] = os.environ["DAPR_API_TOKEN"]
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = resp.read()
            if answer:
                sys.stdout.write(answer.decode(errors="replace").rstrip("\n") + "\n")
            return 0
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        print(f"error: HTTP {exc.code} from {url}: {detail or exc.reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2


def _is_json(data: str) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def cmd_invoke(args: argparse.Namespace) -> int:
    rows = running_apps(state_folder(args.state_dir))
    _matching(rows, args.app)  # a clear error for an unknown app before the call
    verb = args.verb or ("POST" if args.data is not None else "GET")
    method = urllib.parse.quote(args.method.lstrip("/"), safe="/?=&")
    url = f"{_caller(rows, args.via)}/v1.0/invoke/{urllib.parse.quote(args.app)}/method/{method}"
    return _send(verb, url, args.data)


def cmd_publish(args: argparse.Namespace) -> int:
    rows = running_apps(state_folder(args.state_dir))
    pubsub, topic = urllib.parse.quote(args.pubsub, safe=""), urllib.parse.quote(args.topic, safe="")
    code = _send("POST", f"{_caller(rows, args.via)}/v1.0/publish/{pubsub}/{topic}", args.data)
    if code == 0:
        print(f"published to {args.pubsub}/{args.topic}")
    return code
