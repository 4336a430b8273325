"""The web dashboard at /ui: a read-only page over the control plane's own state.

Login: a browser cannot send the API's bearer header on navigation, so `mecha dashboard` trades the token
for a one-time code (POST /api/v1/ui/code, 60 s, single use) and opens /ui/login?code=...; the login sets a
session cookie (HttpOnly, SameSite=Strict, path /ui) whose principal may only read the /ui paths. A code in
a browser's history is already spent; the cookie cannot call the API's writes (CSRF-safe by scope).

Live: the page holds one server-sent event stream (/ui/api/events) instead of polling, so a change shows
within 1 s whatever the phase (a poller's worst case is its period plus one answer). One feed serves every
open stream (LiveFeed): it wakes at once on a config change, reads proxy states every TICK_S (ACK/NACK has
no change signal here) and publishes the state when it differs from the last one published, and at least
every RESEND_S; each stream sends what the feed published, so N open pages cost one build per tick, not N.
Rates and capability health take network round trips (up to 2 s when one is down): one background probe
refreshes them every PROBE_EVERY_S, and the feed uses the last ones it has instead of waiting for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from xds.controlplane.api_context import CONTROL_PLANE, REDACTOR
from xds.controlplane.auth import PRINCIPAL, SCOPE_UI_READ, Principal
from xds.controlplane.auth import UI_LOGIN_PATH as LOGIN_PATH
from xds.controlplane.envoy_admin import AdminError, read_proxy_admin
from xds.controlplane.ui_graph import mesh_graph, outbound_edge_stats

log = logging.getLogger("mecha.ui")

COOKIE = "mecha_ui"
CODE_TTL_S = 60.0
SESSION_TTL_S = 12 * 3600.0
STATS_TTL_S = 0.5  # several readers of /ui/api/state share one scrape of each Envoy
TICK_S = 0.2  # how often an event stream reads the proxies' states
PROBE_EVERY_S = 1.0  # rates and capability health, shared by every open page
RESEND_S = 1.0  # an unchanged state is sent again this often: the page's "updated" time stays true
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# the cookie's principal, one object: a stream tells a cookie reader from a bearer one by identity
DASHBOARD = Principal("dashboard", frozenset({SCOPE_UI_READ}))


@dataclass
class UiSessions:
    """One-time login codes and the sessions they became (in memory: a restart logs the browser out)."""

    codes: dict[str, float] = field(default_factory=dict)
    sessions: dict[str, float] = field(default_factory=dict)

    def new_code(self) -> str:
        self._expire()
        code = secrets.token_urlsafe(24)
        self.codes[code] = time.monotonic() + CODE_TTL_S
        return code

    def redeem(self, code: str) -> str | None:
        """The code (once, before it expires) -> a new session id."""
        self._expire()
        if not code or self.codes.pop(code, None) is None:
            return None
        session = secrets.token_urlsafe(32)
        self.sessions[session] = time.monotonic() + SESSION_TTL_S
        return session

    def principal(self, request: web.Request) -> Principal | None:
        """The cookie's principal: reads the dashboard, nothing else."""
        return DASHBOARD if self.live(request.cookies.get(COOKIE, "")) else None

    def live(self, session: str) -> bool:
        """The session exists and has not expired (checked again by an open event stream)."""
        expires = self.sessions.get(session) if session else None
        return expires is not None and expires >= time.monotonic()

    def _expire(self) -> None:
        now = time.monotonic()
        for table in (self.codes, self.sessions):
            for key in [k for k, until in table.items() if until < now]:
                del table[key]


UI_SESSIONS = web.AppKey("ui_sessions", UiSessions)
STATS_CACHE = web.AppKey("ui_stats_cache", dict)
NO_CACHE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


# ---- handlers -------------------------------------------------------------------------------------------
async def new_code(request: web.Request) -> web.Response:
    """POST /api/v1/ui/code (the operator's token): a one-time login code and the URL that spends it."""
    code = request.app[UI_SESSIONS].new_code()
    return web.json_response({"code": code, "path": f"{LOGIN_PATH}?code={code}", "expires_in_s": CODE_TTL_S})


