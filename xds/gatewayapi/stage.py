"""The compile stage's hook (xds.model.mesh.build_mesh): Gateway API documents are read as they come, and
converted once the registry services are known (a backend's existence decides its ResolvedRefs).

Imports of this package are made on first use: xds.model imports this module while the package's own
modules import xds.model (schema, resources), whichever of the two is imported first."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xds.diagnostics import Diagnostic
    from xds.gatewayapi.convert import Conversion
    from xds.gatewayapi.documents import GatewayApiInputs
    from xds.model.resources import Service
    from xds.sources.loader import RawDocument


class GatewayApiStage:
    def __init__(self) -> None:
        self.inputs: GatewayApiInputs | None = None

    def read(self, doc: RawDocument) -> list[Diagnostic]:
        from xds.gatewayapi.documents import GatewayApiInputs, read_document

        obj, diags = read_document(doc)
        if obj is not None:
            if self.inputs is None:  # not `or`: inputs holding only Namespaces or grants are falsy
                self.inputs = GatewayApiInputs()
            self.inputs.add(obj)
        return diags

    def read_namespace(self, doc: RawDocument) -> list[Diagnostic]:
        """A Namespace document: its labels decide allowedRoutes namespace selectors."""
        from xds.gatewayapi.documents import GatewayApiInputs, read_namespace

        found, diags = read_namespace(doc)
        if found is not None:
            if self.inputs is None:  # not `or`: inputs holding only Namespaces or grants are falsy
                self.inputs = GatewayApiInputs()
            self.inputs.add(found)
        return diags

    def read_config_map(self, doc: RawDocument) -> list[Diagnostic]:
        """A ConfigMap document: its ca.crt is the CA bundle of BackendTLSPolicies naming it."""
        from xds.gatewayapi.documents import GatewayApiInputs, read_config_map

        found, diags = read_config_map(doc)
        if found is not None:
            if self.inputs is None:
                self.inputs = GatewayApiInputs()
            self.inputs.add(found)
        return diags

    def convert(self, services: tuple[Service, ...]) -> Conversion:
        from xds.gatewayapi.convert import Conversion, convert

        if self.inputs is None:
            return Conversion()
        return convert(self.inputs, {s.host: s for s in services})
