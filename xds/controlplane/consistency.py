"""A snapshot is published only when it is consistent (go-control-plane's Snapshot.Consistent()): every
route table a listener (or a scoped route) names, every EDS name a cluster names and every secret a TLS
context asks the control plane's SDS for is in the same snapshot. Envoy would otherwise keep the listener or
cluster warming (or drop traffic) until a resource that never comes arrives.

The references are read from the serialized bytes (a walk over the few fields that hold them), once per
distinct resource: resources are shared across proxies and kept across builds, so a push re-reads only
what changed.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from xds import types
from xds.server.codec import CodecError
from xds.server.codec import _fields as wire_fields  # the xDS codec's protobuf wire reader
from xds.spiffe import ROOT_SECRET, WORKLOAD_SECRET
from xds.types import Layered, Resource, Snapshot

# Field numbers (envoy/config/listener/v3, cluster/v3, route/v3, core/v3, transport_sockets/tls/v3 protos;
# tests/xds/controlplane/test_consistency.py checks them against the generated messages).
LISTENER_FILTER_CHAINS, LISTENER_DEFAULT_CHAIN, LISTENER_API = 3, 25, 19
API_LISTENER_ANY = 1
CHAIN_FILTERS, CHAIN_TRANSPORT_SOCKET = 3, 6
FILTER_TYPED_CONFIG = 4
SOCKET_TYPED_CONFIG = 3
ANY_TYPE_URL, ANY_VALUE = 1, 2
HCM_RDS, RDS_NAME = 3, 2
CLUSTER_NAME, CLUSTER_TYPE, CLUSTER_EDS_CONFIG, EDS_SERVICE_NAME = 1, 2, 3, 2
CLUSTER_TRANSPORT_SOCKET, CLUSTER_SOCKET_MATCHES, SOCKET_MATCH_SOCKET = 24, 43, 3
CLUSTER_TYPE_EDS = 3
SCOPED_ROUTE_TABLE, SCOPED_ON_DEMAND = 2, 4
TLS_COMMON = 1  # Downstream/UpstreamTlsContext.common_tls_context
COMMON_CERT_SDS, COMMON_VALIDATION_SDS, COMMON_COMBINED = 6, 7, 8
COMBINED_VALIDATION_SDS = 2
SDS_NAME, SDS_CONFIG = 1, 2
CONFIG_SOURCE_ADS = 3

HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
TLS_TYPES = frozenset(
    types.PREFIX + f"envoy.extensions.transport_sockets.tls.v3.{m}"
    for m in ("DownstreamTlsContext", "UpstreamTlsContext")
)


@dataclass(frozen=True, slots=True)
class Refs:
    """What one resource needs from the snapshot, by type URL of the needed resource."""

    routes: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()  # only those served over ADS (an agent's SDS serves its own)
    error: str = ""  # the bytes could not be read


_NONE = Refs()
WORKLOAD_SECRETS = frozenset({WORKLOAD_SECRET, ROOT_SECRET})


class InconsistentSnapshot(ValueError):
    def __init__(self, proxy_id: str, problems: list[str]) -> None:
        self.proxy_id = proxy_id
        self.problems = problems
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"proxy {proxy_id}: snapshot not published: {'; '.join(problems[:3])}{more}")


# ---- reading references out of the bytes -----------------------------------------------------------------


def _sub(body: bytes, number: int) -> Iterator[bytes]:
    for n, wire, value in wire_fields(body, "resource"):
        if n == number and wire == 2 and isinstance(value, bytes):
            yield value


def _first(body: bytes, number: int) -> bytes | None:
    return next(_sub(body, number), None)


def _any(body: bytes) -> tuple[str, bytes]:
    type_url, value = "", b""
    for n, _, v in wire_fields(body, "Any"):
        if n == ANY_TYPE_URL and isinstance(v, bytes):
            type_url = v.decode()
        elif n == ANY_VALUE and isinstance(v, bytes):
            value = v
    return type_url, value


def _ads_secrets(sds_configs: Iterator[bytes]) -> Iterator[str]:
    for sds in sds_configs:
        source = _first(sds, SDS_CONFIG)
        name = _first(sds, SDS_NAME)
        if name is not None and source is not None and _first(source, CONFIG_SOURCE_ADS) is not None:
            yield name.decode()


def _tls_secrets(socket: bytes) -> Iterator[str]:
    """SDS names over ADS of a TransportSocket holding a Downstream/UpstreamTlsContext."""
    for typed in _sub(socket, SOCKET_TYPED_CONFIG):
        type_url, context = _any(typed)
        if type_url not in TLS_TYPES:
            continue
        for common in _sub(context, TLS_COMMON):
            yield from _ads_secrets(_sub(common, COMMON_CERT_SDS))
            yield from _ads_secrets(_sub(common, COMMON_VALIDATION_SDS))
            for combined in _sub(common, COMMON_COMBINED):
                yield from _ads_secrets(_sub(combined, COMBINED_VALIDATION_SDS))


def _hcm_routes(typed: bytes) -> Iterator[str]:
    type_url, manager = _any(typed)
    if type_url == HCM_TYPE:
        for rds in _sub(manager, HCM_RDS):
            name = _first(rds, RDS_NAME)
            if name is not None:
                yield name.decode()


def _listener_refs(body: bytes) -> Refs:
    routes: list[str] = []
    secrets: list[str] = []
    chains = [*_sub(body, LISTENER_FILTER_CHAINS), *_sub(body, LISTENER_DEFAULT_CHAIN)]
    for chain in chains:
        for f in _sub(chain, CHAIN_FILTERS):
            for typed in _sub(f, FILTER_TYPED_CONFIG):
                routes += _hcm_routes(typed)
        for socket in _sub(chain, CHAIN_TRANSPORT_SOCKET):
            secrets += _tls_secrets(socket)
    for api in _sub(body, LISTENER_API):  # a proxyless client's HCM
        for typed in _sub(api, API_LISTENER_ANY):
            routes += _hcm_routes(typed)
    return Refs(routes=tuple(routes), secrets=tuple(secrets))


def _cluster_refs(body: bytes) -> Refs:
    name, eds, kind = "", None, 0
    for n, _, v in wire_fields(body, "Cluster"):
        if n == CLUSTER_NAME and isinstance(v, bytes):
            name = v.decode()
        elif n == CLUSTER_TYPE and isinstance(v, int):
            kind = v
        elif n == CLUSTER_EDS_CONFIG and isinstance(v, bytes):
            eds = v
    endpoints: tuple[str, ...] = ()
    if kind == CLUSTER_TYPE_EDS:  # the EDS name is service_name, or the cluster's own name without one
        service = _first(eds, EDS_SERVICE_NAME) if eds is not None else None
        endpoints = (service.decode() if service else name,)
    sockets = [*_sub(body, CLUSTER_TRANSPORT_SOCKET)]
    sockets += [s for m in _sub(body, CLUSTER_SOCKET_MATCHES) for s in _sub(m, SOCKET_MATCH_SOCKET)]
    secrets = tuple(s for socket in sockets for s in _tls_secrets(socket))
    return Refs(endpoints=endpoints, secrets=secrets)


def _scoped_refs(body: bytes) -> Refs:
    on_demand = any(n == SCOPED_ON_DEMAND and v for n, _, v in wire_fields(body, "ScopedRoute"))
    table = _first(body, SCOPED_ROUTE_TABLE)
    return Refs(routes=(table.decode(),)) if table and not on_demand else _NONE


_READERS = {types.LISTENER: _listener_refs, types.CLUSTER: _cluster_refs, types.SCOPED_ROUTE: _scoped_refs}
# per distinct resource object; entries go with the resource (equal resources share one entry)
_REFS: weakref.WeakKeyDictionary[Resource, Refs] = weakref.WeakKeyDictionary()


def references(res: Resource) -> Refs:
    found = _REFS.get(res)
    if found is None:
        reader = _READERS.get(res.type_url)
        try:
            found = reader(res.body) if reader is not None else _NONE
        except (CodecError, UnicodeDecodeError) as e:
            found = Refs(error=f"unreadable: {e}")
        _REFS[res] = found
    return found


# ---- the check -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Needs:
    """Needed name -> the first resource that names it ("LDS x"), per needed type."""

    by_type: Mapping[str, Mapping[str, str]]
    errors: tuple[str, ...]


_TARGETS = (("routes", types.ROUTE), ("endpoints", types.ENDPOINT), ("secrets", types.SECRET))
_NEEDS: OrderedDict[int, tuple[Mapping[str, Resource], _Needs]] = OrderedDict()
_SHARED_AT = 64  # mappings this large are the shared ones (the mesh's clusters): their needs are kept
_ATTRS = {target: attr for attr, target in _TARGETS}


def _collect(resources: Mapping[str, Resource]) -> _Needs:
    by_type: dict[str, dict[str, str]] = {t: {} for _, t in _TARGETS}
    errors: list[str] = []
    for name, res in resources.items():
        refs = references(res)
        who = f"{types.short_name(res.type_url)} {name}"
        if refs.error:
            errors.append(f"{who}: {refs.error}")
        for attr, target in _TARGETS:
            for needed in getattr(refs, attr):
                by_type[target].setdefault(needed, who)
    return _Needs(by_type, tuple(errors))


def _shared_needs(resources: Mapping[str, Resource]) -> _Needs:
    """A shared mapping's needs, collected once (kept for a few mappings)."""
    key = id(resources)
    found = _NEEDS.get(key)
    if found is not None and found[0] is resources:
        _NEEDS.move_to_end(key)
        return found[1]
    needs = _collect(resources)
    _NEEDS[key] = (resources, needs)  # holding the mapping keeps its id from being reused while cached
    while len(_NEEDS) > 64:
        _NEEDS.popitem(last=False)
    return needs


