"""--address-map: where an imported endpoint is reached from here (Pod IPs only route inside the cluster).

The file is a YAML map, one entry per endpoint or endpoint port:

    10.244.0.12: 127.0.0.1:19081          # a Pod IP (every port keeps its number unless the value has one)
    10.244.0.13:9080: 127.0.0.1:19082     # one port of a Pod IP
    default/reviews-v3-6d7f5b8c9a-p2vnr: 127.0.0.1   # a Pod by namespace/name

The same map is also a document the control plane reads (so `mecha apply` of raw kubectl files, the API and
`mecha import --address-map` give the same registry), its entries under spec.addresses:

    apiVersion: mecha.io/v1alpha1
    kind: AddressMap
    metadata: {name: cluster-to-local}
    spec:
      addresses:
        10.244.0.12: 127.0.0.1:19081
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class AddressMapError(ValueError):
    """The map file is unreadable or an entry is malformed; the message names the file and the entry."""


def _split_port(text: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]:port' or a bare IPv6 address -> (host, port or None)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, None


@dataclass(frozen=True)
class AddressMap:
    """(address or ns/pod, port or None) -> (host, port or None: keep the endpoint's)."""

    entries: Mapping[tuple[str, int | None], tuple[str, int | None]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.entries)

    @classmethod
    def parse(cls, raw: object, where: str) -> AddressMap:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise AddressMapError(
                f"{where}: expected a map of 'pod IP[:port]' or 'namespace/pod[:port]' to 'host[:port]'"
            )
        entries: dict[tuple[str, int | None], tuple[str, int | None]] = {}
        for key, value in raw.items():
            try:
                source, target = _split_port(str(key)), _split_port(str(value))
                for port in (source[1], target[1]):
                    if port is not None and not 0 < port < 65536:
                        raise ValueError(f"port {port} out of range")
                if "/" not in source[0]:
                    ipaddress.ip_address(source[0])
                if not target[0]:
                    raise ValueError("no host")
            except ValueError as exc:
                raise AddressMapError(f"{where}: entry {key!r}: {value!r}: {exc}") from None
            entries[source] = target
        return cls(entries)

    @classmethod
    def load(cls, path: str | Path) -> AddressMap:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise AddressMapError(f"--address-map {path}: cannot read: {exc}") from None
        return cls.parse(raw, f"--address-map {path}")

    def merged(self, other: AddressMap) -> tuple[AddressMap, list[str]]:
        """Both maps' entries; the keys they map to different targets (this map's target is kept)."""
        entries = dict(other.entries)
        conflicts = [_show(key) for key, target in self.entries.items() if entries.get(key, target) != target]
        entries.update(self.entries)
        return AddressMap(entries), conflicts

    def resolve(self, address: str, pod: str, port: int) -> tuple[str, int] | None:
        """Where (address, port) of the Pod `pod` (namespace/name, or '') is reached; None when not mapped."""
        for key in ((address, port), (pod, port), (address, None), (pod, None)):
            found = self.entries.get(key) if key[0] else None
            if found is not None:
                return found[0], found[1] if found[1] is not None else port
        return None


def _show(key: tuple[str, int | None]) -> str:
    return key[0] if key[1] is None else f"{key[0]}:{key[1]}"
