"""A capability service whose credential is shared by scaled replicas names its own instance in health and
drain reports (the node id its embedded agent gives the Envoy beside it)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from capabilities.apphealth import WorkloadReporter
from xds.identity.credential import CredentialIssuer, instance_label


async def test_reports_name_the_instance_only_for_instance_credentials(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"changed": True})

    app = web.Application()
    app.router.add_post("/api/v1/workloads/health", handle)
    server = TestServer(app)
    await server.start_server()
    issuer = CredentialIssuer.load_or_create(tmp_path)
    try:
        for instances in (True, False):
            token, _ = issuer.issue("reviews-v1", "default", ["reviews"], workload_group="reviews-v1",
                                    addresses=["172.30.89.0/24"], instances=instances)  # fmt: skip
            path = tmp_path / f"credential-{instances}.jwt"
            path.write_text(token + "\n")
            reporter = WorkloadReporter(str(server.make_url("")), path)
            assert await reporter.report(draining=True)
    finally:
        await server.close()
    shared, own = received
    assert shared == {"draining": True, "proxy_id": f"reviews-v1.{instance_label(socket.gethostname())}"}
    assert own == {"draining": True}


async def test_a_report_the_control_plane_did_not_store_is_sent_again() -> None:
    """The first probe can pass before the proxy registered (404): the entry would stay unhealthy for ever
    (a group with a probe waits for a report) unless the report is sent again."""
    from types import SimpleNamespace

    from capabilities.apphealth import AppHealth, AppHealthConfig

    class Reporter:
        def __init__(self) -> None:
            self.answers, self.sent = [False, True], []

        async def report(self, **fields: Any) -> bool:
            self.sent.append(fields["healthy"])
            return self.answers.pop(0) if self.answers else True

    class Healthy(AppHealth):
        async def probe(self) -> bool:
            return True

    reporter = Reporter()
    health = Healthy(SimpleNamespace(app_id="reviews"), AppHealthConfig(), reporter)  # type: ignore[arg-type]
    await health.check_once()  # not stored
    await health.check_once()  # sent again, stored
    await health.check_once()  # nothing new to say
    assert reporter.sent == [True, True] and not health.unreported
