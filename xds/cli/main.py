"""`mecha`: run the control plane, push config to it, inspect proxies, run the demo mesh."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only light modules here: every command pays for these imports, `mecha --help` included (a test checks
# that grpc, aiohttp, networkx, envoy_data_plane and cryptography stay out); heavy ones load in handlers.
from xds.cli import (
    analyze,
    apps,
    bootstrap_agent,
    commands,
    dashboard,
    get,
    identity,
    keys,
    kube_import,
    options,
    run,
    store,
    version,
)
from xds.cli.client import SERVER_HELP, ApiError, ServerUnavailable
from xds.controlplane.settings import DEFAULT_API_PORT, DEFAULT_XDS_PORT
from xds.statedir import ENV_TOKEN

ENV_ALLOWED_HOSTS = "MECHA_ALLOWED_HOSTS"  # = xds.controlplane.auth's (that module imports aiohttp)

EXPECTED_VERSION_HELP = "refuse (exit 1) unless the config is at this version (GET /api/v1/config)"
STRICT_HELP = "refuse routes to hosts/subsets/ports that do not exist (istiod accepts; also MECHA_STRICT=1)"


def _add_server(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        default=None,
        help=SERVER_HELP,
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"API token (default ${ENV_TOKEN}, else api-token in $MECHA_STATE_DIR or the nearest .mecha/)",
    )


def _add_files(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", action="append", required=True, help="YAML file or folder (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mecha", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the control plane (xDS gRPC + HTTP API)")
    serve.add_argument("--host", default="127.0.0.1", help="address for both the API and xDS")
    serve.add_argument("--port", type=int, default=DEFAULT_API_PORT, help="HTTP API port")
    serve.add_argument("--xds-port", type=int, default=DEFAULT_XDS_PORT, help="xDS gRPC port")
    serve.add_argument("--config", action="append", default=[], help="config folder, loaded and watched")
    serve.add_argument("--no-watch", action="store_true", help="load --config once, do not watch it")
    serve.add_argument("--watch-interval", type=float, default=None, help="seconds between folder polls")
    serve.add_argument("--debounce-after", type=float, default=None, help="quiet period before a push (s)")
    serve.add_argument("--debounce-max", type=float, default=None, help="longest delay under churn (s)")
    serve.add_argument("--push-throttle", type=int, default=None, help="max concurrent per-proxy pushes")
    serve.add_argument(
        "--route-tables",
        choices=["auto", "single", "scoped"],
        default=None,
        help="outbound routing: one table, one per service (SRDS), or auto (per service from 100 services)",
    )
    serve.add_argument(
        "--state-dir",
        default=None,
        help="config store, API token, CA root (default $MECHA_STATE_DIR or ./.mecha; made 0700)",
    )
    serve.add_argument(
        "--store",
        default=None,
        help="postgresql://user@host/db?sslmode=...: a store shared by replicas (default $MECHA_STORE, "
        "else SQLite in the state folder)",
    )
    serve.add_argument(
        "--insecure-xds",
        action="store_true",
        help="plaintext xDS without workload credentials (transition only; also MECHA_INSECURE_XDS=1)",
    )
    serve.add_argument(
        "--no-mtls",
        action="store_true",
        help="a mesh without a CA: no workload certificates, config that needs them is refused "
        "(also MECHA_MTLS=0)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        help=f"another name the API answers to in the Host header (repeatable; also ${ENV_ALLOWED_HOSTS})",
    )

    p = sub.add_parser("apply", help="apply config (all-or-nothing)")
    _add_files(p)
    p.add_argument("--dry-run", action="store_true", help="show per-proxy Envoy changes, apply nothing")
    p.add_argument("--expected-version", type=int, default=None, help=EXPECTED_VERSION_HELP)
    p.add_argument("--address-map", default=None, help=kube_import.ADDRESS_MAP_HELP + " (converts locally)")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    _add_server(p)
    p = sub.add_parser("diff", help="= apply --dry-run: what each proxy would get, diffed per resource")
    _add_files(p)
    p.add_argument(
        "-o",
        "--output",
        choices=["text", "yaml", "json"],
        default="text",
        help="text: a table and a unified diff (YAML) of each changed resource; yaml/json: the whole outcome",
    )
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    _add_server(p)
    p = sub.add_parser("delete", help="delete the documents named in the files")
    _add_files(p)
    p.add_argument("--expected-version", type=int, default=None, help=EXPECTED_VERSION_HELP)
    _add_server(p)
    p = sub.add_parser("validate", help="compile config offline (no server)")
    _add_files(p)
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    analyze.add_parser(sub)
    kube_import.add_parser(sub)
    identity.add_parsers(sub, _add_server)  # credential issue|revoke, agent
    keys.add_parser(sub)  # keys init: what replicas share, made beforehand
    store.add_parsers(sub, _add_server)  # history, rollback, store migrate
    dashboard.add_parser(sub, _add_server)
    get.add_parser(sub, _add_server)  # get: Gateway API objects with status, as kubectl shows them

    p = sub.add_parser("proxy-status", help="xDS sync state of every connected proxy")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    _add_server(p)
    p = sub.add_parser("proxy-config", help="what a proxy's Envoy actually runs (from its admin API)")
    p.add_argument("proxy", help="proxy id, as `mecha proxy-status` lists it")
    p.add_argument("section", choices=["clusters", "listeners", "routes", "endpoints"], help="what to show")
    p.add_argument("-o", "--output", choices=["short", "json"], default="short", help="output format")
    _add_server(p)

    p = sub.add_parser(
        "bootstrap", help="write an Envoy bootstrap (envoy/bootstrap.yaml), or a gRPC one (--mode proxyless)"
    )
    p.add_argument("--id", required=True, help="unique proxy id (node.id)")
    p.add_argument(
        "--mode",
        choices=["sidecar", "node", "gateway", "proxyless"],
        default="sidecar",
        help="proxyless: GRPC_XDS_BOOTSTRAP JSON for a gRPC app's own xDS client (no Envoy)",
    )
    p.add_argument(
        "--xds-uri", default="", help="proxyless: xDS server URI, e.g. the agent's unix:///…/xds.sock"
    )
    p.add_argument("--cert-dir", default="", help="proxyless: the agent's certificate folder (mTLS)")
    p.add_argument("--app", action="append", default=[], help="NAME:APP_PORT:INBOUND_PORT (repeatable)")
    p.add_argument("--namespace", default="default", help="the workload's namespace")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE workload label (repeatable)")
    p.add_argument("--address", default="127.0.0.1", help="where other proxies reach this one")
    p.add_argument("--admin-port", type=int, default=15000, help="Envoy's admin API port")
    p.add_argument("--outbound-port", type=int, default=15001, help="the app's outbound listener port")
    p.add_argument("--dapr-http-port", type=int, default=0, help="Dapr HTTP listener port (0: none)")
    # None, not the default itself: an explicit --xds-port 15012 beside `mecha up --port-offset N` is kept
    running = "default: with --agent-dir the running `mecha up`'s (its up.json), else"
    p.add_argument("--xds-host", default=None, help=f"control plane's xDS address ({running} 127.0.0.1)")
    p.add_argument(
        "--xds-port", type=int, default=None, help=f"control plane's xDS port ({running} {DEFAULT_XDS_PORT})"
    )
    p.add_argument(
        "--xds",
        action="append",
        default=[],
        help="HOST:PORT of a control-plane replica (repeatable: one xDS cluster, one endpoint each)",
    )
    p.add_argument("--delta", action="store_true", help="use delta xDS (DELTA_GRPC)")
    p.add_argument("-o", "--output", default=None, help="output file (default stdout)")
    p.add_argument("--agent-dir", default=None, help=bootstrap_agent.AGENT_DIR_HELP)
    p.add_argument(
        "--credential-ttl", type=float, default=365 * 86400, help="--agent-dir: credential lifetime (s)"
    )
    _add_server(p)  # --agent-dir: the API that issues the credential

    p = sub.add_parser("up", help="run the control plane, demo apps and Envoys on this machine")
    p.add_argument(
        "--mode", choices=["sidecar", "node"], default="sidecar", help="an Envoy per app, or one per machine"
    )
    p.add_argument(
        "--demo", action="store_true", help="use the embedded demo config (default without --config)"
    )
    p.add_argument(
        "--config",
        action="append",
        default=None,
        help="your config folder (watched) instead of the demo's; repeatable (e.g. mesh + endpoints)",
    )
    p.add_argument("--delta", action="store_true", help="proxies use delta xDS")
    p.add_argument("--port-offset", type=int, default=0, help="shift every default port by N")
    p.add_argument("--state-dir", default=".mecha", help="logs, pid file, bootstraps (default ./.mecha)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for everything to be ready")
    p.add_argument("--no-mtls", action="store_true", help="a mesh without a CA (plaintext; MECHA_MTLS=0)")
    p = sub.add_parser("down", help="stop a running `mecha up` (from its pid file)")
    p.add_argument("--state-dir", default=".mecha", help="the state folder of the `mecha up` to stop")
    version.add_parser(sub, _add_server)
    apps.add_parsers(sub)  # list, logs, invoke, publish
    run.add_parser(sub)  # run: your app with its sidecar in the mesh
    return options.finish(parser)  # defaults and an example in every --help; --log-level after the command


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from xds.controlplane.serve import StartupError, serve
    from xds.controlplane.settings import Settings

    for folder in args.config:
        if not Path(folder).is_dir():
            raise commands.UsageError(f"--config {folder}: no such folder")
    settings = Settings.from_env(
        api_host=args.host,
        api_port=args.port,
        xds_host=args.host,
        xds_port=args.xds_port,
        config_dirs=[Path(c).resolve() for c in args.config],
        watch=not args.no_watch,
        watch_interval=args.watch_interval,
        debounce_after=args.debounce_after,
        debounce_max=args.debounce_max,
        max_concurrent_pushes=args.push_throttle,
        route_tables=args.route_tables,
        state_dir=Path(args.state_dir).resolve() if args.state_dir else None,
        insecure_xds=True if args.insecure_xds else None,
        mtls=False if args.no_mtls else None,
        allowed_hosts=args.allowed_host or None,
        store=args.store,
    )
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"mecha serve: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "serve": _serve,
        "apply": commands.cmd_apply,
        "diff": commands.cmd_diff,
        "delete": commands.cmd_delete,
        "validate": commands.cmd_validate,
        "analyze": analyze.cmd_analyze,
        "import": kube_import.cmd_import,
        "proxy-status": commands.cmd_proxy_status,
        "proxy-config": commands.cmd_proxy_config,
        "bootstrap": commands.cmd_bootstrap,
        "credential": identity.cmd_credential,
        "agent": identity.cmd_agent,
        "keys": keys.cmd_keys,
        "history": store.cmd_history,
        "rollback": store.cmd_rollback,
        "store": store.cmd_store,
        "dashboard": dashboard.cmd_dashboard,
        "get": get.cmd_get,
        "version": version.cmd_version,
        "list": apps.cmd_list,
        "logs": apps.cmd_logs,
        "invoke": apps.cmd_invoke,
        "publish": apps.cmd_publish,
    }
    try:
        if args.command == "run":  # its processes' imports (agent, runner) load only for `mecha run`
            from xds.cli import run_sidecar

            return run_sidecar.cmd_run(args)
        if args.command in ("up", "down"):
            from xds.runner import up

            return up.run_up(args) if args.command == "up" else up.run_down(args)
        code = handlers[args.command](args)
        sys.stdout.flush()  # a closed pipe (`| head`) shows here, inside the handler below
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as a process killed by SIGPIPE: `mecha proxy-status | head` ends without a traceback
    except ServerUnavailable as exc:
        print(f"mecha {args.command}: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print("\n".join(commands.api_error_lines(exc)), file=sys.stderr)
        return 1
    except kube_import.ImportRefused as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (
        commands.UsageError,
        identity.IdentityUsageError,
        kube_import.ImportUsageError,
        apps.AppsError,
    ) as exc:
        print(f"mecha {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. a bad MECHA_* environment variable
        print(f"mecha {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _quiet_stdout() -> None:
    """The reader went away: point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
