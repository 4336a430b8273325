"""istio.v1.auth.IstioCertificateService messages (security/proto/pb/ca.proto), built at import with protobuf.

    IstioCertificateRequest  { string csr = 1; int64 validity_duration = 3; Struct metadata = 4; }
    IstioCertificateResponse { repeated string cert_chain = 1; }

Agents speak the same shape as istio-agent does to istiod, so the endpoint is familiar and inspectable.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "istio.v1.auth.IstioCertificateService"
METHOD = "CreateCertificate"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


def _build() -> tuple[type[Any], type[Any]]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="mecha/istio_ca.proto", package="istio.v1.auth", syntax="proto3"
    )
    req = fdp.message_type.add(name="IstioCertificateRequest")
    req.field.add(name="csr", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)  # fmt: skip
    req.field.add(name="validity_duration", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)  # fmt: skip
    resp = fdp.message_type.add(name="IstioCertificateResponse")
    resp.field.add(name="cert_chain", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                   label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    return (
        message_factory.GetMessageClass(fd.message_types_by_name["IstioCertificateRequest"]),
        message_factory.GetMessageClass(fd.message_types_by_name["IstioCertificateResponse"]),
    )


CertificateRequest, CertificateResponse = _build()
