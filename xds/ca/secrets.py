"""The two SDS Secrets every workload gets, in one place for the control plane's CA (xds/ca/workload.py) and
the agent's SDS server (xds/agent/sds.py): `default` (certificate chain + private key) and `ROOTCA` (the trust
bundle), the names istio-agent serves and Envoy's SDS configs reference.

Encoded by the xDS codec (byte-equal to envoy-data-plane's encoding, tests/xds/agent/test_agent_sds.py): the
agent must not import the generated Envoy protos on a sidecar's start path."""

from __future__ import annotations

from xds import types
from xds.server.codec import encode_tls_certificate_secret, encode_validation_context_secret
from xds.spiffe import ROOT_SECRET, WORKLOAD_SECRET
from xds.types import Resource

__all__ = ["ROOT_SECRET", "WORKLOAD_SECRET", "root_secret", "workload_secret"]


def workload_secret(chain_pem: bytes, key_pem: bytes) -> Resource:
    body = encode_tls_certificate_secret(WORKLOAD_SECRET, chain_pem, key_pem)
    return Resource.make(types.SECRET, WORKLOAD_SECRET, body)


def root_secret(root_pem: bytes) -> Resource:
    return Resource.make(types.SECRET, ROOT_SECRET, encode_validation_context_secret(ROOT_SECRET, root_pem))
