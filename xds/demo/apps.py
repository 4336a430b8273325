"""The demo services. Every answer is JSON naming the app and version, so tests can count who answered.

reviews behaviours (used by the retry/timeout tests and the README examples):
  /fail?n=N&key=K   the first N requests carrying key K answer 503, later ones 200 (with "attempt")
  x-demo-fail: N    same, keyed by the x-demo-key header (or the path when absent)
  /slow?ms=M        answer after M milliseconds
  /attempts?key=K   how many requests key K has seen so far
every app: POST /events/<topic> records a pub/sub delivery (Subscription route) and logs a line,
GET /events shows the last ones and the count per topic (the demo's ratings subscribes to pubsub/orders)
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

# Headers worth propagating from productpage to reviews (Istio's bookinfo forwards the same kind).
_PROPAGATE = (
    *("end-user", "x-request-id", "x-demo-fail", "x-demo-key", "x-b3-traceid"),
    *("traceparent", "tracestate"),  # W3C trace context (mesh tracing, docs/operations.md#tracing)
)
APP_NAME = web.AppKey("app_name", str)
VERSION = web.AppKey("version", str)
PROXY = web.AppKey("proxy", str)
ATTEMPTS: web.AppKey[Counter[str]] = web.AppKey("attempts", Counter)
SESSION = web.AppKey("session", ClientSession)
EVENTS: web.AppKey[deque[dict[str, Any]]] = web.AppKey("events", deque)
RECEIVED: web.AppKey[Counter[str]] = web.AppKey("received", Counter)
KEPT_EVENTS = 100  # the last deliveries GET /events shows: a long-running demo must not grow without end


def _identity(request: web.Request) -> dict[str, object]:
    app = request.app
    # raw_path: the path as received (path_qs re-encodes it and drops a leading "//"): what the app is given
    return {"app": app[APP_NAME], "version": app[VERSION], "pid": os.getpid(), "raw_path": request.raw_path}


async def record_event(request: web.Request) -> web.Response:
    """Pub/sub delivery from the capability service (a Subscription routing to /events/<topic>)."""
    try:
        event = await request.json()
    except ValueError:
        event = await request.text()
    trace = request.headers.get("traceparent", "")  # the delivery span's, when tracing is on
    topic = request.match_info["topic"]
    request.app[EVENTS].append({"topic": topic, "event": event, "traceparent": trace})
    request.app[RECEIVED][topic] += 1
    data = event.get("data", event) if isinstance(event, dict) else event  # a CloudEvent's payload
    shown = json.dumps(data)[:200]
    count = request.app[RECEIVED][topic]
    print(f"{request.app[APP_NAME]}: received on topic {topic}: {shown} ({count} so far)", flush=True)
    return web.json_response({"status": "SUCCESS"})


async def list_events(request: web.Request) -> web.Response:
    held, received = request.app[EVENTS], request.app[RECEIVED]  # typed here: not inside list()/dict()
    return web.json_response({**_identity(request), "received": dict(received), "events": list(held)})


async def no_subscriptions(_request: web.Request) -> web.Response:
    return web.json_response([])  # subscriptions come from Subscription documents, not from the app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", **_identity(request)})


async def _call_through_proxy(request: web.Request, host: str, path: str) -> dict[str, object]:
    """Call another mesh service via this app's own proxy outbound listener; Host picks the service."""
    proxy = request.app[PROXY]
    if not proxy:
        return {"error": "no --proxy given: this app cannot reach the mesh"}
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PROPAGATE}
    headers["Host"] = host
    try:
        async with request.app[SESSION].get(f"http://{proxy}{path}", headers=headers) as resp:
            body = await resp.text()
            try:
                parsed: object = json.loads(body)
            except ValueError:
                parsed = body
            return {"status": resp.status, "body": parsed}
    except (ClientError, TimeoutError) as exc:
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}"}


async def productpage(request: web.Request) -> web.Response:
    tail = request.match_info.get("tail", "")
    # /productpage (or /) shows the reviews page; any other path is passed on to reviews as is
    path = "/reviews" if tail in ("", "productpage") else "/" + tail
    reviews = await _call_through_proxy(
        request, "reviews", path + (f"?{request.query_string}" if request.query_string else "")
    )
    return web.json_response({**_identity(request), "reviews": reviews})


def _attempt(request: web.Request, key: str) -> int:
    counter = request.app[ATTEMPTS]
    counter[key] += 1
    return counter[key]


def _echo(request: web.Request, **extra: object) -> dict[str, object]:
    return {**_identity(request), "path": request.path_qs, "headers": dict(request.headers), **extra}


async def reviews(request: web.Request) -> web.Response:
    fail_n = request.query.get("n") if request.path == "/fail" else request.headers.get("x-demo-fail")
    if fail_n is not None:
        key = request.query.get("key") or request.headers.get("x-demo-key") or request.path
        attempt = _attempt(request, key)
        if attempt <= int(fail_n):
            return web.json_response(_echo(request, attempt=attempt, failed=True), status=503)
        return web.json_response(_echo(request, attempt=attempt))
    if request.path == "/slow":
        await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    if request.path == "/attempts":
        key = request.query.get("key", "")
        return web.json_response({**_identity(request), "key": key, "attempts": request.app[ATTEMPTS][key]})
    extra: dict[str, object] = {}
    if request.app[VERSION] == "v2" and request.path == "/reviews":
        extra["ratings"] = await _call_through_proxy(request, "ratings", "/ratings")
    return web.json_response(_echo(request, **extra))


async def ratings(request: web.Request) -> web.Response:
    return web.json_response({**_identity(request), "stars": 5 if request.app[VERSION] != "v2" else 4})


APPS: dict[str, Callable[[web.Request], object]] = {
    "productpage": productpage,
    "reviews": reviews,
    "ratings": ratings,
}


async def _session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    app[SESSION] = ClientSession(timeout=ClientTimeout(total=10))
    yield
    await app[SESSION].close()


def make_app(name: str, version: str = "v1", proxy: str = "") -> web.Application:
    if name not in APPS:
        raise ValueError(f"unknown demo app {name!r}; choose one of {', '.join(sorted(APPS))}")
    app = web.Application()
    app[APP_NAME], app[VERSION], app[PROXY], app[ATTEMPTS] = name, version, proxy, Counter()
    app.cleanup_ctx.append(_session_ctx)
    app[EVENTS], app[RECEIVED] = deque(maxlen=KEPT_EVENTS), Counter()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/dapr/subscribe", no_subscriptions)
    app.router.add_post("/events/{topic}", record_event)
    app.router.add_get("/events", list_events)
    handler = APPS[name]
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    return app
