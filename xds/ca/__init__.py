"""The control plane's certificate authority: SPIFFE workload certificates delivered to proxies over SDS.

Names load lazily: the agent imports xds.ca.messages (its CSR) and xds.ca.watch, and must not pull in the
generated Envoy protos that xds.ca.workload builds Secrets with (~0.5 s on a sidecar's start path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.ca.authority import CertificateAuthority, IssuedCert, spiffe_id
    from xds.ca.workload import ROOT_SECRET, WORKLOAD_SECRET, WorkloadCertificates

__all__ = [
    "ROOT_SECRET",
    "WORKLOAD_SECRET",
    "CertificateAuthority",
    "IssuedCert",
    "WorkloadCertificates",
    "spiffe_id",
]
_AUTHORITY = ("CertificateAuthority", "IssuedCert", "spiffe_id")


def __getattr__(name: str) -> Any:
    if name in _AUTHORITY:
        from xds.ca import authority

        return getattr(authority, name)
    if name in __all__:
        from xds.ca import workload

        return getattr(workload, name)
    raise AttributeError(f"module 'xds.ca' has no attribute {name!r}")
