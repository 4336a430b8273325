"""What security translation needs but must not produce itself, resolved before build() (xds/pipeline.py):
certificates are issued by the mesh CA and credential files are read there, so the translator stays a pure
function of the config, the proxies and these values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from xds.translate.security.credentials import Credential
from xds.types import Resource


@dataclass(frozen=True, slots=True)
class SecurityInputs:
    """workload_secrets: proxy id -> its SDS `default` + `ROOTCA` Secrets (mesh mTLS without agents).
    credentials: Gateway credentialName -> its loaded Secrets. unavailable: credentialName -> why it could
    not be loaded (the hint of the missing-credential diagnostic)."""

    workload_secrets: Mapping[str, tuple[Resource, ...]] = field(default_factory=dict)
    credentials: Mapping[str, Credential] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)


NO_INPUTS = SecurityInputs(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))
