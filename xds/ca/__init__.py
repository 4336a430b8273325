"""The control plane's certificate authority: SPIFFE workload certificates delivered to proxies over SDS."""

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
