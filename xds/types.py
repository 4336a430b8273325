"""The xDS vocabulary every layer shares: type URLs, their short names, the make-before-break order every
push follows, and the serialized Resource / Snapshot the translator produces and the cache and server serve
(here, not in xds.cache, so the translator depends on no server-side package)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any

PREFIX = "type.googleapis.com/"

CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
SCOPED_ROUTE = PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
SECRET = PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"


class Order(IntEnum):
    """ADS order (xDS spec 'Eventual consistency considerations'): CDS, EDS, LDS, SRDS, RDS, SDS."""

    CDS = 0
    EDS = 1
    LDS = 2
    SRDS = 3
    RDS = 4
    SDS = 5


TYPE_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE, ROUTE, SECRET)
SHORT_NAMES: dict[str, str] = {
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    LISTENER: "LDS",
    SCOPED_ROUTE: "SRDS",
    ROUTE: "RDS",
    SECRET: "SDS",
}
FROM_SHORT: dict[str, str] = {v: k for k, v in SHORT_NAMES.items()}
# LDS, CDS and SRDS are wildcard in SotW: every response is the full set and omission means delete.
WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


@dataclass(frozen=True, slots=True, weakref_slot=True)  # weakref: the server's wire-piece cache
class Resource:
    """One Envoy resource, already serialized: body is the protobuf bytes of the message (the Any.value)."""

    type_url: str
    name: str
    body: bytes
    version: str = ""  # content hash; filled in by make() when empty

    @classmethod
    def make(cls, type_url: str, name: str, body: bytes) -> Resource:
        return cls(type_url, name, body, hashlib.blake2b(body, digest_size=8).hexdigest())


def type_version(resources: Mapping[str, Resource]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(resources):
        h.update(name.encode())
        h.update(b"\0")
        h.update(resources[name].version.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """All resources of one proxy, by type URL then name, with a content-derived version per type.

    changed_at is the time.monotonic() of the config change that produced it (for convergence metrics).
    """

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str]
    changed_at: float = 0.0
    config_version: str = ""  # version of the accepted config set this came from (for status/CLI)

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource],
        changed_at: float = 0.0,
        config_version: str = "",
    ) -> Snapshot:
        by_type: dict[str, dict[str, Resource]] = {t: {} for t in TYPE_ORDER}
        for r in resources:
            bucket = by_type.setdefault(r.type_url, {})
            if r.name in bucket:
                raise ValueError(f"duplicate {short_name(r.type_url)} resource name {r.name!r}")
            bucket[r.name] = r
        frozen = {t: MappingProxyType(v) for t, v in by_type.items()}
        versions = {t: type_version(v) for t, v in by_type.items()}
        return cls(MappingProxyType(frozen), MappingProxyType(versions), changed_at, config_version)

    def of(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, MappingProxyType({}))

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, "")


class Layered(Mapping[str, Resource]):
    """A shared mapping plus one proxy's own few entries, read-only, without copying the shared one (per
    proxy and per change, copying 1,000 route tables' or 3,000 clusters' entries added up)."""

    __slots__ = ("base", "own")

    def __init__(self, base: Mapping[str, Resource], own: dict[str, Resource]) -> None:
        self.base = base
        self.own = own

    def __getitem__(self, name: str) -> Resource:
        found = self.own.get(name)
        return found if found is not None else self.base[name]

    def get(self, name: str, default: Any = None) -> Any:
        found = self.own.get(name)
        return found if found is not None else self.base.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.base

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        yield from self.own

    def __len__(self) -> int:
        return len(self.base) + len(self.own)
