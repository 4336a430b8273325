"""The cluster-less targets of the share of invalid backendRefs (the spec: requests that would have gone to an
invalid backend get a 500, in proportion to its weight). A weighted-cluster entry names a cluster that never
exists; Envoy answers its cluster_not_found_response_code, set to 500 for HTTPRoute routes (gRPC keeps
Envoy's default 503, UNAVAILABLE, as a GRPCRoute without a usable backend answers).

The hosts hold a `:`, which no registry host (a DNS name) has, so they never name a real cluster. Kept free
of imports: xds.translate and xds.validate read it.
"""

from __future__ import annotations

INVALID_HTTP_BACKEND = "gateway-api:invalid-backend"  # answered 500
INVALID_GRPC_BACKEND = "gateway-api:invalid-grpc-backend"  # answered 503 (gRPC UNAVAILABLE)
INVALID_BACKENDS = frozenset((INVALID_HTTP_BACKEND, INVALID_GRPC_BACKEND))
GENERATED_PREFIX = "gateway-api."  # the names of the VirtualServices converted from Gateway API routes

GATEWAY_API_ORIGIN = "gateway-api"  # Meta.origin of the VirtualServices converted from Gateway API routes
