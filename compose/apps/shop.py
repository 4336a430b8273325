"""Demo apps that use the Dapr API of their sidecar (or node) proxy: `orders` and `inventory`.

    python shop.py orders    --port 9080 --dapr http://127.0.0.1:3500
    python shop.py inventory --port 9080 --dapr http://127.0.0.1:3500

orders:    POST /orders {"id", "item", "quantity"} saves the order in state store `statestore` (Redis) and
           publishes it on pubsub/orders (Redis); GET /orders/{id} reads it back.
inventory: receives orders (Subscription orders-to-inventory -> POST /events/orders) and keeps the stock of
           each item in state store `inventory-store` (PostgreSQL); GET /stock/{item}.

The apps know only the Dapr HTTP API at --dapr (the proxy's Dapr listener); component names are flags.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

INITIAL_STOCK = 100
DAPR = web.AppKey("dapr", str)
SESSION = web.AppKey("session", ClientSession)
NAMES = web.AppKey("names", dict)


class DaprError(RuntimeError):
    pass


async def _dapr(app: web.Application, method: str, path: str, body: Any = None) -> Any:
    async with app[SESSION].request(method, app[DAPR] + path, json=body) as resp:
        text = await resp.text()
        if resp.status >= 300:
            raise DaprError(f"{method} {path}: HTTP {resp.status} {text[:300]}")
        return await resp.json(content_type=None) if text else None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "app": request.app[NAMES]["app"]})


async def create_order(request: web.Request) -> web.Response:
    try:
        order = await request.json()
        order_id, item = str(order["id"]), str(order["item"])
        quantity = int(order.get("quantity", 1))
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "body must be JSON {id, item, quantity}"}, status=400)
    record = {"id": order_id, "item": item, "quantity": quantity}
    names = request.app[NAMES]
    try:
        await _dapr(
            request.app, "POST", f"/v1.0/state/{names['store']}", [{"key": order_id, "value": record}]
        )
        await _dapr(request.app, "POST", f"/v1.0/publish/{names['pubsub']}/{names['topic']}", record)
    except DaprError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(record, status=201)


async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["id"]
    try:
        record = await _dapr(request.app, "GET", f"/v1.0/state/{request.app[NAMES]['store']}/{order_id}")
    except DaprError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    if record is None:
        return web.json_response({"error": f"no order {order_id}"}, status=404)
    return web.json_response(record)


async def _stock(app: web.Application, item: str) -> int:
    value = await _dapr(app, "GET", f"/v1.0/state/{app[NAMES]['store']}/stock-{item}")
    return INITIAL_STOCK if value is None else int(value)


async def on_order(request: web.Request) -> web.Response:
    """CloudEvent from the capability service; the order is in `data`. Redelivery is idempotent."""
    event = await request.json()
    order = event.get("data", event) if isinstance(event, dict) else {}
    app, store = request.app, request.app[NAMES]["store"]
    try:
        order_id, item, quantity = str(order["id"]), str(order["item"]), int(order.get("quantity", 1))
        if await _dapr(app, "GET", f"/v1.0/state/{store}/seen-{order_id}") is not None:
            return web.json_response({"status": "SUCCESS"})
        stock = await _stock(app, item) - quantity
        await _dapr(
            app,
            "POST",
            f"/v1.0/state/{store}",
            [{"key": f"stock-{item}", "value": stock}, {"key": f"seen-{order_id}", "value": True}],
        )
    except (KeyError, TypeError, ValueError):
        return web.json_response({"status": "DROP"})  # not an order: do not redeliver
    except DaprError:
        return web.json_response({"status": "RETRY"})
    return web.json_response({"status": "SUCCESS"})


async def get_stock(request: web.Request) -> web.Response:
    item = request.match_info["item"]
    try:
        return web.json_response({"item": item, "stock": await _stock(request.app, item)})
    except DaprError as exc:
        return web.json_response({"error": str(exc)}, status=502)


async def no_programmatic_subscriptions(_request: web.Request) -> web.Response:
    return web.json_response([])  # subscriptions are declared in the mesh config (Subscription)


async def _session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    app[SESSION] = ClientSession(timeout=ClientTimeout(total=10))
    yield
    await app[SESSION].close()


def make_app(
    name: str, dapr: str, store: str, pubsub: str = "pubsub", topic: str = "orders"
) -> web.Application:
    app = web.Application()
    app[DAPR] = dapr.rstrip("/")
    app[NAMES] = {"app": name, "store": store, "pubsub": pubsub, "topic": topic}
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/dapr/subscribe", no_programmatic_subscriptions)
    if name == "orders":
        app.router.add_post("/orders", create_order)
        app.router.add_get("/orders/{id}", get_order)
    else:
        app.router.add_post("/events/orders", on_order)
        app.router.add_get("/stock/{item}", get_stock)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shop.py", description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=["orders", "inventory"])
    parser.add_argument("--port", type=int, default=9080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dapr", default="http://127.0.0.1:3500", help="Dapr HTTP API base URL")
    parser.add_argument(
        "--store", default=None, help="state store (orders: statestore, inventory: inventory-store)"
    )
    args = parser.parse_args(argv)
    store = args.store or ("statestore" if args.app == "orders" else "inventory-store")
    try:
        web.run_app(
            make_app(args.app, args.dapr, store),
            host=args.host,
            port=args.port,
            print=lambda *_: print(f"{args.app} listening on {args.host}:{args.port}", flush=True),
            access_log=None,
        )
    except OSError as exc:
        print(f"{args.app}: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
