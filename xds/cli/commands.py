"""Implementations of the client and offline subcommands (argparse wiring lives in main.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from xds.cli.client import ApiError, Client
from xds.cli.tables import config_warning_lines, content_lines, diff_table, outcome_lines, table
from xds.controlplane.report import diag_line
from xds.sources.loader import YAML_SUFFIXES
from xds.validate.strict import strict_from_env

TYPE_COLUMNS = ("CDS", "LDS", "EDS", "RDS", "SRDS")  # SRDS: "-" unless the proxy routes by scopes
BAD_STATES = frozenset({"NACKED", "STALE"})  # proxy-status exits 1 when any type of any proxy is in one


class UsageError(RuntimeError):
    """Bad command-line input; the message says which argument and why."""


def read_files(paths: list[str]) -> list[dict[str, str]]:
    """-f FILE|DIR (repeatable) -> [{"name", "text"}] in a stable order; '-' reads stdin."""
    files: list[dict[str, str]] = []
    for raw in paths:
        if raw == "-":
            files.append({"name": "<stdin>", "text": sys.stdin.read()})
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
            if not found:
                raise UsageError(f"-f {raw}: the folder holds no .yaml/.yml files")
        elif path.is_file():
            found = [path]
        else:
            raise UsageError(f"-f {raw}: no such file or directory")
        for p in found:
            try:
                files.append({"name": str(p), "text": p.read_text(encoding="utf-8")})
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"-f {p}: cannot read: {exc}") from None
    return files


def cmd_apply(args: argparse.Namespace, dry_run: bool | None = None, path: str = "/api/v1/apply") -> int:
    dry = args.dry_run if dry_run is None else dry_run
    client = Client(args.server, getattr(args, "token", None))
    query = f"?dry_run={int(bool(dry))}"
    expected = getattr(args, "expected_version", None)  # optimistic concurrency: 409 if the store moved on
    if expected is not None:
        query += f"&expected_version={expected}"
    if getattr(args, "strict", False) or strict_from_env():  # refuse routes to missing hosts/subsets
        query += "&strict=1"
    address_map = getattr(args, "address_map", None)
    if address_map:  # kubectl exports converted here, so imported endpoints reach local addresses
        from xds.cli.kube_import import converted_files

        files = converted_files(args.file, address_map)
    else:
        files = read_files(args.file)
    outcome = client.post(path + query, {"files": files})
    print("\n".join(outcome_lines(outcome)))
    if dry and outcome.get("accepted") and "proxies" in outcome:
        print(diff_table(outcome["proxies"]))
        for line in content_lines(outcome["proxies"]):
            print(line)
    return 0 if outcome.get("accepted") else 1


def cmd_diff(args: argparse.Namespace) -> int:
    """The dry run with the content: a unified diff (as YAML) of each changed Envoy resource, shown once for
    all the proxies that get the same change; -o yaml/json print the whole outcome for scripts."""
    output = getattr(args, "output", "text")
    if output == "text":
        return cmd_apply(args, dry_run=True)
    client = Client(args.server, getattr(args, "token", None))
    query = "?dry_run=1" + ("&strict=1" if getattr(args, "strict", False) or strict_from_env() else "")
    outcome = client.post("/api/v1/apply" + query, {"files": read_files(args.file)})
    if output == "json":
        print(json.dumps(outcome, indent=2, sort_keys=True))
    else:
        import yaml

        print(yaml.safe_dump(outcome, sort_keys=True, default_flow_style=False, width=100), end="")
    return 0 if outcome.get("accepted") else 1


def cmd_delete(args: argparse.Namespace) -> int:
    return cmd_apply(args, dry_run=False, path="/api/v1/delete")


def _type_state(row: dict[str, Any], short: str) -> tuple[str, str]:
    """(state, nack message) of one xDS type in a proxy status row."""
    per_type = row.get("types") or {}
    entry = per_type.get(short)
    if entry is None:
        return "-", ""
    if isinstance(entry, str):
        return entry, ""
    state = str(entry.get("state") or entry.get("status") or "-")
    return state, str(entry.get("nack_message") or entry.get("error") or "")


def status_rows(proxies: list[dict[str, Any]]) -> tuple[list[tuple[str, ...]], list[str]]:
    rows: list[tuple[str, ...]] = []
    nacks: list[str] = []
    for row in sorted(proxies, key=lambda r: str(r.get("proxy_id", ""))):
        pid = str(row.get("proxy_id", "?"))
        cells = [pid, str(row.get("mode", "-"))]
        for short in TYPE_COLUMNS:
            state, message = _type_state(row, short)
            cells.append(state)
            if message:
                nacks.append(f"{pid} {short} NACK: {message}")
        cells.append(str(row.get("config_version", "")))
        rows.append(tuple(cells))
    return rows, nacks


def cmd_proxy_status(args: argparse.Namespace) -> int:
    data = Client(args.server, getattr(args, "token", None)).get("/api/v1/proxies")
    proxies = data.get("proxies", [])
    if args.output == "json":
        print(json.dumps(proxies, indent=2, sort_keys=True))
        return 1 if unsynced(proxies) else 0
    if not proxies:
        print("no proxies connected")
        return 0
    rows, nacks = status_rows(proxies)
    if any("replica" in p for p in proxies):  # replicas on a shared store: which one holds each stream
        by_id = {str(p.get("proxy_id", "?")): str(p.get("replica", "-")) for p in proxies}
        rows = [(*row, by_id.get(row[0], "-")) for row in rows]
        print(table(("PROXY", "MODE", *TYPE_COLUMNS, "CONFIG", "REPLICA"), rows))
    else:
        print(table(("PROXY", "MODE", *TYPE_COLUMNS, "CONFIG"), rows))
    for line in nacks:
        print(line)
    for line in config_warning_lines(data.get("warnings") or []):
        print(line)
    return 1 if unsynced(proxies) else 0


def unsynced(proxies: list[dict[str, Any]]) -> list[str]:
    """Proxy ids with any xDS type NACKED or STALE: `mecha proxy-status` then exits 1, as a script wants."""
    return [
        str(row.get("proxy_id", "?"))
        for row in proxies
        if any(_type_state(row, short)[0] in BAD_STATES for short in (row.get("types") or {}))
    ]


def cmd_proxy_config(args: argparse.Namespace) -> int:
    client = Client(args.server, getattr(args, "token", None))
    suffix = "?format=short" if args.output == "short" else ""
    data = client.get(f"/api/v1/proxies/{args.proxy}/config/{args.section}{suffix}")
    if args.output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    rows = data.get("rows", [])
    if not rows:
        print(f"{args.proxy}: no {args.section}")
        return 0
    headers = list(rows[0])
    print(table([h.upper() for h in headers], [[r.get(h, "") for h in headers] for r in rows]))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from xds import pipeline

    paths = [p for p in args.file]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"-f {missing[0]}: no such file or directory")
    docs, load_diags = pipeline.load_paths(paths)
    result = pipeline.compile_documents(docs, strict=getattr(args, "strict", False) or strict_from_env())
    diags = [*load_diags, *result.diagnostics]
    for d in diags:
        print(diag_line(d.to_dict()))
    errors = [d for d in diags if str(d.severity) == "error"]
    if errors:
        print(f"invalid: {len(errors)} error(s) in {len(docs)} document(s)")
        return 1
    kinds: dict[str, int] = {}
    for doc in docs:
        kinds[doc.kind] = kinds.get(doc.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no documents"
    print(f"valid: {summary}")
    return 0


def _app_binding(spec: str) -> dict[str, Any]:
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0]:
        raise UsageError(f"--app {spec!r}: expected NAME:APP_PORT:INBOUND_PORT, e.g. reviews:9081:15006")
    name, app_port, inbound = parts
    try:
        return {"name": name, "app_port": int(app_port), "inbound_port": int(inbound)}
    except ValueError:
        raise UsageError(f"--app {spec!r}: ports must be integers") from None


def _labels(specs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {spec!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def _write_proxyless_bootstrap(args: argparse.Namespace, metadata: dict[str, Any]) -> int:
    from xds.cli.bootstrap_agent import xds_address
    from xds.translate.proxyless import grpc_bootstrap

    uri = args.xds_uri or "{}:{}".format(*xds_address(args))
    text = grpc_bootstrap(args.id, uri, metadata, args.cert_dir or None)
    if args.output in (None, "-"):
        print(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output} (gRPC xDS bootstrap for {args.id}, xDS {uri}): GRPC_XDS_BOOTSTRAP=<it>")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from xds.bootstrap import BootstrapParams, parse_xds_address, render
    from xds.proxy import ProxyIdentity, ProxyIdentityError

    labels = _labels(args.label)
    apps = [_app_binding(a) for a in args.app]
    for app in apps:
        app["namespace"] = args.namespace
        app["labels"] = labels or {"app": app["name"]}
    metadata: dict[str, Any] = {
        "mode": args.mode,
        "namespace": args.namespace,
        "address": args.address,
        "admin": f"127.0.0.1:{args.admin_port}",
        "outbound_port": args.outbound_port,
        "labels": labels or ({"app": apps[0]["name"]} if apps else {}),
        "apps": apps,
    }
    if args.dapr_http_port:
        metadata["dapr_http_port"] = args.dapr_http_port
    if args.mode == "proxyless":  # a gRPC app: no listeners of its own, so no ports in its metadata
        metadata = {k: metadata[k] for k in ("mode", "namespace", "labels")}
    try:
        ProxyIdentity.from_node(args.id, {"mecha": metadata})  # same checks the server applies
    except ProxyIdentityError as exc:
        raise UsageError(str(exc)) from None
    if args.mode == "proxyless":
        return _write_proxyless_bootstrap(args, metadata)
    from xds.cli.bootstrap_agent import xds_address

    xds_host, xds_port = xds_address(args)
    params = BootstrapParams(
        proxy_id=args.id,
        xds_port=xds_port,
        admin_port=args.admin_port,
        metadata=metadata,
        xds_host=xds_host,
        delta=args.delta,
        xds_addresses=tuple(parse_xds_address(a) for a in getattr(args, "xds", [])),
    )
    text = render(params)
    agent_line = ""
    if getattr(args, "agent_dir", None):  # credential issued by the API; Envoy talks to its agent only
        from xds.cli import bootstrap_agent

        text, agent_line = bootstrap_agent.agent_mode(args, metadata, text)
    if args.output in (None, "-"):
        print(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        # agent mode: Envoy's xDS is the agent's socket; the agent line below names the control plane it dials
        xds = f"its agent's sockets in {args.agent_dir}" if agent_line else f"{xds_host}:{xds_port}"
        print(f"wrote {args.output} (proxy {args.id}, {args.mode} mode, xDS {xds})")
    if agent_line:
        out = sys.stderr if args.output in (None, "-") else sys.stdout  # stdout may be the bootstrap itself
        print(f"run its agent beside Envoy:\n  {agent_line}", file=out)
    return 0


def api_error_lines(exc: ApiError) -> list[str]:
    lines = [f"error: {exc} (HTTP {exc.status})"]
    lines += [diag_line(d) for d in exc.body.get("diagnostics", [])]
    return lines
