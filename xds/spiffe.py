"""Workload identity names shared by the CA (xds/ca) and the translator (xds/translate), which must not import
each other: the SPIFFE id format, the default trust domain, and the two SDS Secret names istio-agent serves
(`default`: certificate chain + key; `ROOTCA`: the trust bundle), which Envoy's SDS configs reference."""

from __future__ import annotations

DEFAULT_TRUST_DOMAIN = "cluster.local"
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
