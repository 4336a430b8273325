"""Endpoint identities come from credentials: the SAN clients expect of an endpoint served by a connected
proxy is that proxy's credential's service account, not what a WorkloadEntry says (issue #11).

As in Istio, a workload's identity is the service account of its credential (a pod's, a VM's token); for a VM
the WorkloadEntry's serviceAccount must match its certificate. The certificate is fixed by the credential, so
a WorkloadEntry claiming another account would only make its clients refuse the real peer: the credential
wins, and the claim is reported (apply outcome, proxy-status) naming both accounts.

Which proxy serves a WorkloadEntry: one in its namespace fronting an app whose labels include all of the
entry's labels (the match the translator already uses for a proxy's own certificate). A credential's labels
are what the operator allowed that proxy to claim, so a proxy serves only endpoints its credential covers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xds.proxy import ProxyIdentity

# (endpoint source "WorkloadEntry ns/name", service accounts of the credentials serving it), sorted: the
# translator's memo compares it, and an unchanged value keeps every cluster cached
EndpointAccounts = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class AccountMismatch:
    """A WorkloadEntry whose serviceAccount is not the account of the credential of a proxy serving it."""

    namespace: str
    entry: str
    claimed: str
    proxy_id: str
    accounts: tuple[str, ...]

    @property
    def message(self) -> str:
        accounts = ", ".join(self.accounts)
        return (
            f"WorkloadEntry {self.namespace}/{self.entry}: serviceAccount {self.claimed!r} is not the "
            f"service account of the credential of proxy {self.proxy_id!r} serving it ({accounts}); its "
            f"certificate names {accounts}, so clients expect that identity: fix the serviceAccount or issue "
            "the proxy a credential for it"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": "warning",
            "file": "",
            "document": 0,
            "kind": "WorkloadEntry",
            "namespace": self.namespace,
            "name": self.entry,
            "field": "spec.serviceAccount",
            "code": "service-account-not-credential",
            "message": self.message,
        }


def _fronted(proxy: ProxyIdentity) -> list[tuple[str, dict[str, str]]]:
    return [(a.namespace, a.label_map) for a in proxy.apps] or [(proxy.namespace, proxy.label_map)]


def _serves(proxy: ProxyIdentity, namespace: str, labels: dict[str, str]) -> bool:
    return any(
        ns == namespace and all(mine.get(k) == v for k, v in labels.items()) for ns, mine in _fronted(proxy)
    )


class _Candidates:
    """Verified proxies by (namespace, label, value) of the apps they front: a WorkloadEntry only looks at
    the proxies that carry its rarest label, not at every proxy (run on every new stream: 2,000 entries x
    1,000 proxies was most of a control plane's CPU while a fleet connected)."""

    def __init__(self, proxies: list[ProxyIdentity]) -> None:
        self.proxies = proxies
        self.by_label: dict[tuple[str, str, str], list[int]] = {}
        for i, proxy in enumerate(proxies):
            for ns, mine in _fronted(proxy):
                for k, v in mine.items():
                    bucket = self.by_label.setdefault((ns, k, v), [])
                    if not bucket or bucket[-1] != i:  # once per proxy, in proxy order
                        bucket.append(i)

    def serving(self, namespace: str, labels: dict[str, str]) -> list[ProxyIdentity]:
        """The proxies _serves says serve it, in the order given (the mismatches keep their order)."""
        buckets = [self.by_label.get((namespace, k, v), []) for k, v in labels.items()]
        fewest = min(buckets, key=len)
        return [self.proxies[i] for i in fewest if _serves(self.proxies[i], namespace, labels)]


def endpoint_accounts(
    config: Any, proxies: Iterable[ProxyIdentity]
) -> tuple[EndpointAccounts, list[AccountMismatch]]:
    """Endpoints whose expected identity differs from what the config alone says, and the WorkloadEntries
    whose serviceAccount disagrees with the credential serving them. Proxies without a verified credential
    (--insecure-xds) change nothing."""
    verified = [p for p in proxies if p.service_accounts]
    overrides: dict[str, tuple[str, ...]] = {}
    mismatches: list[AccountMismatch] = []
    if not verified:
        return (), mismatches
    candidates = _Candidates(verified)
    for we in getattr(config, "workload_entries", ()):  # a test pipeline's config may have none
        e, namespace = we.endpoint, we.meta.namespace
        labels = dict(e.labels)
        serving = candidates.serving(namespace, labels) if labels else []
        if not serving:
            continue
        accounts = tuple(sorted({a for p in serving for a in p.service_accounts}))
        claimed = str(e.service_account or "")
        if accounts != ((claimed or labels.get("app") or we.meta.name),):
            overrides[e.source] = accounts
        for p in serving:
            if claimed and claimed not in p.service_accounts:
                mismatches.append(AccountMismatch(namespace, we.meta.name, claimed, p.id, p.service_accounts))
    return tuple(sorted(overrides.items())), mismatches


class EndpointIdentities:
    """The control plane's current view: what the translator is told, and the warnings it reports."""

    def __init__(self) -> None:
        self.accounts: EndpointAccounts = ()
        self.mismatches: list[AccountMismatch] = []

    def update(self, builder: Any, config: Any, proxies: Iterable[ProxyIdentity]) -> bool:
        """Recompute from the config and the connected proxies; True when endpoint identities changed (every
        proxy's clusters then need a rebuild)."""
        accounts, self.mismatches = endpoint_accounts(config, proxies)
        changed = accounts != self.accounts
        if changed:
            self.accounts = accounts  # else the same object: the translator's memo keeps its clusters
        security = getattr(builder, "security", None)  # a test pipeline's builder may have none
        if security is not None and hasattr(security, "endpoint_accounts"):
            security.endpoint_accounts = self.accounts
        return changed

    def warnings_for(self, proxy_id: str) -> list[str]:
        return [m.message for m in self.mismatches if m.proxy_id == proxy_id]
