"""Per-proxy certificates as SDS resources, reissued before they expire.

`secrets(proxy_id, ids)` returns the proxy's `default` (cert chain + key) and the shared `ROOTCA` (validation
context) Secret resources. The same Resource objects come back until the certificate passes its rotation
point (half its lifetime, like Istio's SECRET_GRACE_PERIOD_RATIO=0.5) or the identities change; then a new
certificate is issued. Rotation is therefore "rebuild the snapshots of the proxies in `due()`".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from xds.ca.authority import CertificateAuthority, IssuedCert
from xds.ca.secrets import ROOT_SECRET, WORKLOAD_SECRET, root_secret
from xds.ca.secrets import workload_secret as _workload_secret
from xds.types import Resource

__all__ = ["ROOT_SECRET", "WORKLOAD_SECRET", "WorkloadCertificates", "root_secret", "workload_secret"]
DEFAULT_TTL = timedelta(hours=24)
ROTATE_AT = 0.5  # fraction of the lifetime after which a certificate is replaced


def workload_secret(cert: IssuedCert) -> Resource:
    return _workload_secret(cert.cert_pem, cert.key_pem)


@dataclass(frozen=True, slots=True)
class _Held:
    cert: IssuedCert
    resource: Resource
    rotate_after: datetime


class WorkloadCertificates:
    def __init__(
        self,
        ca: CertificateAuthority,
        ttl: timedelta = DEFAULT_TTL,
        rotate_at: float = ROTATE_AT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not 0 < rotate_at < 1:
            raise ValueError(f"rotate_at must be between 0 and 1, got {rotate_at}")
        self.ca = ca
        self.ttl = ttl
        self.rotate_at = rotate_at
        self._clock = clock or (lambda: datetime.now(UTC))
        self._held: dict[str, _Held] = {}
        self._root_pem = ca.root_pem
        self._root = root_secret(self._root_pem)
        self.issued = 0  # certificates issued so far (metrics, bench)

    @property
    def root(self) -> Resource:
        """ROOTCA from the CA's current bundle (it changes when plug-in CA files are rotated)."""
        bundle = self.ca.root_pem
        if self._root_pem is not bundle and self._root_pem != bundle:
            self._root, self._root_pem = root_secret(bundle), bundle
        return self._root

    @property
    def trust_domain(self) -> str:
        return self.ca.trust_domain

    def secrets(self, proxy_id: str, spiffe_ids: tuple[str, ...]) -> tuple[Resource, Resource]:
        held = self._held.get(proxy_id)
        now = self._clock()
        if held is None or held.cert.spiffe_ids != spiffe_ids or now >= held.rotate_after:
            cert = self.ca.issue(spiffe_ids, self.ttl)
            self.issued += 1
            # from the issue time (not_before is backdated for clock skew)
            held = _Held(cert, workload_secret(cert), now + self.ttl * self.rotate_at)
            self._held[proxy_id] = held
        return held.resource, self.root

    def current(self, proxy_id: str) -> IssuedCert | None:
        held = self._held.get(proxy_id)
        return held.cert if held else None

    def due(self, proxy_ids: list[str] | None = None) -> list[str]:
        """Proxies whose certificate has passed its rotation point (a rebuild reissues it)."""
        now = self._clock()
        ids = proxy_ids if proxy_ids is not None else list(self._held)
        return [p for p in ids if p in self._held and now >= self._held[p].rotate_after]

    def seconds_to_next_rotation(self) -> float | None:
        if not self._held:
            return None
        soonest = min(h.rotate_after for h in self._held.values())
        return max(0.0, (soonest - self._clock()).total_seconds())

    def forget(self, proxy_id: str) -> None:
        self._held.pop(proxy_id, None)

    def retain(self, proxy_ids: set[str]) -> None:
        for pid in [p for p in self._held if p not in proxy_ids]:
            del self._held[pid]