_MISSING: OrderedDict[tuple[int, str, int], tuple[_Needs, Mapping[str, Resource], list[str]]] = OrderedDict()


def _missing_names(needs: _Needs, target: str, have: Mapping[str, Resource]) -> list[str]:
    """The needed names of one type that `have` lacks; kept for a few pairs, as every proxy of a push
    pairs the same shared mappings (clusters with endpoints, scoped routes with route tables). A Layered
    `have` is its shared part (cached pair) plus its own few entries."""
    if isinstance(have, Layered):
        return [n for n in _missing_names(needs, target, have.base) if n not in have.own]
    key = (id(needs), target, id(have))
    found = _MISSING.get(key)
    if found is not None and found[0] is needs and found[1] is have:
        _MISSING.move_to_end(key)
        return found[2]
    out = [name for name in needs.by_type[target] if name not in have]
    _MISSING[key] = (needs, have, out)  # holding both keeps their ids from being reused while cached
    while len(_MISSING) > 256:
        _MISSING.popitem(last=False)
    return out


def _missing(needs: _Needs, target: str, have: Mapping[str, Resource], exempt: frozenset[str]) -> list[str]:
    wanted = needs.by_type[target]
    short = types.short_name(target)
    return [
        f"{wanted[name]} names {short} {name!r}, which is not in the snapshot"
        for name in _missing_names(needs, target, have)
        if not (target == types.SECRET and name in exempt)
    ]


