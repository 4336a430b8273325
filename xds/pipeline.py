"""Facade used by the control plane: load -> model -> graph validation -> resolve inputs -> translate.

docs, diags = load_paths(["config/"])
result = compile_documents(docs)          # MeshConfig + diagnostics (errors refuse the config)
snapshots = SnapshotBuilder().build(result.config, proxies, changed_at, version)

The translator (xds.translate) is pure; this module's SnapshotBuilder first resolves what it must not do
itself: issue the proxies' workload certificates (xds.ca) and read Gateway credential files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from xds.credential_files import CredentialStore
from xds.diagnostics import Diagnostic, Location, Severity
from xds.inputs import EMPTY_INPUTS, ResolvedInputs
from xds.model.jwks_fetch import resolve_jwks
from xds.model.mesh import MeshConfig, build_mesh
from xds.model.security_checks import check_security
from xds.proxy import ProxyIdentity, ProxyMode
from xds.sources.loader import RawDocument
from xds.sources.loader import load_paths as _load_paths
from xds.sources.loader import load_text as _load_text
from xds.translate import builder as _translate
from xds.translate.decode import resource_to_dict
from xds.translate.gateway import credential_names
from xds.translate.normalize import DEFAULT_PATH_NORMALIZATION, PathNormalization
from xds.translate.resiliency import check_resiliencies
from xds.translate.security.mtls import proxy_spiffe_ids
from xds.translate.security.resolved import SecurityInputs
from xds.types import Resource, Snapshot
from xds.validate.checks import validate
from xds.validate.strict import promote_strict

if TYPE_CHECKING:
    from xds.ca.workload import WorkloadCertificates

__all__ = [
    "CompileResult",
    "RawDocument",
    "SnapshotBuilder",
    "compile_documents",
    "load_paths",
    "load_text",
    "resource_to_dict",
]


Inputs = ResolvedInputs | Callable[[MeshConfig], ResolvedInputs] | None


@dataclass
class CompileResult:
    config: MeshConfig | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    skipped: list[Location] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]


def compile_documents(docs: list[RawDocument], strict: bool = False, inputs: Inputs = None) -> CompileResult:
    """Model + graph validation. config is None when any error was found (the config is refused). strict:
    references istiod accepts with a warning (missing host/subset/port, a younger duplicate) are refused.
    inputs: the JWKS/credentials the config names, resolved with its version (or a function resolving them
    from the model: xds/controlplane/inputs.py); None: JWKS are fetched/read now (mecha validate)."""
    model = build_mesh(docs)
    if inputs is None:
        inputs = ResolvedInputs.of(resolve_jwks(model.config, EMPTY_INPUTS), [])
    elif not isinstance(inputs, ResolvedInputs):
        inputs = inputs(model.config)
    config = replace(model.config, inputs=inputs)
    diags = list(model.diagnostics)
    diags += promote_strict(validate(config)) if strict else validate(config)
    diags += check_security(config)  # security kinds + Gateway
    diags += check_resiliencies(config.resiliencies)  # Dapr policies Envoy cannot express
    ok = not any(d.severity is Severity.ERROR for d in diags)
    return CompileResult(config if ok else None, diags, model.skipped)


def load_paths(paths: list[str | Path]) -> tuple[list[RawDocument], list[Diagnostic]]:
    return _load_paths(paths)


def load_text(text: str, filename: str = "<inline>") -> tuple[list[RawDocument], list[Diagnostic]]:
    return _load_text(text, filename)


class SnapshotBuilder(_translate.SnapshotBuilder):
    """The translator's builder with its inputs resolved first, on every build: the CA issues (or keeps) each
    proxy's workload certificate and the Gateway credentials are read; translation then only reads them."""

    def __init__(
        self,
        certs: WorkloadCertificates | None = None,
        credentials: CredentialStore | None = None,
        route_tables: str = "auto",
        path_normalization: PathNormalization | str = DEFAULT_PATH_NORMALIZATION,
        agent_sds: bool = False,
    ) -> None:
        """certs: the control-plane CA's per-proxy certificates; given = mesh mTLS (SDS, auto-mTLS).
        credentials: where Gateway `tls.credentialName` certificates are read (None: none configured)."""
        trust_domain = certs.trust_domain if certs is not None else None
        super().__init__(trust_domain, route_tables, path_normalization, agent_sds)
        self.certs = certs
        self.credentials = credentials or CredentialStore(None)
        self._ids: dict[str, tuple[tuple[object, ...], tuple[str, ...]]] = {}  # proxy id -> (inputs, SANs)

    def build(
        self,
        config: MeshConfig,
        proxies: Iterable[ProxyIdentity],
        changed_at: float = 0.0,
        config_version: str = "",
        inputs: SecurityInputs | None = None,
    ) -> dict[str, Snapshot]:
        """inputs: given, used as they are (nothing is resolved)."""
        proxies = list(proxies)
        resolved = inputs if inputs is not None else self.resolve(config, proxies)
        return super().build(config, proxies, changed_at, config_version, resolved)

    def resolve(self, config: MeshConfig, proxies: list[ProxyIdentity]) -> SecurityInputs:
        names: set[str] = set()
        for proxy in proxies:
            if proxy.mode is ProxyMode.GATEWAY:
                names |= credential_names(proxy, config)
        loaded = self.credentials.load(names, config.inputs) if names else {}
        unavailable = {n: self.credentials.describe(n) for n in sorted(names - loaded.keys())}
        return SecurityInputs(self._workload_secrets(config, proxies), loaded, unavailable)

    def _workload_secrets(
        self, config: MeshConfig, proxies: list[ProxyIdentity]
    ) -> Mapping[str, tuple[Resource, ...]]:
        """Each Envoy proxy's `default` + `ROOTCA` (a proxyless client gets no SDS); the CA reissues only
        what passed its rotation point or changed identities, else the same Resource objects come back."""
        certs = self.certs
        if certs is None or not self.security.serves_workload_secrets():
            return {}
        td = certs.trust_domain
        out: dict[str, tuple[Resource, ...]] = {}
        for proxy in proxies:
            if proxy.mode is ProxyMode.PROXYLESS:
                continue
            key = (proxy, config.workload_entries, td)
            found = self._ids.get(proxy.id)
            if found is None or not all(a is b or a == b for a, b in zip(found[0], key, strict=True)):
                found = self._ids[proxy.id] = (key, proxy_spiffe_ids(proxy, config, td))
            out[proxy.id] = certs.secrets(proxy.id, found[1])
        return out

    def forget(self, proxy_id: str) -> None:
        super().forget(proxy_id)
        self._ids.pop(proxy_id, None)
