"""mTLS, PeerAuthentication, AuthorizationPolicy, RequestAuthentication and certificate rotation through real
Envoys: the demo mesh with the control-plane CA on (MECHA_MTLS=1) and 8 s certificates (rotated every ~4 s).

Every hop is app -> own proxy (outbound) -> peer proxy (inbound listener: where STRICT, JWT and RBAC apply).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from e2e_mesh import Mesh, demo_mesh

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CERT_TTL_S = 8
ISSUER = "https://issuer.mecha.test"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    async with demo_mesh(
        tmp_path_factory.mktemp("secure-mesh"), False, {"MECHA_MTLS": "1", "MECHA_CERT_TTL": str(CERT_TTL_S)}
    ) as mesh:
        yield mesh


# ---- helpers ---------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    """An RSA key, its JWKS, and RS256 tokens (what an identity provider would issue)."""

    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        nums = self.key.public_key().public_numbers()
        n = nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")
        e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
        return json.dumps(
            {
                "keys": [
                    {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": _b64(n), "e": _b64(e)}
                ]
            }
        )

    def token(self, sub: str, issuer: str = ISSUER, **claims: Any) -> str:
        header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        body = {"iss": issuer, "sub": sub, "exp": int(time.time()) + 3600, **claims}
        payload = _b64(json.dumps(body).encode())
        signature = self.key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{_b64(signature)}"


def xfcc_of(body: dict[str, Any]) -> str:
    headers = {k.lower(): v for k, v in body["headers"].items()}
    return str(headers.get("x-forwarded-client-cert", ""))


async def apply(mesh: Mesh, tmp: Path, name: str, text: str) -> tuple[int, str]:
    path = tmp / name
    path.write_text(text)
    return await mesh.cli("apply", "-f", str(path))


async def eventually(check: Any, within_s: float = 10.0) -> Any:
    """Poll an async check until it returns a truthy value (config travels by xDS: not instant)."""
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met in {within_s}s; last result {last!r}")


async def admin_certs(mesh: Mesh, proxy_id: str) -> list[str]:
    proxy = next(p for p in mesh.layout.proxies if p.id == proxy_id)
    async with mesh.session.get(f"http://127.0.0.1:{proxy.admin_port}/certs") as resp:
        data = await resp.json(content_type=None)
    return [c["serial_number"] for entry in data.get("certificates", []) for c in entry.get("cert_chain", [])]


STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""


# ---- mTLS ------------------------------------------------------------------------------------------------


async def test_strict_refuses_plaintext_and_mesh_traffic_carries_the_peer_identity(
    secure_mesh: Mesh, tmp_path: Path
) -> None:
    rc, out = await apply(secure_mesh, tmp_path, "strict.yaml", STRICT)
    assert rc == 0, out
    reviews = secure_mesh.layout.workload("reviews-v1")

    async def plaintext_refused() -> bool:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s:
                async with s.get(f"http://127.0.0.1:{reviews.inbound_port}/reviews") as resp:
                    await resp.read()
                    return False
        except (aiohttp.ClientError, OSError, TimeoutError):
            return True

    await eventually(plaintext_refused)
    status, body = await secure_mesh.call("reviews", "/reviews")
    assert status == 200, body
    xfcc = xfcc_of(body)
    assert "URI=spiffe://cluster.local/ns/default/sa/productpage" in xfcc, body["headers"]
    # the reviews -> ratings hop (reviews v2) is mTLS too: productpage's page shows the whole chain working
    counts = await secure_mesh.versions(20, end_user="jason")
    assert counts == {"v2": 20}


async def test_forged_client_cert_header_is_replaced(secure_mesh: Mesh) -> None:
    forged = "URI=spiffe://cluster.local/ns/default/sa/admin"
    status, body = await secure_mesh.call("reviews", "/reviews", x_forwarded_client_cert=forged)
    assert status == 200
    assert "sa/admin" not in xfcc_of(body)


# ---- AuthorizationPolicy -----------------------------------------------------------------------------------


async def test_authorization_deny_returns_403(secure_mesh: Mesh, tmp_path: Path) -> None:
    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]
    to: [{operation: {paths: ["/admin*"]}}]
"""
    rc, out = await apply(secure_mesh, tmp_path, "deny.yaml", policy)
    assert rc == 0, out

    async def denied() -> tuple[int, Any] | None:
        status, body = await secure_mesh.call("reviews", "/admin/users", end_user="jason")
        return (status, body) if status == 403 else None

    await eventually(denied)
    status, _ = await secure_mesh.call("reviews", "/reviews", end_user="jason")
    assert status == 200