def _own_missing(
    resources: Mapping[str, Resource],
    targets: list[str],
    snapshot: Snapshot,
    errors: bool,
    exempt: frozenset[str],
) -> list[str]:
    """A proxy's own few resources, checked directly (a cache per proxy would hold every proxy's)."""
    out: list[str] = []
    for name, res in resources.items():
        refs = references(res)
        if errors and refs.error:
            out.append(f"{types.short_name(res.type_url)} {name}: {refs.error}")
        for target in targets:
            have = snapshot.of(target)
            out += [
                f"{types.short_name(res.type_url)} {name} names {types.short_name(target)} {needed!r}, "
                "which is not in the snapshot"
                for needed in getattr(refs, _ATTRS[target])
                if needed not in have and not (target == types.SECRET and needed in exempt)
            ]
    return out


_NEEDING = (types.LISTENER, types.CLUSTER, types.SCOPED_ROUTE)


def problems(
    snapshot: Snapshot, published: Snapshot | None = None, workload_secrets: bool = True
) -> list[str]:
    """What the snapshot references but lacks ("LDS a names RDS 'b', which is not in the snapshot").

    published: the proxy's current (checked) snapshot; a pair of types whose versions are both unchanged
    since is not checked again (a route change re-checks listeners and scoped routes, not 3,000 clusters).
    workload_secrets: the control plane serves `default` and `ROOTCA` (its CA is on); without a CA an
    ISTIO_MUTUAL DestinationRule still names them and that cluster alone stays unusable, as before."""
    exempt = frozenset() if workload_secrets else WORKLOAD_SECRETS
    out: list[str] = []
    for type_url in _NEEDING:
        same = published is not None and published.version(type_url) == snapshot.version(type_url)
        targets = [
            t
            for _, t in _TARGETS
            if not (same and published is not None and published.version(t) == snapshot.version(t))
        ]
        if not targets:
            continue
        mapping = snapshot.of(type_url)
        for part in (mapping.base, mapping.own) if isinstance(mapping, Layered) else (mapping,):
            if len(part) < _SHARED_AT:  # a proxy's own few: walked directly
                out += _own_missing(part, targets, snapshot, not same, exempt)
                continue
            needs = _shared_needs(part)
            out += () if same else needs.errors
            for target in targets:
                out += _missing(needs, target, snapshot.of(target), exempt)
    return out


def check(
    proxy_id: str, snapshot: Snapshot, published: Snapshot | None = None, workload_secrets: bool = True
) -> None:
    """Raise InconsistentSnapshot naming what is missing. published: the proxy's current snapshot (it
    passed this check): only what changed since is checked, nothing when no type's version changed.
    workload_secrets: as problems()."""
    if published is not None and published.versions == snapshot.versions:
        return
    found = problems(snapshot, published, workload_secrets)
    if found:
        raise InconsistentSnapshot(proxy_id, found)
