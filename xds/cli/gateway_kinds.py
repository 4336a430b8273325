"""The Gateway API resource types `mecha get` knows: kubectl's names for them (plural, singular, short names
of the CRDs, `TYPE.gateway.networking.k8s.io`) and their table columns (the CRDs' additionalPrinterColumns).

Light on purpose: `mecha get` loads it at start-up."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "gateway.networking.k8s.io"


@dataclass(frozen=True)
class ResourceType:
    kind: str
    plural: str
    short: tuple[str, ...] = ()
    namespaced: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        base = (self.plural, self.kind.lower(), *self.short)
        return base + tuple(f"{n}.{GROUP}" for n in (self.plural, self.kind.lower()))

    @property
    def qualified(self) -> str:
        """kubectl's NAME prefix when several types are listed: `gateway.gateway.networking.k8s.io`."""
        return f"{self.kind.lower()}.{GROUP}"


# kubectl's order for `get all`-like listings: classes, gateways, then routes and policies
TYPES = (
    ResourceType("GatewayClass", "gatewayclasses", ("gc",), namespaced=False),
    ResourceType("Gateway", "gateways", ("gtw",)),
    ResourceType("HTTPRoute", "httproutes"),
    ResourceType("GRPCRoute", "grpcroutes"),
    ResourceType("TLSRoute", "tlsroutes"),
    ResourceType("TCPRoute", "tcproutes"),
    ResourceType("UDPRoute", "udproutes"),
    ResourceType("ReferenceGrant", "referencegrants", ("refgrant",)),
    ResourceType("BackendTLSPolicy", "backendtlspolicies", ("btlspolicy",)),
)
_BY_NAME = {name: t for t in TYPES for name in t.names}


class UnknownType(ValueError):
    """A type name `mecha get` does not know; the message lists the ones it does."""


def resolve(name: str) -> ResourceType:
    found = _BY_NAME.get(name.strip().lower())
    if found is None:
        known = ", ".join(f"{t.plural}" + (f" ({', '.join(t.short)})" if t.short else "") for t in TYPES)
        raise UnknownType(
            f'the server doesn\'t have a resource type "{name}" (Gateway API types Mecha serves: {known})'
        )
    return found


def parse_types(spec: str) -> list[ResourceType]:
    """`gateways,httproutes` -> the types, each once, in the order given."""
    out: list[ResourceType] = []
    for part in spec.split(","):
        if not part.strip():
            raise UnknownType(f"{spec!r}: an empty resource type")
        found = resolve(part)
        if found not in out:
            out.append(found)
    return out
