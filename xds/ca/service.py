"""The CA endpoint on the xDS port: a workload's CSR in, its certificate chain out; never a private key.

istio.v1.auth.IstioCertificateService/CreateCertificate, authenticated by the workload credential in the
`authorization` metadata. The CA signs only the SPIFFE ids the credential names: a CSR asking for another
namespace or service account is refused with PERMISSION_DENIED naming the SAN.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import grpc
from cryptography import x509

from xds.ca.authority import CertificateAuthority
from xds.ca.messages import METHOD, SERVICE, CertificateRequest, CertificateResponse
from xds.identity.authenticator import Authenticator, AuthError, metadata_dict

log = logging.getLogger(__name__)


class CertificateService:
    def __init__(self, ca: CertificateAuthority, authenticator: Authenticator, max_ttl: timedelta) -> None:
        self.ca = ca
        self.authenticator = authenticator
        self.max_ttl = max_ttl
        self.issued = 0

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.unary_unary_rpc_method_handler(
            self._create,
            request_deserializer=CertificateRequest.FromString,
            response_serializer=CertificateResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})

    async def _create(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return self.sign(request, metadata_dict(context.invocation_metadata()))
        except AuthError as exc:
            log.warning("certificate request from %s refused: %s", context.peer(), exc.message)
            await context.abort(exc.code, exc.message)

    def sign(self, request: Any, metadata: dict[str, str]) -> Any:
        """The response for a request, or AuthError (status + message naming the field)."""
        cred = self.authenticator.credential(metadata)
        try:
            csr = x509.load_pem_x509_csr(request.csr.encode())
        except ValueError:
            raise AuthError(grpc.StatusCode.INVALID_ARGUMENT, "csr: not a PEM certificate request") from None
        if not csr.is_signature_valid:
            raise AuthError(grpc.StatusCode.INVALID_ARGUMENT, "csr: its signature does not match its key")
        allowed = cred.spiffe_ids(self.ca.trust_domain)
        try:
            requested = tuple(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                              .get_values_for_type(x509.UniformResourceIdentifier))  # fmt: skip
        except x509.ExtensionNotFound:
            requested = ()
        for san in requested:
            if san not in allowed:
                raise AuthError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"csr: SAN {san} is not an identity credential {cred.jti} of proxy {cred.proxy_id!r} "
                    f"names (allowed: {', '.join(allowed)})",
                )
        ttl = self.max_ttl
        if request.validity_duration > 0:
            ttl = min(ttl, timedelta(seconds=request.validity_duration))
        # a certificate never outlives the credential it was issued on (revocation by expiry stays true)
        ttl = min(ttl, timedelta(seconds=cred.expires_at - time.time()))
        if ttl <= timedelta(0):
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "metadata authorization: credential expired")
        chain = self.ca.sign_public_key(csr.public_key(), requested or allowed, ttl)
        self.issued += 1
        log.info("signed %s for proxy %s (%.0fs)", ", ".join(requested or allowed), cred.proxy_id,
                 ttl.total_seconds())  # fmt: skip
        return CertificateResponse(cert_chain=[pem.decode() for pem in chain])  # leaf ... trust bundle
