"""RequestAuthentication jwksUri outside the mesh: the control plane fetches the JWKS when the config is
applied and the translator inlines it as local_jwks (istiod's "istiod fetches" JWKS resolver mode).

A fetched JWKS is reused for REFRESH_S; after that the next compile fetches it again, and keeps the old copy
(with a warning) if the issuer does not answer. Compilation is synchronous (it runs off the event loop), so
the aiohttp requests run on a private event loop in a helper thread, with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from xds.model.security import FETCHED_JWKS

TIMEOUT_S = 5.0  # istiod's default jwksFetch timeout
REFRESH_S = 300.0  # istiod's default JWKS cache duration
MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class FetchResult:
    uri: str
    text: str = ""
    error: str = ""  # empty = fetched (or still fresh)
    stale: bool = False  # the fetch failed but an earlier copy is kept


_fetched_at: dict[str, float] = {}


async def _fetch_one(session: object, uri: str) -> tuple[str, str]:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    try:
        async with session.get(uri) as resp:
            body = await resp.content.read(MAX_BYTES + 1)
            if resp.status != 200:
                return "", f"HTTP {resp.status}"
            if len(body) > MAX_BYTES:
                return "", f"larger than {MAX_BYTES} bytes"
            return body.decode("utf-8", errors="replace"), ""
    except TimeoutError:
        return "", "timed out"
    except aiohttp.ClientError as exc:
        return "", str(exc) or type(exc).__name__


async def _fetch_all(uris: list[str], limit_s: float) -> list[tuple[str, str]]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_s)) as session:
        return list(await asyncio.gather(*(_fetch_one(session, u) for u in uris)))


def fetch_jwks(uris: list[str], timeout: float = TIMEOUT_S, now: float | None = None) -> list[FetchResult]:
    """Fetch (or reuse while fresh) each JWKS; results in the order of uris."""
    clock = time.monotonic() if now is None else now
    due = [u for u in dict.fromkeys(uris) if u not in FETCHED_JWKS or clock - _fetched_at[u] >= REFRESH_S]
    answers: dict[str, tuple[str, str]] = {}
    if due:
        with ThreadPoolExecutor(1, thread_name_prefix="jwks-fetch") as pool:
            got = pool.submit(asyncio.run, _fetch_all(due, timeout)).result()
        answers = dict(zip(due, got, strict=True))
    out: list[FetchResult] = []
    for uri in uris:
        if uri not in answers:
            out.append(FetchResult(uri, FETCHED_JWKS[uri]))
            continue
        text, error = answers[uri]
        if not error:
            FETCHED_JWKS[uri] = text
            _fetched_at[uri] = clock
            out.append(FetchResult(uri, text))
        elif uri in FETCHED_JWKS:
            out.append(FetchResult(uri, FETCHED_JWKS[uri], error, stale=True))
        else:
            out.append(FetchResult(uri, "", error))
    return out
