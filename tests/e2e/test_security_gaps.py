"""DestinationRule tls, service-account principals, dry-run policies and a control-plane restart with a
persisted CA root, through real Envoys (the demo mesh with MECHA_MTLS=1; the CA root lives in <state>/ca)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from e2e_mesh import Mesh, demo_mesh, demo_yaml_path

from xds.testing.certs import self_signed

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BACKEND_HOST = "secure.backend.test"
STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    async with demo_mesh(tmp_path_factory.mktemp("security-gaps"), False, {"MECHA_MTLS": "1"}) as mesh:
        yield mesh


# ---- helpers ---------------------------------------------------------------------------------------------


async def apply(mesh: Mesh, tmp: Path, name: str, text: str) -> None:
    path = tmp / name
    path.write_text(text)
    rc, out = await mesh.cli("apply", "-f", str(path))
    assert rc == 0, out


async def delete(mesh: Mesh, tmp: Path, name: str) -> None:
    rc, out = await mesh.cli("delete", "-f", str(tmp / name))
    assert rc == 0, out


async def eventually(check: Any, within_s: float = 30.0) -> Any:
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met in {within_s}s; last result {last!r}")


async def status_of(mesh: Mesh, host: str, path: str) -> int:
    try:
        status, _ = await mesh.call(host, path)
        return status
    except (aiohttp.ClientError, TimeoutError):
        return -1


async def call_from(mesh: Mesh, workload: str, host: str, path: str) -> int:
    """A request entering the mesh through another workload's proxy (so that workload is the caller)."""
    port = mesh.layout.proxy_of(workload).outbound_port
    try:
        async with mesh.session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):  # a kept-alive connection closed by a listener drain
        return -1


# ---- 1. DestinationRule tls -------------------------------------------------------------------------------


def _ratings_dr(mode: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: default}}
spec: {{host: ratings, trafficPolicy: {{tls: {{mode: {mode}}}}}}}
"""


async def test_dr_disable_fails_against_strict_and_istio_mutual_succeeds(
    secure_mesh: Mesh, tmp_path: Path
) -> None:
    await apply(secure_mesh, tmp_path, "strict.yaml", STRICT)
    await apply(secure_mesh, tmp_path, "dr.yaml", _ratings_dr("DISABLE"))

    async def plaintext_refused() -> bool:
        return await status_of(secure_mesh, "ratings", "/ratings") in (503, -1)

    await eventually(plaintext_refused)
    await apply(secure_mesh, tmp_path, "dr.yaml", _ratings_dr("ISTIO_MUTUAL"))

    async def mutual_ok() -> bool:
        return await status_of(secure_mesh, "ratings", "/ratings") == 200

    await eventually(mutual_ok)
    await delete(secure_mesh, tmp_path, "dr.yaml")
    await delete(secure_mesh, tmp_path, "strict.yaml")


async def test_dr_simple_reaches_a_tls_backend_only_with_its_ca(secure_mesh: Mesh, tmp_path: Path) -> None:
    cert, key = self_signed(
        tmp_path,
        BACKEND_HOST,
        names=("backend.pem", "backend-key.pem"),
        ip="127.0.0.1",
        ca=True,
        valid=timedelta(hours=1),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"tls": request.secure, "path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        entry = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: secure-backend, namespace: default}}
spec:
  hosts: [{BACKEND_HOST}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP, targetPort: {port}}}]
  endpoints: [{{address: 127.0.0.1}}]
"""

        def rule(extra: str) -> str:
            return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: secure-backend, namespace: default}}
