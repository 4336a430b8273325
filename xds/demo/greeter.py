"""The demo's gRPC service, for proxyless gRPC (no Envoy): a greeter that answers with its version.

    python -m xds.demo.greeter serve --port 50061 --version v1 [--fail-first]
    GRPC_XDS_BOOTSTRAP=client.json python -m xds.demo.greeter call --target xds:///greeter:50051 -n 100

The method is `/mecha.demo.Greeter/SayHello` with raw bytes (the caller's name in, JSON out), so neither side
needs generated code. `--fail-first` answers UNAVAILABLE to every first attempt (gRPC marks retries with the
`grpc-previous-rpc-attempts` header): a VirtualService retry policy makes those calls succeed.
`call` prints one JSON line: {"versions": {"v1": n, ...}, "errors": {"UNAVAILABLE": n, ...}}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import grpc

METHOD = "/mecha.demo.Greeter/SayHello"
SERVICE, NAME = "mecha.demo.Greeter", "SayHello"


async def serve(port: int, version: str, fail_first: bool, host: str = "127.0.0.1") -> None:
    async def say_hello(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        if fail_first and "grpc-previous-rpc-attempts" not in metadata:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "first attempt refused (--fail-first)")
        name = request.decode(errors="replace") or "world"
        return json.dumps({"version": version, "message": f"hello {name}"}).encode()

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
    deadline = time.monotonic() + within
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(METHOD)
        done = 0
        while done < count or until:
            try:
                body = stub(b"mesh", metadata=tuple(headers.items()), timeout=10, wait_for_ready=True)
                version = json.loads(body)["version"]
                versions[version] += 1
                if until and version == until:
                    break
            except grpc.RpcError as exc:
                errors[exc.code().name] += 1
            done += 1
            if time.monotonic() > deadline:
                break
            if until:
                time.sleep(0.05)
    return {"versions": dict(versions), "errors": dict(errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xds.demo.greeter")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run one greeter version")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--version", default="v1")
    s.add_argument("--fail-first", action="store_true", help="refuse every first attempt (UNAVAILABLE)")
    c = sub.add_parser("call", help="call through gRPC's xDS client (GRPC_XDS_BOOTSTRAP)")
    c.add_argument("--target", required=True, help="xds:///host:port")
    c.add_argument("-n", "--count", type=int, default=1)
    c.add_argument("--header", action="append", default=[], help="KEY=VALUE request metadata (repeatable)")
    c.add_argument("--until-version", default="", help="call until this version answers (a live change)")
    c.add_argument("--within", type=float, default=60.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            asyncio.run(serve(args.port, args.version, args.fail_first))
        except KeyboardInterrupt:
            pass
        return 0
    headers = dict(h.split("=", 1) for h in args.header)
    print(json.dumps(call(args.target, args.count, headers, args.until_version, args.within)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
