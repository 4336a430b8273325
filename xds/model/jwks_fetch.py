"""RequestAuthentication jwksUri outside the mesh, and file:// ones: resolved by the control plane when a
change is accepted (and by the leader's periodic refresh), stored with the version (xds.inputs), and
inlined as local_jwks by the translator (istiod's "istiod fetches" JWKS resolver mode).

A change reuses the stored copy of a URI it already has; only new URIs are fetched. A refresh fetches them
all (istiod: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL) and keeps the old copy, with the error, when the issuer does
not answer. Compilation is synchronous (it runs off the event loop), so the aiohttp requests run on a private
event loop in a helper thread, with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from xds.inputs import JwksInput, ResolvedInputs
from xds.model.mesh import MeshConfig
from xds.model.security import jwks_uri_target, read_jwks_uri

TIMEOUT_S = 5.0  # istiod's default jwksFetch timeout
MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class FetchResult:
    uri: str
    text: str = ""
    error: str = ""  # empty = fetched
    stale: bool = False  # the fetch failed but an earlier copy is kept


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


def fetch_jwks(uris: list[str], timeout: float = TIMEOUT_S) -> list[FetchResult]:
    """Fetch each JWKS now; results in the order of uris."""
    due = list(dict.fromkeys(uris))
    if not due:
        return []
    with ThreadPoolExecutor(1, thread_name_prefix="jwks-fetch") as pool:
        got = dict(zip(due, pool.submit(asyncio.run, _fetch_all(due, timeout)).result(), strict=True))
    return [FetchResult(u, *got[u]) for u in uris]


def jwks_uris(config: MeshConfig) -> list[str]:
    """jwksUris the control plane resolves: http(s) ones that do not name a mesh service (a mesh service's
    JWKS is fetched by the proxy through its cluster) and file:// ones."""
    out: list[str] = []
    for res in config.carried:
        if res.meta.kind != "RequestAuthentication":
            continue
        try:
            rules = json.loads(res.spec_json).get("jwtRules") or ()
        except (ValueError, AttributeError):
            continue
        for rule in rules:
            if not isinstance(rule, dict) or rule.get("jwks"):
                continue
            uri = str(rule.get("jwksUri") or "")
            if uri.startswith("file://"):
                out.append(uri)
            elif uri.startswith(("http://", "https://")):
                if jwks_uri_target(uri, config.service_by_host, res.meta.namespace) is None:
                    out.append(uri)
    return sorted(set(out))


def _read_file(uri: str) -> JwksInput:
    try:
        return JwksInput(uri, read_jwks_uri(uri))
    except OSError as exc:
        return JwksInput(uri, "", exc.strerror or str(exc))


def resolve_jwks(
    config: MeshConfig, previous: ResolvedInputs, refresh: bool = False, timeout: float = TIMEOUT_S
) -> list[JwksInput]:
    """The JWKS every resolvable jwksUri of `config` gets: the stored copy of `previous` when there is one
    (refresh=False), else fetched / read now. A failed refresh keeps the previous text with the error."""
    before = previous.jwks_by_uri()
    wanted = jwks_uris(config)
    due = [u for u in wanted if refresh or u not in before or (before[u].error and not before[u].text)]
    fresh: dict[str, JwksInput] = {}
    remote = [u for u in due if not u.startswith("file://")]
    for got in fetch_jwks(remote, timeout):
        fresh[got.uri] = JwksInput(got.uri, got.text, got.error)
    for uri in (u for u in due if u.startswith("file://")):
        fresh[uri] = _read_file(uri)
    out: list[JwksInput] = []
    for uri in wanted:
        now = fresh.get(uri)
        if now is None:
            out.append(before[uri])
        elif now.error and uri in before and before[uri].text:
            out.append(JwksInput(uri, before[uri].text, now.error))  # keep the last good copy
        else:
            out.append(now)
    return out
