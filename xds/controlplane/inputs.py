"""Resolving what a config names but does not contain, once, on the replica that accepts a change.

A change's JWKS (RequestAuthentication jwksUri outside the mesh, file://) and Gateway credentialName
certificates are resolved before it is compiled (the translator stays pure: it gets them in
MeshConfig.inputs), stored with the version in the same transaction (xds/controlplane/store/), and every other
replica serves that stored copy: replicas emit identical bytes and a rollback restores the inputs of the
version it returns to. A change reuses the stored copy of what it already had; a refresh (the leader's JWKS
job, a credentials folder change) resolves again and, when something differs, makes a version of its own
with source `inputs:<why>`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from xds.controlplane.store.plan import InputRefresh
from xds.inputs import CredentialInput, ResolvedInputs

if TYPE_CHECKING:
    from xds.model.mesh import MeshConfig

SOURCE_JWKS_REFRESH = "inputs:jwks-refresh"
SOURCE_CREDENTIALS = "inputs:credentials"
ENV_JWKS_REFRESH = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"  # istiod's name and default (20m)
DEFAULT_JWKS_REFRESH_S = 20 * 60.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, name: str) -> float:
    """A Go-style duration (`20m`, `90s`, `500ms`, `1h`) in seconds; ValueError naming the setting."""
    found = _DURATION.match(text.strip())
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"{name}={text!r}: expected a positive duration such as 20m, 90s or 500ms")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def jwks_refresh_interval() -> float:
    raw = os.environ.get(ENV_JWKS_REFRESH, "")
    return parse_duration(raw, ENV_JWKS_REFRESH) if raw else DEFAULT_JWKS_REFRESH_S


def gateway_credential_names(config: MeshConfig) -> set[str]:
    """credentialName of every HTTPS server of every Gateway (those the gateways' SDS secrets come from)."""
    from xds.model.gateway import gateways

    return {
        s.tls.credential_name
        for gw in gateways(config.carried)
        for s in gw.servers
        if s.protocol == "HTTPS" and s.tls is not None and s.tls.credential_name
    }


def gateway_credential_namespaces(config: MeshConfig) -> dict[str, set[str]]:
    """credentialName -> namespaces of the Gateways naming it (a Secret NAME is one of the Gateway's own
    namespace: xds/credential_files.py secret_ref)."""
    from xds.model.gateway import gateways

    out: dict[str, set[str]] = {}
    for gw in gateways(config.carried):
        for s in gw.servers:
            if s.protocol == "HTTPS" and s.tls is not None and s.tls.credential_name:
                out.setdefault(s.tls.credential_name, set()).add(gw.meta.namespace)
    return out


class InputResolver:
    """The ConfigStore's resolver (store/config.py Resolver). config_folders: the watched folders whose
    `kubernetes.io/tls` Secret documents are credentials too (xds/sources/secrets.py)."""

    def __init__(
        self,
        credentials_folder: Path | None,
        jwks_timeout: float | None = None,
        config_folders: tuple[Path, ...] = (),
    ) -> None:
        from xds.sources.secrets import TlsSecrets

        self.credentials_folder = credentials_folder
        self.jwks_timeout = jwks_timeout
        self.secrets = TlsSecrets(config_folders)

    def resolving(
        self, previous: ResolvedInputs, refresh: InputRefresh
    ) -> Callable[[MeshConfig], ResolvedInputs]:
        def resolve(config: MeshConfig) -> ResolvedInputs:
            from xds.credential_files import resolve_credentials
            from xds.model.jwks_fetch import TIMEOUT_S, resolve_jwks

            timeout = self.jwks_timeout if self.jwks_timeout is not None else TIMEOUT_S
            jwks = resolve_jwks(config, previous, refresh.jwks, timeout)
            known = {c.name: c for c in previous.credentials}
            names = gateway_credential_names(config)
            kept: list[CredentialInput] = []
            due: set[str] = set()
            for name in names:
                # a Secret document is config: read again with every change (its folder's change made it)
                if name in known and not refresh.credentials and not known[name].secret:
                    kept.append(known[name])
                else:
                    due.add(name)
            spaces = gateway_credential_namespaces(config)
            found = resolve_credentials(self.credentials_folder, due, self.secrets, spaces)
            return ResolvedInputs.of(jwks, kept + found)

        return resolve

    def credentials_differ(self, config: MeshConfig | None, inputs: ResolvedInputs) -> bool:
        """Do the credential files differ from what `inputs` stored (cheap: no compile)? A replica that
        starts after a renewal, or the leader's periodic check, then makes an inputs:credentials version."""
        from xds.credential_files import resolve_credentials

        if config is None or (self.credentials_folder is None and not self.secrets.folders):
            return False
        names = gateway_credential_names(config)
        spaces = gateway_credential_namespaces(config)
        found = resolve_credentials(self.credentials_folder, names, self.secrets, spaces)
        return ResolvedInputs.of([], found).credentials != inputs.credentials
