"""TLSRoute and TCPRoute rules -> VirtualService tls[] / tcp[] routes (xds.model), as istiod converts them:
a TLSRoute on a Passthrough listener routes by SNI (its hostnames intersected with the listener's), a
TCPRoute takes every connection of its listener's port. Weighted backends as for HTTPRoute; a rule without
a usable backend gets no destination, and the gateway closes its connections (the spec: reject them)."""

from __future__ import annotations

from dataclasses import dataclass

from xds.gatewayapi import objects
from xds.gatewayapi.routes import Resolver, RuleOutcome, destinations
from xds.model.resources import RouteDestination
from xds.model.traffic import L4Match, L4Route


@dataclass
class L4Outcome(RuleOutcome):
    destinations: tuple[RouteDestination, ...] = ()


def convert_l4_rule(route: objects.L4Route, rule: objects.L4Rule, resolver: Resolver) -> L4Outcome:
    outcome = L4Outcome()
    outcome.destinations = destinations(rule, route.meta.namespace, resolver, outcome, route.meta.kind)
    return outcome


def l4_routes(port: int, hosts: list[str], kept: list[RuleOutcome], tls: bool) -> list[L4Route]:
    """The model routes of one attached TLSRoute (tls: SNI names hosts) or TCPRoute on a listener port."""
    match = L4Match(port=port, sni_hosts=tuple(hosts) if tls else ())
    return [
        L4Route(index=0, matches=(match,), route=o.destinations) for o in kept if isinstance(o, L4Outcome)
    ]
