"""The demo's Dapr components through a real `mecha up` (mTLS on, the defaults), as docs/quickstart.md says:
ratings' Dapr HTTP API (3500 + --port-offset) saves state, publishes to `pubsub`/`orders` (ratings itself
subscribes: GET /events on the app counts the deliveries, and its log shows them), reads a secret, takes a
lock and reads configuration; the official Dapr Python SDK, given only DAPR_HTTP_PORT / DAPR_GRPC_PORT,
does the same over gRPC. The stores with state are ratings' only (in-memory: one process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mecha_up import MECHA, free_offset, interrupt, read_until, start_up

from xds.demo.config import DEFAULT_PORTS, DEMO_CONFIGURATION, DEMO_SECRETS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("demo-components")
    offset = free_offset()
    proc = start_up(folder, "--port-offset", str(offset))
    try:
        lines = read_until(proc, "Logs: ", 120)  # the summary's last line
        assert any("Mecha is up" in line for line in lines), "\n".join(lines)
        info = json.loads((folder / ".mecha" / "up.json").read_text())
        yield {"folder": folder, "info": info, "offset": offset}
    finally:
        interrupt(proc, 40)


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def dapr(up: dict[str, Any], app: str = "ratings-v1") -> str:
    return str(up["info"]["apps"][app]["dapr"])


def deliveries(up: dict[str, Any]) -> dict[str, Any]:
    status, body = call("GET", up["info"]["apps"]["ratings-v1"]["app"] + "/events")
    assert status == 200, body
    return body


def test_ratings_dapr_api_is_on_the_port_the_docs_name(up: dict[str, Any]) -> None:
    assert dapr(up) == f"http://127.0.0.1:{DEFAULT_PORTS['dapr_http'] + up['offset']}"  # 3500 + offset
    grpc = up["info"]["apps"]["ratings-v1"]["dapr_grpc"]
    assert grpc == f"127.0.0.1:{DEFAULT_PORTS['dapr_grpc'] + up['offset']}"  # 50001 + offset


def test_state_saved_and_read_back(up: dict[str, Any]) -> None:
    order = {"item": "book", "quantity": 2}
    status, body = call("POST", dapr(up) + "/v1.0/state/statestore", [{"key": "order-1", "value": order}])
    assert status == 204, body
    assert call("GET", dapr(up) + "/v1.0/state/statestore/order-1") == (200, order)


def test_published_event_reaches_the_subscribing_app(up: dict[str, Any]) -> None:
    before = deliveries(up)["received"].get("orders", 0)
    out = subprocess.run(
        [*MECHA, "publish", "pubsub", "orders", '{"orderId": 7}'],
        cwd=up["folder"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr  # through the first app's Dapr API: ratings'
    deadline = time.monotonic() + 10
    while (seen := deliveries(up))["received"].get("orders", 0) == before:
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert seen["received"]["orders"] == before + 1, seen
    assert seen["events"][-1]["event"]["data"] == {"orderId": 7}, seen  # a CloudEvent, as Dapr delivers
    log = subprocess.run(
        [*MECHA, "logs", "ratings", "--of", "app"],
        cwd=up["folder"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 'received on topic orders: {"orderId": 7}' in log.stdout, log.stdout


def test_secret_lock_and_configuration(up: dict[str, Any]) -> None:
    assert call("GET", dapr(up) + "/v1.0/secrets/secretstore/greeting") == (
        200,
        {"greeting": DEMO_SECRETS["greeting"]},
    )
    lock = {"resourceId": "order-1", "lockOwner": "alice", "expiryInSeconds": 30}
    assert call("POST", dapr(up) + "/v1.0-alpha1/lock/lockstore", lock) == (200, {"success": True})
    taken = {**lock, "lockOwner": "bob"}
    assert call("POST", dapr(up) + "/v1.0-alpha1/lock/lockstore", taken) == (200, {"success": False})
    released = {"resourceId": "order-1", "lockOwner": "alice"}
    assert call("POST", dapr(up) + "/v1.0-alpha1/unlock/lockstore", released) == (200, {"status": 0})
    status, items = call("GET", dapr(up) + "/v1.0/configuration/configstore?key=theme")
    assert status == 200 and items["theme"]["value"] == DEMO_CONFIGURATION["theme"], items


def test_stateful_stores_are_ratings_only_read_only_ones_everywhere(up: dict[str, Any]) -> None:
    reviews = dapr(up, "reviews-v1")  # reviews runs as two processes: an in-memory store there would split
    status, body = call("GET", reviews + "/v1.0/state/statestore/order-1")
    assert status == 400 and body["errorCode"] == "ERR_STATE_STORE_NOT_CONFIGURED", body  # none there
    assert call("GET", reviews + "/v1.0/secrets/secretstore/greeting")[0] == 200
    assert call("GET", reviews + "/v1.0/configuration/configstore?key=theme")[0] == 200


SDK_SCRIPT = textwrap.dedent(
    """
    import json
    from dapr.clients import DaprClient

    with DaprClient() as d:  # gRPC, at DAPR_GRPC_PORT
        d.save_state("statestore", "sdk-order", json.dumps({"item": "pen"}))
        state = json.loads(d.get_state("statestore", "sdk-order").data)
        order = json.dumps({"orderId": "sdk"})
        d.publish_event("pubsub", "orders", order, data_content_type="application/json")
        secret = dict(d.get_secret("secretstore", "greeting").secret)
        theme = d.get_configuration("configstore", ["theme"]).items["theme"].value
        with d.try_lock("lockstore", "sdk-order", "sdk", expiry_in_seconds=10) as lock:
            locked = lock.success
    print(json.dumps({"state": state, "secret": secret, "theme": theme, "locked": locked}))
    """
)


def test_official_dapr_sdk_with_only_the_demo_ports(up: dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "sdk_client.py"
    script.write_text(SDK_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env |= {
        "DAPR_HTTP_PORT": str(DEFAULT_PORTS["dapr_http"] + up["offset"]),
        "DAPR_GRPC_PORT": str(DEFAULT_PORTS["dapr_grpc"] + up["offset"]),
    }
    before = deliveries(up)["received"].get("orders", 0)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "state": {"item": "pen"},
        "secret": {"greeting": DEMO_SECRETS["greeting"]},
        "theme": DEMO_CONFIGURATION["theme"],
        "locked": True,
    }, result
    deadline = time.monotonic() + 10
    while not sdk_order_delivered(seen := deliveries(up)):
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)
    assert seen["received"]["orders"] > before


def sdk_order_delivered(seen: dict[str, Any]) -> bool:
    return any(e["event"].get("data") == {"orderId": "sdk"} for e in seen["events"])
