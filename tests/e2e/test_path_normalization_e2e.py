"""An attacker's paths against AuthorizationPolicy through real Envoys and the real demo apps (issue #10).

reviews has a DENY on `/admin`, ratings an ALLOW-only on `/public/*`. Each crafted path is sent as written on
the request line (http.client does not normalize) into productpage's proxy, so it crosses the outbound
listener and the callee's inbound listener, where RBAC runs. Every answer is either 403, or the app saw the
path Istio's normalization makes of it (it echoes the path it was given: `raw_path`), never the raw bypass.
The expected results are the table in docs/security.md, for istiod's default (BASE) and the strictest choice.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_mesh import Mesh, demo_mesh

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

POLICIES = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-public-only, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules: [{to: [{operation: {paths: ["/public/*"]}}]}]
"""

DENIED = 403
REFUSED = 400  # Envoy refuses the request line before any routing
# (path as sent, BASE result, DECODE_AND_MERGE_SLASHES result): a status, or the path the app is given
REVIEWS_DENY_ADMIN: list[tuple[str, int | str, int | str]] = [
    ("/admin", DENIED, DENIED),
    ("/./admin", DENIED, DENIED),
    ("/public/../admin", DENIED, DENIED),
    ("/%61dmin", DENIED, DENIED),  # unreserved characters are decoded
    ("/%2e/admin", DENIED, DENIED),
    ("/admin?x", DENIED, DENIED),  # the policy's path has no query; the app would keep it
    ("/admin#x", REFUSED, REFUSED),  # a fragment is never sent by clients: Envoy refuses it
    ("/a/..%2fadmin", "/a/..%2fadmin", DENIED),  # %2F stays escaped unless decoded
    ("//admin", "//admin", DENIED),  # slashes are merged only from MERGE_SLASHES on
    ("/admin%2f", "/admin%2f", "/admin/"),  # another path than /admin once decoded
    ("/admin%2F..", "/admin%2F..", "/"),
    ("/admin/", "/admin/", "/admin/"),  # paths match exactly (use /admin/* too)
    ("/admin;x", "/admin;x", "/admin;x"),  # `;` parameters are part of the path for Envoy and Istio
    ("/ADMIN", "/ADMIN", "/ADMIN"),  # case-sensitive, as in Istio
    ("/%2561dmin", "/%2561dmin", "/%2561dmin"),  # decoded once only: %25 is not an unreserved character
    ("/%252e/admin", "/%252e/admin", "/%252e/admin"),
]
RATINGS_ALLOW_PUBLIC: list[tuple[str, int | str, int | str]] = [
    ("/public/x", "/public/x", "/public/x"),
    ("/admin", DENIED, DENIED),
    ("/public/../admin", DENIED, DENIED),
    ("/public/%2e%2e/admin", DENIED, DENIED),
    ("/public/./../admin", DENIED, DENIED),
    ("/public/..%2fadmin", "/public/..%2fadmin", DENIED),  # decoded, it leaves /public/
    ("/public//../admin", "/public/admin", "/public/admin"),  # `..` removes the empty segment first
]
CHOICES = ("BASE", "DECODE_AND_MERGE_SLASHES")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CHOICES)
async def guarded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    env = {"MECHA_PATH_NORMALIZATION": request.param}
    async with demo_mesh(tmp_path_factory.mktemp(f"paths-{request.param}"), False, env) as mesh:
        (mesh.stack.config_dir / "policies.yaml").write_text(POLICIES)  # the watched config folder
        await _until_denied_everywhere(mesh)
        yield mesh


async def _until_denied_everywhere(mesh: Mesh) -> None:
    """reviews has two versions behind round robin: 8 denials in a row mean both proxies have the policy."""
    deadline = time.monotonic() + 30
    in_a_row = 0
    while in_a_row < 8:
        assert time.monotonic() < deadline, "the policies never reached every proxy"
        statuses = {(await send(mesh, host, "/admin"))[0] for host in ("reviews", "ratings")}
        in_a_row = in_a_row + 1 if statuses == {DENIED} else 0
        if not in_a_row:
            await asyncio.sleep(0.2)


def _send_raw(port: int, host: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


async def send(mesh: Mesh, host: str, path: str) -> tuple[int, str]:
    port = mesh.layout.proxy_of("productpage-v1").outbound_port
    assert port is not None
    return await asyncio.to_thread(_send_raw, port, host, path)


def _choice(mesh_param: str, base: int | str, strict: int | str) -> int | str:
    return base if mesh_param == "BASE" else strict


async def _check(mesh: Mesh, choice: str, host: str, table: list[tuple[str, int | str, int | str]]) -> None:
    results: list[str] = []
    for path, base, strict in table:
        expected = _choice(choice, base, strict)
        status, body = await send(mesh, host, path)
        if isinstance(expected, int):
            got: int | str = status if status == expected else f"{status} {body[:120]}"
        elif status == 200:
            got = json.loads(body)["raw_path"]
        else:
            got = f"{status} {body[:120]}"
        if got != expected:
            results.append(f"{path!r}: expected {expected!r}, got {got!r}")
    assert not results, f"{choice} {host}:\n" + "\n".join(results)


async def test_deny_on_admin_is_not_bypassed(guarded: Mesh, request: pytest.FixtureRequest) -> None:
    choice = request.node.callspec.params["guarded"]
    await _check(guarded, choice, "reviews", REVIEWS_DENY_ADMIN)


async def test_allow_only_on_public_is_not_escaped(guarded: Mesh, request: pytest.FixtureRequest) -> None:
    choice = request.node.callspec.params["guarded"]
    await _check(guarded, choice, "ratings", RATINGS_ALLOW_PUBLIC)


def test_table_is_the_one_documented() -> None:
    """docs/security.md shows the same rows (the doc is checked against the table this test enforces)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    for path, base, strict in REVIEWS_DENY_ADMIN + RATINGS_ALLOW_PUBLIC:
        row = f"| `{path}` | {_cell(base)} | {_cell(strict)} |"
        assert row in doc, f"docs/security.md lacks the row {row}"


def _cell(result: int | str) -> str:
    return str(result) if isinstance(result, int) else f"app gets `{result}`"