async def login(request: web.Request) -> web.Response:
    session = request.app[UI_SESSIONS].redeem(request.query.get("code", ""))
    if session is None:
        return web.Response(
            status=401,
            content_type="text/html",
            text=_page("Login code missing, expired or already used",
                       "Run <code>mecha dashboard</code> to open the dashboard with a fresh code."),
        )  # fmt: skip
    response = web.Response(status=303, headers={"Location": "/ui/"})  # json_errors rewrites raised ones
    response.set_cookie(
        COOKIE, session, httponly=True, samesite="Strict", path="/ui", max_age=int(SESSION_TTL_S)
    )
    return response


async def page(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in STATIC_TYPES:
        return web.json_response({"error": f"no dashboard file {name!r}", "diagnostics": []}, status=404)
    try:
        text = resources.files("xds.controlplane").joinpath("ui", name).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return web.json_response({"error": f"no dashboard file {name!r}", "diagnostics": []}, status=404)
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
    }
    return web.Response(text=text, content_type=STATIC_TYPES[suffix], headers=headers)


async def redirect_to_index(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/ui/"})


async def state(request: web.Request) -> web.Response:
    """Everything the page draws, in one answer, with rates and health probed now (scripts, curl)."""
    cp = _control_plane(request.app)
    proxies = cp.proxy_status()
    identities = _identities(cp)
    stats, health = await asyncio.gather(_stats(request.app, cp, proxies), _capability_health(cp, identities))
    return web.json_response(_body(cp, proxies, identities, await _history(cp), stats, health))


async def events(request: web.Request) -> web.StreamResponse:
    """GET /ui/api/events: the state as server-sent events, each time it changes (see the module doc)."""
    live = request.app[LIVE]
    sessions = request.app[UI_SESSIONS]
    # a cookie reader's session is checked on every tick: the stream ends when it expires or is removed
    cookie = request.cookies.get(COOKIE, "") if request.get(PRINCIPAL) is DASHBOARD else None
    response = web.StreamResponse(headers={**NO_CACHE, "Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")  # reconnect after 1 s (not the browser's 3 s) if cut
    live.join(request.app)
    try:
        seen = 0
        while not live.closing.is_set() and live.feed_running():
            if cookie is not None and not sessions.live(cookie):
                break
            if live.event and live.published != seen:  # no await since the check: event is current
                seen = live.published
                try:
                    await response.write(live.event)
                except (ConnectionError, RuntimeError):  # the page went away
                    break
                continue
            # the next publication after the current one: a restarted feed has not published its first
            # event yet (event empty, published left at the old feed's count), and waiting on `seen` would
            # return at once and spin without yielding, freezing the control plane
            await live.wait_published(live.published)
    finally:
        live.leave()
    return response


def _control_plane(app: web.Application) -> Any:
    return app[CONTROL_PLANE]


def _redactor(app: web.Application) -> Any:
    return app[REDACTOR]


def _identities(cp: Any) -> dict[str, Any]:
    return {p.id: p for p in cp.server.proxies()} if getattr(cp, "server", None) else {}


def _body(
    cp: Any,
    proxies: list[dict[str, Any]],
    identities: dict[str, Any],
    history: list[dict[str, Any]],
    stats: dict[str, dict[str, Any]],
    health: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    config = cp.config_view()
    return {
        "version": config["version"],
        "at": time.time(),
        "proxies": proxies,
        "graph": mesh_graph(config["documents"], proxies, identities, stats),
        "documents": [
            {k: d[k] for k in ("kind", "namespace", "name", "source", "file")} for d in config["documents"]
        ],
        "history": history,
        "last_refused": getattr(cp, "last_refused", None),
        "dapr": _dapr_components(cp.dapr_view(), identities, health),
    }


@dataclass
class LiveFeed:
    """The event streams' one source: a background feed builds the state once per tick while any stream is
    open and publishes it (redacted, as one `data:` event) when it changed or every resend_s; every stream
    sends the same published bytes. Sharing is safe across principals: the event is built from the control
    plane alone and redacted with the app's redactor, so a cookie and a bearer reader see the same text
    (the principal only decides whether a stream may run on, see events). Rates and capability health are
    probed in the background too, so neither the feed nor a stream waits on a slow Envoy or capability
    service. The periods are fields (module constants by default) so a test can make them long."""

    tick_s: float = TICK_S
    resend_s: float = RESEND_S
    probe_every_s: float = PROBE_EVERY_S
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    probed: int = 0  # generations of probes done; the feed wakes when it moves
    event: bytes = b""  # the feed's last published event; empty until a fresh feed publishes
    published: int = 0  # events published; a stream waits for it to move
    streams: int = 0  # open streams: the feed runs while there is one
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _published: asyncio.Event = field(default_factory=asyncio.Event)
    _probe_task: asyncio.Task[None] | None = None
    _feed_task: asyncio.Task[None] | None = None
    _due: float = 0.0

    def join(self, app: web.Application) -> None:
        """A stream opens: start the feed unless it runs (it stops when the last stream leaves)."""
        self.streams += 1
        if self._feed_task is None or self._feed_task.done():
            self.event = b""  # an earlier feed's last event may be long stale: wait for a fresh one
            self._feed_task = asyncio.create_task(self._run_feed(app))

    def leave(self) -> None:
        self.streams -= 1

    def feed_running(self) -> bool:
        """False for a joined stream only when the feed failed (it runs while a stream is joined) or the
        server stops: the stream ends, and the page reconnects after 1 s and starts a new feed."""
        return self._feed_task is not None and not self._feed_task.done()

    async def wait_published(self, seen: int) -> None:
        """Until the feed publishes after `seen`, fails, the server stops, or tick_s passes."""
        if self.published != seen or self.closing.is_set() or not self.feed_running():
            return
        published = self._published
        try:
            async with asyncio.timeout(self.tick_s):
                await published.wait()
        except TimeoutError:
            pass

    def _wake_streams(self) -> None:
        self._published.set()
        self._published = asyncio.Event()

    async def _run_feed(self, app: web.Application) -> None:
        cp, redactor = _control_plane(app), _redactor(app)
        sent, sent_at = "", 0.0
        history_of: tuple[int, list[dict[str, Any]]] = (-1, [])
        try:
            while self.streams > 0 and not self.closing.is_set():
                probed = self.probed
                version = cp.store.version
                if history_of[0] != version:  # the store's history read once per version, not per tick
                    history_of = (version, await _history(cp))
                self.want_probes(app, cp)
                body = _body(cp, cp.proxy_status(), _identities(cp), history_of[1], self.stats, self.health)
                key = json.dumps({**body, "at": 0}, sort_keys=True, default=str)
                if key != sent or time.monotonic() - sent_at >= self.resend_s:
                    data = json.dumps(redactor.value(body), default=str)
                    self.event, self.published = f"data: {data}\n\n".encode(), self.published + 1
                    sent, sent_at = key, time.monotonic()
                    self._wake_streams()
                await self.wait_change(cp, version, probed)
        except Exception:  # its streams end (feed_running) and their pages reconnect
            log.exception("dashboard event feed failed")
        finally:
            self._wake_streams()  # a failed feed's streams end now, not at their next tick

    def want_probes(self, app: web.Application, cp: Any) -> None:
        if (self._probe_task is None or self._probe_task.done()) and time.monotonic() >= self._due:
            self._due = time.monotonic() + self.probe_every_s
            self._probe_task = asyncio.create_task(self._probe(app, cp))

    async def _probe(self, app: web.Application, cp: Any) -> None:
        try:
            self.stats, self.health = await asyncio.gather(
                _stats(app, cp, cp.proxy_status()), _capability_health(cp, _identities(cp))
            )
        except Exception:  # the last probes stay; the next ones may work
            log.exception("dashboard probes (Envoy stats, capability health) failed")
        finally:
            self.probed += 1
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_change(self, cp: Any, version: int, probed: int) -> None:
        """Until the config version moves, new probes arrive, the server stops, or tick_s passes."""
        if self.probed != probed or self.closing.is_set():
            return
        waits = [
            asyncio.ensure_future(cp.wait_for_version_change(version, self.tick_s)),
            asyncio.ensure_future(self._changed.wait()),
            asyncio.ensure_future(self.closing.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=self.tick_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def close(self, _app: web.Application) -> None:
        """on_shutdown: end the streams, or aiohttp waits for them before it stops."""
        self.closing.set()
        self._wake_streams()
        for task in (self._probe_task, self._feed_task):
            if task is not None:
                task.cancel()


LIVE = web.AppKey("ui_live", LiveFeed)


async def _history(cp: Any) -> list[dict[str, Any]]:
    try:
        records = await cp.store.history()
    except Exception:  # a store without history (or unreachable): the current version is shown alone
        return []
    return [
        {"version": r.version, "at": r.at, "source": r.source, "change": r.change.to_dict()}
        for r in records[-20:]
    ]


async def _stats(app: web.Application, cp: Any, proxies: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """proxy id -> outbound cluster counters (upstream_rq_total, upstream_rq_5xx), cached STATS_TTL_S."""
    cache = app[STATS_CACHE]
    if cache.get("until", 0.0) > time.monotonic():
        return cache["stats"]

    async def one(proxy: dict[str, Any]) -> tuple[str, dict[str, float]]:
        try:  # through the proxy's agent (admin relay), else its announced admin address
            dump = await read_proxy_admin(
                cp,
                proxy["proxy_id"],
                proxy.get("admin"),
                "/stats?format=json&filter=^cluster\\.outbound\\|.*upstream_rq_(total|5xx)$",
                2.0,
            )
        except AdminError:  # NoAdminError included: no rates for this proxy
            return proxy["proxy_id"], {}
        return proxy["proxy_id"], {
            s["name"]: float(s.get("value") or 0) for s in dump.get("stats", []) if "name" in s
        }

    scraped = dict(await asyncio.gather(*(one(p) for p in proxies)))
    stats = outbound_edge_stats(cache, scraped, time.monotonic())
    cache.update(stats=stats, until=time.monotonic() + STATS_TTL_S)
    return stats


async def _capability_health(cp: Any, identities: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """capability service address -> {"healthy": bool, "detail": str} from its /v1.0/healthz."""
    import aiohttp

    addresses = {i.capabilities_http for i in identities.values() if i.capabilities_http}
    addresses |= {a.capabilities_http for i in identities.values() for a in i.apps if a.capabilities_http}

    async def one(session: aiohttp.ClientSession, address: str) -> tuple[str, dict[str, Any]]:
        try:
            async with session.get(f"http://{address}/v1.0/healthz") as resp:
                text = (await resp.text()).strip()[:300]
                health = {"healthy": resp.status < 300, "detail": text or f"HTTP {resp.status}"}
            # each component's own health (the capability service's componentStatus)
            async with session.get(f"http://{address}/v1.0/metadata") as resp:
                doc = await resp.json() if resp.status == 200 else {}
            health["component_status"] = {
                str(c.get("name")): {"healthy": bool(c.get("healthy")), "error": str(c.get("error") or "")}
                for c in doc.get("componentStatus") or []
                if isinstance(c, dict)
            }
            return address, health
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return address, {"healthy": False, "detail": f"unreachable: {exc or type(exc).__name__}"}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.5)) as session:
        return dict(await asyncio.gather(*(one(session, a) for a in sorted(addresses))))


def _dapr_components(view: dict[str, Any], identities: dict[str, Any], health: dict[str, Any]) -> list[dict]:
    """One row per app: its capability service's health and the components in its scope."""
    rows = []
    components = view.get("components", [])
    for proxy in identities.values():
        apps = proxy.apps or ()
        for app in apps:
            address = app.capabilities_http or proxy.capabilities_http
            if not address:
                continue
            health_of = dict(health.get(address, {}))
            status = health_of.pop("component_status", {})
            names, states = [], []
            for c in components:
                if c.get("scopes") and app.name not in c.get("scopes", []):
                    continue
                name = str(c["metadata"]["name"])
                names.append(f"{name} ({c.get('spec', {}).get('type', '?')})")
                # unknown until the capability service answers (it may not have loaded the component yet)
                of = status.get(name, {"healthy": None, "error": ""})
                states.append({"name": name, "type": c.get("spec", {}).get("type", "?"), **of})
            rows.append(
                {"app": app.name, "proxy": proxy.id, "address": address, **health_of, "components": names,
                 "component_health": states}
            )  # fmt: skip
    return sorted(rows, key=lambda r: r["app"])


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{body}</p>"


def add_routes(app: web.Application, sessions: UiSessions) -> None:
    app[UI_SESSIONS] = sessions
    app[STATS_CACHE] = {}
    app[LIVE] = LiveFeed()
    app.on_shutdown.append(app[LIVE].close)
    app.router.add_post("/api/v1/ui/code", new_code)
    app.router.add_get(LOGIN_PATH, login)
    app.router.add_get("/ui", redirect_to_index)
    app.router.add_get("/ui/api/state", state)
    app.router.add_get("/ui/api/events", events)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/{name}", page)
