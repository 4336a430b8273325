"""Attacks on the xDS and CA port of a control plane with mTLS on (issue #11): each got a key before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from identity_helpers import (
    REVIEWS_META,
    ads_request,
    create_certificate,
    issue,
    root_of,
    secure_control_plane,
)

from xds import types


async def test_stolen_node_block_without_credential_gets_nothing_over_tls_or_plaintext(
    tmp_path: Path,
) -> None:
    async with secure_control_plane(tmp_path) as cp:
        port = cp.xds_port
        assert port is not None
        over_tls = await ads_request(port, root_of(cp), "reviews-v1", REVIEWS_META, names=["default"])
        assert over_tls.responses == []
        assert over_tls.code is grpc.StatusCode.UNAUTHENTICATED, over_tls
        assert "authorization" in over_tls.details
        made_up = await ads_request(port, root_of(cp), "evil-1", REVIEWS_META, type_url=types.CLUSTER)
        assert made_up.responses == [] and made_up.code is grpc.StatusCode.UNAUTHENTICATED
        plaintext = await ads_request(port, None, "reviews-v1", REVIEWS_META, names=["default"])
        assert plaintext.responses == [] and plaintext.code is grpc.StatusCode.UNAVAILABLE
        garbage = await ads_request(port, root_of(cp), "reviews-v1", REVIEWS_META, token="a.b.c")
        assert garbage.responses == [] and garbage.code is grpc.StatusCode.UNAUTHENTICATED
        assert cp.certs is not None and cp.certs.issued == 0  # no key was ever minted


async def test_own_credential_gets_config_and_no_private_key(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None
        token = issue(cp)
        got = await ads_request(cp.xds_port, root_of(cp), "reviews-v1", REVIEWS_META, token, types.CLUSTER,
                                within_s=1.5)  # fmt: skip
        assert got.code is None and got.responses, got
        secrets = await ads_request(cp.xds_port, root_of(cp), "reviews-v1", REVIEWS_META, token,
                                    names=["default", "ROOTCA"], within_s=1.5)  # fmt: skip
        assert secrets.code is None
        assert all(not r.resources for r in secrets.responses)  # the agent serves them, not the CP
        assert cp.certs is not None and cp.certs.issued == 0


@pytest.mark.parametrize(
    ("node_id", "meta", "field"),
    [
        ("productpage-v1", REVIEWS_META, "node.id"),
        ("reviews-v1", {**REVIEWS_META, "namespace": "prod"}, "node.metadata.mecha.namespace"),
        ("reviews-v1", {**REVIEWS_META, "labels": {"app": "ratings"}}, "node.metadata.mecha.labels.app"),
        ("reviews-v1", {**REVIEWS_META, "mode": "gateway"}, "node.metadata.mecha.mode"),
        (
            "reviews-v1",
            {
                **REVIEWS_META,
                "apps": [{"name": "r", "namespace": "kube-system", "labels": {"app": "reviews"}}],
            },
            "node.metadata.mecha.apps[0].namespace",
        ),
    ],
)
async def test_valid_credential_claiming_more_is_refused_naming_the_field(
    tmp_path: Path,
    node_id: str,
    meta: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None
        out = await ads_request(cp.xds_port, root_of(cp), node_id, meta, issue(cp), types.CLUSTER)
        assert out.responses == []
        assert out.code is grpc.StatusCode.PERMISSION_DENIED
        assert out.details.startswith(field), out.details


async def test_csr_for_another_identity_is_refused_and_own_is_signed(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None
        mine = issue(cp)
        # a token naming another service account, never signed by the control plane: used only for its SANs
        assert cp.identity.issuer is not None
        other, _ = cp.identity.issuer.issue("x", "prod", ["ratings"])
        resp, code, details = await create_certificate(cp.xds_port, root_of(cp), mine, other)
        assert resp is None and code is grpc.StatusCode.PERMISSION_DENIED
        assert "spiffe://cluster.local/ns/prod/sa/ratings" in details
        resp, code, _ = await create_certificate(cp.xds_port, root_of(cp), None, mine)
        assert resp is None and code is grpc.StatusCode.UNAUTHENTICATED
        resp, code, _ = await create_certificate(cp.xds_port, root_of(cp), mine, mine)
        assert code is None and resp is not None
        leaf = x509.load_pem_x509_certificate(resp.cert_chain[0].encode())
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://cluster.local/ns/default/sa/reviews"
        ]
        assert all("PRIVATE KEY" not in part for part in resp.cert_chain)


async def test_revocation_closes_open_streams_within_5s_and_refuses_the_next_csr(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None and cp.identity.issuer is not None
        labels = {"app": ["reviews"], "version": ["v1"]}
        token, cred = cp.identity.issuer.issue("reviews-v1", "default", ["reviews"], labels)
        stream = asyncio.create_task(
            ads_request(
                cp.xds_port, root_of(cp), "reviews-v1", REVIEWS_META, token, types.CLUSTER, within_s=30
            )
        )
        for _ in range(100):
            if cp.server.proxies():
                break
            await asyncio.sleep(0.05)
        assert [p.id for p in cp.server.proxies()] == ["reviews-v1"]
        revoked_at = time.monotonic()
        outcome = cp.identity.revoke(cp.server, jti=cred.jti)
        assert outcome["closed_streams"] == 1
        ended = await asyncio.wait_for(stream, 5.0)
        assert time.monotonic() - revoked_at < 5.0
        assert ended.code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in ended.details
        _, code, details = await create_certificate(cp.xds_port, root_of(cp), token, token)
        assert code is grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
        again = await ads_request(cp.xds_port, root_of(cp), "reviews-v1", REVIEWS_META, token, types.CLUSTER)
        assert again.responses == [] and again.code is grpc.StatusCode.UNAUTHENTICATED
    # revocations persist across restarts (state folder)
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None
        _, code, _ = await create_certificate(cp.xds_port, root_of(cp), token, token)
        assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_expired_credential_is_refused_on_reconnect(tmp_path: Path) -> None:
    async with secure_control_plane(tmp_path) as cp:
        assert cp.xds_port is not None and cp.identity.issuer is not None
        token, _ = cp.identity.issuer.issue("reviews-v1", "default", ["reviews"], {"app": ["reviews"]},
                                            ttl_s=60, now=time.time() - 120)  # fmt: skip
        out = await ads_request(cp.xds_port, root_of(cp), "reviews-v1", REVIEWS_META, token, types.CLUSTER)
        assert out.responses == [] and out.code is grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in out.details