async def test_empty_allow_policy_denies_everything(secure_mesh: Mesh, tmp_path: Path) -> None:
    policy = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-nothing, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
"""
    rc, out = await apply(secure_mesh, tmp_path, "allow-nothing.yaml", policy)
    assert rc == 0, out

    async def denied() -> bool:
        status, _ = await secure_mesh.call("productpage", "/productpage")
        return status == 403

    await eventually(denied)
    rc, out = await secure_mesh.cli("delete", "-f", str(tmp_path / "allow-nothing.yaml"))
    assert rc == 0, out

    async def allowed() -> bool:
        status, _ = await secure_mesh.call("productpage", "/productpage")
        return status == 200

    await eventually(allowed)


# ---- RequestAuthentication ---------------------------------------------------------------------------------


async def test_jwt_missing_bad_and_required(secure_mesh: Mesh, tmp_path: Path) -> None:
    signer, intruder = Signer(), Signer()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(signer.jwks())
    authn = f"""apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ratings-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: ratings}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: file://{jwks_file}
"""
    rc, out = await apply(secure_mesh, tmp_path, "authn.yaml", authn)
    assert rc == 0, out
    good = f"Bearer {signer.token('alice')}"
    forged = f"Bearer {intruder.token('alice')}"

    async def bad_token_rejected() -> bool:
        status, _ = await secure_mesh.call("ratings", "/ratings", authorization=forged)
        return status == 401

    await eventually(bad_token_rejected)
    assert (await secure_mesh.call("ratings", "/ratings"))[0] == 200  # no token: authn alone lets it pass
    assert (await secure_mesh.call("ratings", "/ratings", authorization=good))[0] == 200

    require = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ratings-require-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: ratings}}}}
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
"""
    rc, out = await apply(secure_mesh, tmp_path, "require.yaml", require)
    assert rc == 0, out

    async def missing_is_forbidden() -> bool:
        status, _ = await secure_mesh.call("ratings", "/ratings")
        return status == 403

    await eventually(missing_is_forbidden)
    assert (await secure_mesh.call("ratings", "/ratings", authorization=good))[0] == 200
    bob = f"Bearer {signer.token('bob')}"
    assert (await secure_mesh.call("ratings", "/ratings", authorization=bob))[0] == 403  # valid, not allowed
    assert (await secure_mesh.call("ratings", "/ratings", authorization=forged))[0] == 401
    for name in ("require.yaml", "authn.yaml"):
        rc, out = await secure_mesh.cli("delete", "-f", str(tmp_path / name))
        assert rc == 0, out


# ---- bad input -------------------------------------------------------------------------------------------


async def test_malformed_policy_is_refused_and_traffic_keeps_flowing(
    secure_mesh: Mesh, tmp_path: Path
) -> None:
    bad = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-cidr, namespace: default}
spec:
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.300/8"]}}]
"""
    rc, out = await apply(secure_mesh, tmp_path, "bad-authz.yaml", bad)
    assert rc == 1, out
    assert "bad-authz.yaml" in out and "bad-cidr" in out and "spec.rules[0].from[0].source.ipBlocks[0]" in out
    status, _ = await secure_mesh.call("reviews", "/reviews", end_user="jason")
    assert status == 200


# ---- rotation --------------------------------------------------------------------------------------------


async def test_certificates_rotate_without_dropping_traffic(secure_mesh: Mesh) -> None:
    first = await admin_certs(secure_mesh, "reviews-v1")
    assert first, "Envoy shows no SDS certificate"
    failures: list[int] = []
    rotated: list[str] = []
    deadline = time.monotonic() + 3 * CERT_TTL_S
    while time.monotonic() < deadline and not rotated:
        status, _ = await secure_mesh.call("reviews", "/reviews", end_user="jason")
        if status != 200:
            failures.append(status)
        now = await admin_certs(secure_mesh, "reviews-v1")
        if now and set(now) != set(first):
            rotated = now
        await asyncio.sleep(0.1)
    assert rotated, f"the workload certificate was not rotated within {3 * CERT_TTL_S}s"
    for _ in range(20):  # traffic with the new certificate
        status, _ = await secure_mesh.call("reviews", "/reviews", end_user="jason")
        if status != 200:
            failures.append(status)
    assert not failures, failures
