"""What `mecha apply` tells its author (issue #14 items 2, 7): a route to a missing host is accepted with a
warning (refused with --strict or MECHA_STRICT=1); only the change's own warnings are shown, with a count of
the earlier ones; kinds Mecha skips are said to be skipped, not created."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from xds.cli.tables import config_warning_lines, outcome_lines
from xds.controlplane.report import routing_warnings
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings


def vs(name: str, host: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [{name}]
  http: [{{route: [{{destination: {{host: {host}}}}}]}}]
"""


NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n"
SERVICE_ACCOUNT = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: shop, namespace: default}\n"


@asynccontextmanager
async def running(state: Path, strict: bool = False) -> AsyncIterator[ControlPlane]:
    settings = Settings(xds_port=0, watch=False, state_dir=state, strict=strict)
    settings.insecure_xds = True  # no workload credentials in this test
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


def codes(outcome: dict[str, Any]) -> list[tuple[str, str]]:
    return [(d["name"], d["code"]) for d in outcome["diagnostics"]]


async def test_missing_host_is_a_warning_strict_refuses_it(tmp_path: Path) -> None:
    async with running(tmp_path / "lenient") as cp:
        outcome = await cp.apply([("a.yaml", vs("a", "later"))])
        assert outcome["accepted"] and codes(outcome) == [("a", "dangling-host")]
        refused = await cp.apply([("b.yaml", vs("b", "later"))], strict=True)  # mecha apply --strict
        assert not refused["accepted"] and codes(refused) == [("b", "dangling-host")]
        assert refused["diagnostics"][0]["severity"] == "error"
    async with running(tmp_path / "strict", strict=True) as cp:  # MECHA_STRICT=1
        assert not (await cp.apply([("a.yaml", vs("a", "later"))]))["accepted"]


async def test_apply_shows_its_own_warnings_and_counts_the_earlier_ones(tmp_path: Path) -> None:
    async with running(tmp_path) as cp:
        await cp.apply([("a.yaml", vs("a", "later"))])
        outcome = await cp.apply([("b.yaml", vs("b", "elsewhere"))])
        assert codes(outcome) == [("b", "dangling-host")]  # not a.yaml's warning again
        assert outcome["earlier_warnings"] == 1
        lines = outcome_lines(outcome)
        assert any("1 earlier warning(s)" in line for line in lines)
        assert not any("a.yaml" in line for line in lines)


async def test_skipped_kinds_are_reported_as_skipped(tmp_path: Path) -> None:
    async with running(tmp_path) as cp:
        outcome = await cp.apply([("sa.yaml", SERVICE_ACCOUNT)])
        lines = outcome_lines(outcome)
        assert "  ServiceAccount default/shop skipped (not a kind Mecha reads)" in lines, lines
        assert not any("created" in line for line in lines)


async def test_a_namespace_is_read_not_skipped(tmp_path: Path) -> None:
    """Its labels select the routes a Gateway listener admits (allowedRoutes.namespaces.selector)."""
    async with running(tmp_path) as cp:
        outcome = await cp.apply([("ns.yaml", NAMESPACE)])
        lines = outcome_lines(outcome)
        assert not any("skipped" in line for line in lines), lines
        assert any("Namespace" in line and "shop" in line and "created" in line for line in lines), lines


async def test_proxy_status_lists_routes_that_answer_503(tmp_path: Path) -> None:
    async with running(tmp_path) as cp:
        await cp.apply([("a.yaml", vs("a", "later"))])
        lines = config_warning_lines(d.to_dict() for d in routing_warnings(cp.store.result.diagnostics))
        assert lines[0].startswith("1 config warning(s)")
        assert "a.yaml" in lines[1] and "later.default.svc.cluster.local" in lines[1]


TLS_SECRET = """apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: Q0VSVElGSUNBVEU=, tls.key: U0VDUkVULUtFWS1CWVRFUw==}
"""


async def test_a_secret_with_a_private_key_is_refused_over_the_api_and_never_stored(tmp_path: Path) -> None:
    """Keys never go through the config store (its history and backups): an apply carrying one is refused
    with the document named, and no byte of the key reaches the store, whatever else the change holds."""
    async with running(tmp_path) as cp:
        outcome = await cp.apply([("secret.yaml", TLS_SECRET), ("ns.yaml", NAMESPACE)])
        assert not outcome["accepted"]
        (diag,) = [d for d in outcome["diagnostics"] if d["code"] == "secret-key"]
        assert diag["severity"] == "error" and "shop-cert" in diag["message"]
        assert "watched config folder" in diag["message"]
    store_bytes = b"".join(p.read_bytes() for p in _files(tmp_path))
    for secret in (b"U0VDUkVULUtFWS1CWVRFUw==", b"SECRET-KEY-BYTES"):
        assert secret not in store_bytes


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]