spec: {{host: {BACKEND_HOST}, trafficPolicy: {{tls: {{mode: SIMPLE, sni: {BACKEND_HOST}{extra}}}}}}}
"""

        await apply(
            secure_mesh, tmp_path, "backend.yaml", entry + "---\n" + rule(f", caCertificates: {cert}")
        )

        async def trusted() -> tuple[int, Any] | None:
            try:
                status, body = await secure_mesh.call(BACKEND_HOST, "/hello")
            except (aiohttp.ClientError, TimeoutError):
                return None
            return (status, body) if status == 200 else None

        _, body = await eventually(trusted)
        assert body == {"tls": True, "path": "/hello"}  # the proxy originated TLS
        await apply(secure_mesh, tmp_path, "backend.yaml", entry + "---\n" + rule(""))  # system roots only

        async def untrusted() -> bool:
            return await status_of(secure_mesh, BACKEND_HOST, "/hello") == 503

        await eventually(untrusted)
        await delete(secure_mesh, tmp_path, "backend.yaml")
    finally:
        await runner.cleanup()


# ---- 2. service accounts + principals ----------------------------------------------------------------------


async def proxy_warnings(mesh: Mesh, proxy_id: str) -> list[str]:
    rows = (await mesh.api_get("/api/v1/proxies"))["proxies"]
    return [w for row in rows if row["proxy_id"] == proxy_id for w in row.get("warnings", [])]


async def test_principal_of_a_workload_entry_service_account(secure_mesh: Mesh, tmp_path: Path) -> None:
    """As in Istio, a workload's identity is its credential's service account: a WorkloadEntry claiming
    another one changes neither the principal its calls carry nor the SAN its clients expect (they would
    refuse the real peer), and is reported naming both accounts."""
    demo = demo_yaml_path(secure_mesh)
    original = demo.read_text()
    docs = list(yaml.safe_load_all(original))
    # the sidecar registers its own entry (issue #15); a static one for the same endpoint claims another
    # account (as an edited WorkloadEntry would)
    port = secure_mesh.layout.workload("productpage-v1").inbound_port
    labels = {"app": "productpage", "version": "v1"}
    spec = {"address": "127.0.0.1", "ports": {"http": port}, "labels": labels,
            "serviceAccount": "bookinfo-productpage"}  # fmt: skip
    docs.append({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                 "metadata": {"name": "productpage-v1", "namespace": "default"}, "spec": spec})  # fmt: skip
    # productpage's credential (mecha up issues it from the node metadata) names service account productpage
    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-from-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]
"""
    try:
        demo.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        await apply(secure_mesh, tmp_path, "principal.yaml", policy)

        async def only_productpage() -> tuple[int, int, int] | None:
            pp = await status_of(secure_mesh, "ratings", "/ratings")
            other = await call_from(secure_mesh, "reviews-v1", "ratings", "/ratings")
            # productpage as a server: its clients expect its credential's identity, not the entry's
            served = await call_from(secure_mesh, "reviews-v1", "productpage", "/healthz")
            return (pp, other, served) if (pp, other, served) == (200, 403, 200) else None

        await eventually(only_productpage)

        async def warned() -> list[str]:
            return await proxy_warnings(secure_mesh, "productpage-v1")

        (warning,) = await eventually(warned)
        assert "'bookinfo-productpage'" in warning and "(productpage)" in warning, warning
        assert "WorkloadEntry default/productpage-v1" in warning
    finally:
        demo.write_text(original)
        await delete(secure_mesh, tmp_path, "principal.yaml")

    async def open_again() -> bool:
        return await call_from(secure_mesh, "reviews-v1", "ratings", "/ratings") == 200

    await eventually(open_again)
    assert await proxy_warnings(secure_mesh, "productpage-v1") == []


# ---- 3. dry-run --------------------------------------------------------------------------------------------


async def shadow_denied(mesh: Mesh, proxy_id: str) -> int:
    admin = next(p for p in mesh.layout.proxies if p.id == proxy_id).admin_port
    async with mesh.session.get(f"http://127.0.0.1:{admin}/stats?filter=rbac") as resp:
        text = await resp.text()
    total = 0
    for line in text.splitlines():  # http.inbound_0.0.0.0_<port>.rbac.istio_dry_run_deny_.shadow_denied
        name, _, value = line.partition(": ")
        if name.endswith(".rbac.istio_dry_run_deny_.shadow_denied"):
            total += int(value)
    return total


