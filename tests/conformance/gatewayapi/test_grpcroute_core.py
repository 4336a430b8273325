"""Upstream GATEWAY-GRPC core tests (grpcroute-exact-method-matching.go, grpcroute-header-matching.go,
grpcroute-listener-hostname-matching.go, grpcroute-weight.go), ported case by case: RPCs to the suite's
GrpcEcho service through real gateway Envoys, answered by the grpc-infra-backend pods."""

from __future__ import annotations

import pytest
from grpc import StatusCode

from tests.conformance.gatewayapi import grpcecho
from tests.conformance.gatewayapi.suite import (
    INFRA_NS,
    MAX_TIME_TO_CONSISTENCY_S,
    ConformanceError,
    GrpcExpected,
    Suite,
)
from tests.conformance.gatewayapi.weight import MAX_TEST_RETRIES, add_random_entropy, weighted_distribution

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(900)]
G1, G2, G3 = "grpc-infra-backend-v1", "grpc-infra-backend-v2", "grpc-infra-backend-v3"
SAME = (INFRA_NS, "same-namespace")
UNIMPLEMENTED = StatusCode.UNIMPLEMENTED


@pytest.mark.gateway_conformance("GRPCExactMethodMatching")
async def test_GRPCExactMethodMatching(suite: Suite) -> None:
    async with suite.using("tests/grpcroute-exact-method-matching.yaml"):
        route = (INFRA_NS, "exact-matching")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route], kind="grpcroutes")
        await suite.grpc_expect_all(
            addr,
            [
                GrpcExpected("Echo", backend=G1, namespace=INFRA_NS),
                GrpcExpected("EchoTwo", backend=G2, namespace=INFRA_NS),
                GrpcExpected("EchoThree", code=UNIMPLEMENTED),
            ],
        )


@pytest.mark.gateway_conformance("GRPCRouteHeaderMatching")
async def test_GRPCRouteHeaderMatching(suite: Suite) -> None:
    async with suite.using("tests/grpcroute-header-matching.yaml"):
        route = (INFRA_NS, "grpc-header-matching")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route], kind="grpcroutes")

        def to(backend: str, **metadata: str) -> GrpcExpected:
            meta = {k.replace("_", "-"): v for k, v in metadata.items()}
            if backend:
                return GrpcExpected(metadata=meta, backend=backend, namespace=INFRA_NS)
            return GrpcExpected(metadata=meta, code=UNIMPLEMENTED)

        await suite.grpc_expect_all(
            addr,
            [
                to(G1, Version="one"),
                to(G2, Version="two"),
                to(G1, Version="two", Color="orange"),
                to(G2, Version="two", Color="blue"),
                to("", Color="orange"),
                to("", Some_Other_Header="one"),
                to(G1, Color="blue"),
                to(G1, Color="green"),
                to(G2, Color="red"),
                to(G2, Color="yellow"),
                to("", Color="purple"),
            ],
        )


@pytest.mark.gateway_conformance("GRPCRouteListenerHostnameMatching")
async def test_GRPCRouteListenerHostnameMatching(suite: Suite) -> None:
    async with suite.using("tests/grpcroute-listener-hostname-matching.yaml"):
        await suite.namespaces_must_be_ready([INFRA_NS])
        gw = (INFRA_NS, "grpcroute-listener-hostname-matching")
        for listeners, route in (
            (("listener-1",), "backend-v1"),
            (("listener-2",), "backend-v2"),
            (("listener-3", "listener-4"), "backend-v3"),
        ):
            addr = await suite.gateway_and_routes_must_be_accepted(
                gw, [(INFRA_NS, route)], listeners, kind="grpcroutes"
            )

        def to(authority: str, backend: str = "") -> GrpcExpected:
            if backend:
                return GrpcExpected(authority=authority, backend=backend, namespace=INFRA_NS)
            return GrpcExpected(authority=authority, code=UNIMPLEMENTED)

        await suite.grpc_expect_all(
            addr,
            [
                to("bar.com", G1),
                to("foo.bar.com", G2),
                to("baz.bar.com", G3),
                to("boo.bar.com", G3),
                to("multiple.prefixes.bar.com", G3),
                to("multiple.prefixes.foo.com", G3),
                to("foo.com"),
                to("no.matching.host"),
            ],
        )


@pytest.mark.gateway_conformance("GRPCRouteWeight")
async def test_GRPCRouteWeight(suite: Suite) -> None:
    async with suite.using("tests/grpcroute-weight.yaml"):
        route = (INFRA_NS, "weighted-backends")
        addr = await suite.gateway_and_routes_must_be_accepted(SAME, [route], kind="grpcroutes")
        await suite.grpc_expect(addr, GrpcExpected(namespace=INFRA_NS))

        async def send() -> str:
            jitter = add_random_entropy()
            chan = grpcecho.channel(addr.dial())  # a DefaultClient per request, as the Go sender makes
            try:
                got = await grpcecho.send_rpc(
                    chan,
                    "Echo",
                    {"x-jitter": jitter} if jitter is not None else {},
                    MAX_TIME_TO_CONSISTENCY_S,
                )
            finally:
                await chan.close()
            if got.code != StatusCode.OK:
                raise ConformanceError(f"expected OK response, got {got.code.name}")
            return str(got.response.assertions.context.pod)

        errors = []
        for i in range(MAX_TEST_RETRIES):
            why = await weighted_distribution(send, {G1: 0.7, G2: 0.3, G3: 0.0})
            if not why:
                return
            errors.append(f"Traffic distribution test failed ({i + 1}/{MAX_TEST_RETRIES}): {why}")
        raise ConformanceError("Weighted distribution tests failed:\n" + "\n".join(errors))
