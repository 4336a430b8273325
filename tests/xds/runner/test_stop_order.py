"""Supervisor stop order with a real Envoy: drain -> wait -> stop. The capability service is told first
(SIGTERM: it reports DRAINING and stops pulling), the Envoy drains its listeners through its loopback admin
(connections are told to close) and keeps serving in-flight requests; only then is it stopped."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import aiohttp

from xds.runner.procs import Child, Supervisor, pid_alive
from xds.testing.envoy import envoy_binary, free_port

BOOTSTRAP = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}
          stat_prefix: inbound
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - {{match: {{prefix: /}}, direct_response: {{status: 200, body: {{inline_string: ok}}}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"""

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
# stands in for the capability service: notes its SIGTERM, exits a little later (it reports draining)
CAPABILITIES = textwrap.dedent(
    """
    import signal, sys, time
    def term(*_):
        open(sys.argv[1], "w").write("terminated")
        time.sleep(0.2)
        sys.exit(0)
    signal.signal(signal.SIGTERM, term)
    while True:
        time.sleep(1)
    """
)


async def test_capabilities_then_envoy_drain_then_stop(tmp_path: Path) -> None:
    admin, port = free_port(), free_port()
    config = tmp_path / "envoy.yaml"
    config.write_text(BOOTSTRAP.format(admin=admin, port=port, hcm=HCM))
    marker = tmp_path / "capabilities-terminated"
    sup = Supervisor()
    argv = [envoy_binary(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
            "--base-id", str(admin), "--drain-time-s", "5", "--drain-strategy", "immediate"]  # fmt: skip
    envoy = await sup.start(
        Child("envoy-a", "envoy", argv, tmp_path / "envoy.out", admin=f"127.0.0.1:{admin}")
    )
    caps = await sup.start(
        Child(
            "capabilities-a",
            "capabilities",
            [sys.executable, "-c", CAPABILITIES, str(marker)],
            tmp_path / "c.log",
        )
    )
    app = await sup.start(Child("app-a", "app", ["sleep", "60"], tmp_path / "app.log"))
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"http://127.0.0.1:{admin}/ready") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200 and resp.headers.get("Connection", "").lower() != "close"

        stopping = asyncio.create_task(sup.stop_all(grace=5.0, drain_s=1.5))
        for _ in range(200):
            if marker.exists():
                break
            await asyncio.sleep(0.02)
        assert marker.exists(), "the capability service is told first"
        # draining, not stopped: the Envoy still answers, and tells each connection to close after it
        assert pid_alive(envoy.pid) and pid_alive(app.pid)  # type: ignore[arg-type]
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200 and await resp.text() == "ok"
            assert resp.headers.get("Connection", "").lower() == "close"
        async with http.get(
            f"http://127.0.0.1:{admin}/stats?filter=inbound.downstream_cx_drain_close"
        ) as resp:
            assert "downstream_cx_drain_close: 0" not in await resp.text()
        await stopping
    assert caps.exited == 0
    for child in (envoy, caps, app):
        assert not pid_alive(child.pid)  # type: ignore[arg-type]
