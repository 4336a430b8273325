"""A test-only app for the Dapr end-to-end tests (run as `python dapr_testapp.py NAME --port P`).

* /echo/<tail>        any verb: {app, method, path, query, headers, body} (invoke checks)
* /status/<code>      answers that HTTP status (status passthrough)
* /fail?n=N&key=K[&code=C]  the first N requests with key K answer C (default 503; mesh retries)
* /slow?ms=M          answers 200 after M ms (timeouts)
* GET /dapr/subscribe the programmatic subscriptions in env TESTAPP_SUBSCRIPTIONS (JSON list)
* POST /deliver/<route>  records a pub/sub delivery; the event's data steers the answer:
      {"fail": N}  the first N deliveries of this event id answer 500 (redelivery)
      {"poison": true}  always 500 (dead-letter); {"sleep_ms": M} answer after M ms
  (route `dlq` takes every event)
* GET /received       every recorded delivery: {route, id, data, attempt}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import Counter

from aiohttp import web

NAME = web.AppKey("name", str)
RECEIVED = web.AppKey("received", list)
ATTEMPTS = web.AppKey("attempts", Counter)


async def echo(request: web.Request) -> web.Response:
    body = await request.text()
    return web.json_response(
        {
            "app": request.app[NAME],
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": dict(request.headers),
            "body": body,
        },
        headers={"x-testapp": request.app[NAME]},
    )


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.json_response({"app": request.app[NAME], "status": code}, status=code)


async def fail(request: web.Request) -> web.Response:
    key = "fail:" + request.query.get("key", "")
    request.app[ATTEMPTS][key] += 1
    attempt = request.app[ATTEMPTS][key]
    code = int(request.query.get("code", "503")) if attempt <= int(request.query.get("n", "1")) else 200
    return web.json_response({"app": request.app[NAME], "attempt": attempt}, status=code)


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "0")) / 1000)
    return web.json_response({"app": request.app[NAME], "slept_ms": int(request.query.get("ms", "0"))})


async def subscribe(_request: web.Request) -> web.Response:
    return web.json_response(json.loads(os.environ.get("TESTAPP_SUBSCRIPTIONS", "[]")))


async def deliver(request: web.Request) -> web.Response:
    event = await request.json()
    data = event.get("data")
    event_id = str(event.get("id"))
    request.app[ATTEMPTS][event_id] += 1
    attempt = request.app[ATTEMPTS][event_id]
    # the dead-letter route takes everything: that is where poison messages are inspected
    steer = data if isinstance(data, dict) and request.match_info["route"] != "dlq" else {}
    if steer.get("sleep_ms"):
        await asyncio.sleep(int(steer["sleep_ms"]) / 1000)
    record = {"route": request.match_info["route"], "id": event_id, "data": data, "attempt": attempt}
    record["topic"] = event.get("topic")
    record["source"] = event.get("source")  # the publishing app id
    if steer.get("poison") or attempt <= int(steer.get("fail", 0)):
        record["answered"] = 500
        request.app[RECEIVED].append(record)
        return web.json_response({"status": "RETRY"}, status=500)
    record["answered"] = 200
    request.app[RECEIVED].append(record)
    return web.json_response({"status": "SUCCESS"})


async def received(request: web.Request) -> web.Response:
    return web.json_response(request.app[RECEIVED])


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(name: str) -> web.Application:
    app = web.Application()
    app[NAME], app[RECEIVED], app[ATTEMPTS] = name, [], Counter()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_post("/deliver/{route}", deliver)
    app.router.add_get("/received", received)
    app.router.add_route("*", "/status/{code:\\d+}", status)
    app.router.add_route("*", "/fail", fail)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/echo{tail:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.name), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
