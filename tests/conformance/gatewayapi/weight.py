"""conformance/utils/weight: the weighted-distribution check the suite's *Weight tests share (500 requests,
10 at a time, each backend's share within 5 points of its weight), and the random entropy each request
carries so no layer can answer them all alike."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

MAX_TEST_RETRIES = 10
CONCURRENT_REQUESTS = 10
TOLERANCE = 0.05
TOTAL_REQUESTS = 500


def backend_name(pod: str) -> str:
    """extractBackendName: the pod name without its deployment and pod hash suffixes."""
    parts = pod.split("-")
    return pod if len(parts) < 3 else "-".join(parts[:-2])


def add_random_entropy() -> str | None:
    """AddRandomEntropy: half the time nothing, else a random value below 10000 (the caller's header)."""
    return None if secrets.randbelow(2) == 0 else str(secrets.randbelow(10000))


async def weighted_distribution(send: Callable[[], Awaitable[str]], expected: dict[str, float]) -> str:
    """TestWeightedDistribution: '' when the pods `send` reaches are spread as `expected` says, else why
    not. A request error or an unexpected backend fails the round at once, as in Go."""
    seen: dict[str, int] = {}
    limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def one() -> None:
        async with limit:
            pod = await send()
        backend = backend_name(pod)
        if backend not in expected:
            raise LookupError(
                f"request was handled by an unexpected pod {pod!r} (extracted backend: {backend!r})"
            )
        seen[backend] = seen.get(backend, 0) + 1

    try:
        await asyncio.gather(*(one() for _ in range(TOTAL_REQUESTS)))
    except Exception as exc:  # errgroup: the first error fails the round
        return f"error while sending requests: {exc}"
    errors = []
    active = sum(1 for w in expected.values() if w > 0.0)
    if len(seen) != active:
        errors.append(f"expected {active} backends to receive traffic, but got {len(seen)}")
    for backend, want in expected.items():
        if backend not in seen and want != 0.0:
            errors.append(f"expect traffic to hit backend {backend!r} - but none was received")
            continue
        got = seen.get(backend, 0) / TOTAL_REQUESTS
        if abs(got - want) > TOLERANCE:
            errors.append(
                f"backend {backend!r} weighted traffic of {got} not within tolerance {want} (+/-{TOLERANCE})"
            )
    return "; ".join(sorted(errors))
