"""The demo's gRPC service, for proxyless gRPC (no Envoy): a greeter that answers with its version.

    python -m xds.demo.greeter serve --port 50061 --version v1 [--fail-first]
    GRPC_XDS_BOOTSTRAP=server.json python -m xds.demo.greeter serve --xds --port 50061   # proxyless server
    GRPC_XDS_BOOTSTRAP=client.json python -m xds.demo.greeter call --target xds:///greeter:50051 -n 100

The method is `/mecha.demo.Greeter/SayHello` with raw bytes (the caller's name in, JSON out), so neither side
needs generated code. `--fail-first` answers UNAVAILABLE to every first attempt (gRPC marks retries with the
`grpc-previous-rpc-attempts` header): a VirtualService retry policy makes those calls succeed.
`call` prints one JSON line: {"versions": {"v1": n, ...}, "errors": {"UNAVAILABLE": n, ...}, "peers": [...]}.
`serve --xds` is gRPC's xDS server (its listener, mTLS and RBAC come from the control plane) on 0.0.0.0; each
answer names the caller's SPIFFE identities (the TLS peer's URI SANs), which `call` collects under "peers".
An `xds:///` target uses gRPC's xDS channel credentials (the cluster's mTLS), any other target plaintext.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.experimental

METHOD = "/mecha.demo.Greeter/SayHello"
SERVICE, NAME = "mecha.demo.Greeter", "SayHello"


def _answer(request: bytes, version: str, auth: dict[str, list[bytes]]) -> bytes:
    name = request.decode(errors="replace") or "world"
    sans = [v.decode() for v in auth.get("x509_subject_alternative_name", [])]
    peer = [s for s in sans if s.startswith("spiffe://")]
    return json.dumps({"version": version, "message": f"hello {name}", "peer": peer}).encode()


def _first_attempt(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> bool:
    return "grpc-previous-rpc-attempts" not in dict(context.invocation_metadata() or ())


def serve_xds(port: int, version: str, fail_first: bool) -> None:
    """gRPC's xDS server (grpc.server(xds=True): grpcio has no asyncio one); serves once its listener came."""

    def say_hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        if fail_first and _first_attempt(context):
            context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt refused (--fail-first)")
        return _answer(request, version, context.auth_context())

    server = grpc.server(ThreadPoolExecutor(max_workers=8), xds=True)
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {NAME: grpc.unary_unary_rpc_method_handler(say_hello)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    if server.add_secure_port(f"0.0.0.0:{port}", credentials) == 0:
        raise OSError(f"greeter: cannot listen on 0.0.0.0:{port}")
    server.start()
    print(f"greeter {version} listening on 0.0.0.0:{port} (xDS server)", flush=True)
    server.wait_for_termination()


async def serve(port: int, version: str, fail_first: bool, host: str = "127.0.0.1") -> None:
    async def say_hello(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if fail_first and _first_attempt(context):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt refused (--fail-first)")
        return _answer(request, version, context.auth_context())

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {NAME: grpc.unary_unary_rpc_method_handler(say_hello)}
    )
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"greeter: cannot listen on {host}:{port}")
    await server.start()
    print(f"greeter {version} listening on {host}:{port}", flush=True)
    await server.wait_for_termination()


def call(target: str, count: int, headers: dict[str, str], until: str, within: float) -> dict[str, Any]:
    """`count` calls (or, with `until`, calls until one answers that version); versions and errors seen."""
    versions: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    peers: set[str] = set()
    deadline = time.monotonic() + within
    if target.startswith("xds:"):  # the cluster's mTLS (file_watcher certificates), plaintext where none
        fallback = grpc.experimental.insecure_channel_credentials()
        channel = grpc.secure_channel(target, grpc.xds_channel_credentials(fallback))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = channel.unary_unary(METHOD)
        done = 0
        while done < count or until:
            try:
                body = stub(b"mesh", metadata=tuple(headers.items()), timeout=10, wait_for_ready=True)
                answer = json.loads(body)
                version = answer["version"]
                versions[version] += 1
                peers.update(answer.get("peer", []))
                if until and version == until:
                    break
            except grpc.RpcError as exc:
                errors[exc.code().name] += 1
            done += 1
            if time.monotonic() > deadline:
                break
            if until:
                time.sleep(0.05)
    return {"versions": dict(versions), "errors": dict(errors), "peers": sorted(peers)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo.greeter")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run one greeter version")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--version", default="v1")
    s.add_argument("--fail-first", action="store_true", help="refuse every first attempt (UNAVAILABLE)")
    s.add_argument("--xds", action="store_true", help="gRPC's xDS server on 0.0.0.0 (GRPC_XDS_BOOTSTRAP)")
    c = sub.add_parser("call", help="call through gRPC's xDS client (GRPC_XDS_BOOTSTRAP)")
    c.add_argument("--target", required=True, help="xds:///host:port")
    c.add_argument("-n", "--count", type=int, default=1)
    c.add_argument("--header", action="append", default=[], help="KEY=VALUE request metadata (repeatable)")
    c.add_argument("--until-version", default="", help="call until this version answers (a live change)")
    c.add_argument("--within", type=float, default=60.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            if args.xds:
                serve_xds(args.port, args.version, args.fail_first)
            else:
                asyncio.run(serve(args.port, args.version, args.fail_first))
        except KeyboardInterrupt:
            pass
        return 0
    headers = dict(h.split("=", 1) for h in args.header)
    print(json.dumps(call(args.target, args.count, headers, args.until_version, args.within)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
