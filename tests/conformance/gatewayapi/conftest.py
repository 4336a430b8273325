"""One `mecha serve`, its gateway Envoys and the echo pods, shared by every ported upstream test (the Go suite
also applies its base manifests once); each test's outcome is recorded under its upstream ShortName for the
ConformanceReport (report.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.conformance.gatewayapi.report import OUTCOMES, write_report
from tests.conformance.gatewayapi.suite import Suite

REPORT_ENV = "MECHA_GATEWAY_CONFORMANCE_REPORT"  # a path: write the ConformanceReport there


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gateway_conformance(short_name): a ported Gateway API conformance test (upstream ShortName)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("gateway_conformance"):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    marker = item.get_closest_marker("gateway_conformance")
    if marker and (report.when == "call" or report.outcome != "passed"):
        short = str(marker.args[0])
        if report.outcome == "failed" or OUTCOMES.get(short) != "failed":
            OUTCOMES[short] = report.outcome
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(REPORT_ENV)
    if path and OUTCOMES:
        write_report(path, dict(OUTCOMES))


# package scope: the control plane, gateway Envoys and echo backends (gRPC servers among them) end with this
# folder's tests. Kept for the whole session, gRPC's running event engine raced the fork of every later test
# that spawns a process with preexec_fn (the children aborted in gRPC's fork handler: SIGABRT, "epoll_wait
# error: Bad file descriptor") — tests/e2e failed in a full run.
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    s = Suite(tmp_path_factory.mktemp("gateway-conformance"))
    try:
        await s.start()
        yield s
    finally:
        await s.stop()