async def test_dry_run_deny_counts_but_does_not_block(secure_mesh: Mesh, tmp_path: Path) -> None:
    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-deny-all-dry-run
  namespace: default
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules: [{}]
"""
    await apply(secure_mesh, tmp_path, "dry-run.yaml", policy)

    statuses: list[int] = []

    async def counted() -> int:
        statuses.append(await status_of(secure_mesh, "ratings", "/ratings"))
        return await shadow_denied(secure_mesh, "ratings-v1") if statuses[-1] == 200 else 0

    before = await eventually(counted, 30)
    for _ in range(3):
        assert await status_of(secure_mesh, "ratings", "/ratings") == 200
    assert await shadow_denied(secure_mesh, "ratings-v1") >= before + 3
    assert 403 not in statuses  # the shadow DENY never blocked a request
    await delete(secure_mesh, tmp_path, "dry-run.yaml")


# ---- 4. control-plane restart: the CA root persists --------------------------------------------------------


async def leaf_serials(mesh: Mesh) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in mesh.layout.proxies:
        async with mesh.session.get(f"http://127.0.0.1:{p.admin_port}/certs") as resp:
            data = await resp.json(content_type=None)
        out[p.id] = {
            c["serial_number"]
            for entry in data.get("certificates", [])
            for c in entry.get("cert_chain", [])
            if c.get("subject_alt_names")
        }
    return out


async def test_restart_with_strict_mtls_loses_no_request(secure_mesh: Mesh) -> None:
    stack = secure_mesh.stack
    strict = stack.config_dir / "strict.yaml"  # in the watched folder: it survives the restart
    strict.write_text(STRICT)
    root = (stack.o.state_dir / "ca" / "root-cert.pem").read_bytes()
    results: list[int] = []
    stop = asyncio.Event()

    async def traffic() -> None:  # productpage -> reviews v2 -> ratings: two mTLS hops per request
        while not stop.is_set():
            try:
                status, _ = await secure_mesh.call("reviews", "/reviews", end_user="jason")
            except (aiohttp.ClientError, TimeoutError):
                status = -1  # a failed request too
            results.append(status)
            await asyncio.sleep(0.01)

    load: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(0))
    try:

        async def strict_on() -> bool:
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
                    port = secure_mesh.layout.workload("reviews-v1").inbound_port
                    async with s.get(f"http://127.0.0.1:{port}/reviews") as resp:
                        await resp.read()
                        return False
            except (aiohttp.ClientError, OSError, TimeoutError):
                return True

        await eventually(strict_on)
        before = await leaf_serials(secure_mesh)
        cp = next(c for c in stack.sup.children if c.kind == "control-plane" and c.exited is None)
        load = asyncio.create_task(traffic())
        await asyncio.sleep(0.5)
        assert cp.pid is not None and cp.proc is not None
        os.kill(cp.pid, signal.SIGKILL)
        await cp.proc.wait()
        await asyncio.sleep(1.0)
        await stack.start_control_plane_again()
        await stack.wait_synced()

        # the agents hold the certificates and rotate them at half their lifetime, as istio-agent does: a
        # restarted control plane reissues none, and every proxy keeps serving the one it had
        now = await leaf_serials(secure_mesh)
        assert all(now.values()) and now == before, (before, now)
        await asyncio.sleep(0.5)
        stop.set()
        await load
        assert len(results) > 20
        assert set(results) == {200}, f"{len(results) - results.count(200)} failed of {len(results)}"
        assert (stack.o.state_dir / "ca" / "root-cert.pem").read_bytes() == root
    finally:
        stop.set()
        if not load.done():
            load.cancel()
        await asyncio.gather(load, return_exceptions=True)
        strict.unlink(missing_ok=True)
