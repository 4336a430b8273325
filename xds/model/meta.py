"""What every kind's IR starts from: a document's identity (Meta, its labels) and the carried form of the
kinds later stages read. Its own module so that resources.py can import the traffic and security parts
while those import this, with no import running back up."""

from __future__ import annotations

from dataclasses import dataclass, field

from xds.diagnostics import Location

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs


@dataclass(frozen=True, slots=True)
class Meta:
    kind: str
    namespace: str
    name: str
    location: Location = field(default_factory=Location, compare=False, hash=False, repr=False)
    # "" for documents as written; the API a document was converted from otherwise (GATEWAY_API_ORIGIN): set
    # only by code, never from YAML, so no written document can claim a converted one's rules
    origin: str = field(default="", compare=False, hash=False)

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class CarriedResource:
    """A kind accepted for later stages (Gateway, Sidecar, security policies, Dapr Configuration)."""

    meta: Meta
    api_version: str
    spec_json: str  # canonical JSON (sorted keys): hashable and comparable
    annotations: tuple[tuple[str, str], ...] = ()  # metadata.annotations (security kinds: istio.io/dry-run)
