"""VirtualService matches on the client: `sourceLabels` and `sourceNamespace` (http, tcp and tls matches).

istiod emits such a route only into the config of proxies whose labels are a superset of sourceLabels (and
whose namespace is sourceNamespace), so it is per-proxy config with no Envoy matcher (istio-mapping.md §1.2,
`sourceMatchHTTP`). Mecha groups proxies by the set of source-conditional matches that apply to them: every
group translates its own filtered copy of the config, in which the conditional matches that do not apply are
gone and those that do are ordinary matches. Proxies of one group share every resource (the route
configuration keeps its name, `outbound`; its content differs per group), and a config without any
source-conditional match is not copied at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from xds.model.mesh import MeshConfig
from xds.model.meta import Labels
from xds.model.resources import HTTPMatch, HTTPRoute, VirtualService
from xds.model.traffic import L4Match, L4Route
from xds.proxy import ProxyIdentity, ProxyMode

# (VirtualService ref, "http" | "tcp" | "tls", route index, match index)
MatchId = tuple[str, str, int, int]
Signature = frozenset[MatchId]


def proxy_labels(proxy: ProxyIdentity) -> dict[str, str]:
    """The proxy's labels and those of the apps it fronts (the proxy's own win), as Sidecar selection uses."""
    labels: dict[str, str] = {}
    for app in proxy.apps:
        labels.update(app.label_map)
    labels.update(proxy.label_map)
    return labels


def source_applies(
    source_labels: Labels | None, source_namespace: str, labels: dict[str, str], ns: str
) -> bool:
    """istiod sourceMatchHTTP: the match's labels are a subset of the proxy's, and the namespace agrees."""
    if any(labels.get(k) != v for k, v in source_labels or ()):
        return False
    return not source_namespace or source_namespace == ns


def _conditional(m: HTTPMatch | L4Match) -> bool:
    return bool(m.source_labels) or bool(m.source_namespace)


def conditional_matches(config: MeshConfig) -> list[tuple[MatchId, HTTPMatch | L4Match]]:
    """Every source-conditional match of the config, with its id."""
    out: list[tuple[MatchId, HTTPMatch | L4Match]] = []
    for vs in config.virtual_services:
        ref = vs.meta.ref
        by_kind: tuple[tuple[str, Sequence[HTTPRoute | L4Route]], ...] = (
            ("http", vs.http),
            ("tcp", vs.tcp),
            ("tls", vs.tls),
        )
        for kind, routes in by_kind:
            for i, r in enumerate(routes):
                matches: Sequence[HTTPMatch | L4Match] = r.matches
                for j, m in enumerate(matches):
                    if _conditional(m):
                        out.append(((ref, kind, i, j), m))
    return out


def signature(conditional: list[tuple[MatchId, HTTPMatch | L4Match]], proxy: ProxyIdentity) -> Signature:
    labels, ns = proxy_labels(proxy), proxy.namespace
    return frozenset(
        mid for mid, m in conditional if source_applies(m.source_labels, m.source_namespace, labels, ns)
    )


# HTTP and L4 routes (and their matches) are filtered alike; each kind keeps its own type
Route = TypeVar("Route", HTTPRoute, L4Route)
Match = TypeVar("Match", HTTPMatch, L4Match)


def _plain(m: Match) -> Match:
    return replace(m, source_labels=None, source_namespace="")


def _filter_routes(ref: str, kind: str, routes: tuple[Route, ...], applies: Signature) -> tuple[Route, ...]:
    """Routes with the conditional matches that do not apply removed (a route left with no match is
    dropped: it never becomes a catch-all) and those that apply turned into ordinary matches."""
    out: list[Route] = []
    for i, r in enumerate(routes):
        if not any(_conditional(m) for m in r.matches):
            out.append(r)
            continue
        kept = [
            _plain(m) if _conditional(m) else m
            for j, m in enumerate(r.matches)
            if not _conditional(m) or (ref, kind, i, j) in applies
        ]
        if kept:
            out.append(replace(r, matches=tuple(kept)))
    return tuple(out)


def _filtered_vs(vs: VirtualService, applies: Signature) -> VirtualService:
    ref = vs.meta.ref
    return replace(
        vs,
        http=_filter_routes(ref, "http", vs.http, applies),
        tcp=_filter_routes(ref, "tcp", vs.tcp, applies),
        tls=_filter_routes(ref, "tls", vs.tls, applies),
    )


@dataclass
class SourceFilter:
    """Filtered configs per signature, reused across builds while the config and signature are the same
    (unchanged IR in, the very same IR out: the translator's memo then hits by identity)."""

    _configs: dict[Signature, tuple[MeshConfig, MeshConfig]]

    def __init__(self) -> None:
        self._configs = {}

    def groups(
        self, config: MeshConfig, proxies: Iterable[ProxyIdentity]
    ) -> list[tuple[Signature | None, MeshConfig, list[ProxyIdentity]]]:
        """(signature, config to translate, proxies). One group with signature None when nothing in the
        config depends on the client; gateways always translate the config as written (signature None)."""
        proxies = list(proxies)
        conditional = conditional_matches(config)
        if not conditional:
            self._configs = {}
            return [(None, config, proxies)]
        by_sig: dict[Signature | None, list[ProxyIdentity]] = {}
        for proxy in proxies:
            sig = None if proxy.mode is ProxyMode.GATEWAY else signature(conditional, proxy)
            by_sig.setdefault(sig, []).append(proxy)
        out: list[tuple[Signature | None, MeshConfig, list[ProxyIdentity]]] = []
        configs: dict[Signature, tuple[MeshConfig, MeshConfig]] = {}
        for sig, members in by_sig.items():
            if sig is None:
                out.append((None, config, members))
                continue
            found = self._configs.get(sig)
            if found is None or found[0] is not config:
                conditional_refs = {mid[0] for mid, _ in conditional}
                vss = tuple(
                    _filtered_vs(vs, sig) if vs.meta.ref in conditional_refs else vs
                    for vs in config.virtual_services
                )
                found = (config, replace(config, virtual_services=vss))
            configs[sig] = found
            out.append((sig, found[1], members))
        self._configs = configs
        return out


def config_for(config: MeshConfig, proxy: ProxyIdentity) -> MeshConfig:
    """The config one proxy's routes are translated from (reference path; no reuse across calls)."""
    ((_, found, _),) = SourceFilter().groups(config, [proxy])
    return found
