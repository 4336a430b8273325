"""Who may call the control-plane API, and from where.

Two credentials live in the state folder as 0600 files, generated at first start and reused afterwards:
- `api-token`: the operator's token (the `mecha` CLI finds it); every endpoint.
- `dapr-reader-token`: what the capability services present; only `GET /api/v1/dapr`, with real component
  values (they need the credentials to connect). A principal is a name and a set of scopes, so per-workload
  credentials can later replace the shared reader token without touching the endpoints.

Browser protections (a web page in a local browser can reach 127.0.0.1): the Host header must name this
server (DNS rebinding), an Origin header must be this server's own, and a request body must be JSON or YAML
(a `text/plain` form post needs no CORS preflight).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware  # a Protocol: what web.Application(middlewares=) takes

# client-side lookups live in xds.statedir (no aiohttp); re-exported for existing callers
from xds.statedir import (  # noqa: F401
    API_TOKEN_FILE,
    ENV_TOKEN,
    api_token,
    ensure_private_dir,
    find_state_dir,
    read_token,
)

READER_TOKEN_FILE = "dapr-reader-token"
ENV_CONTROL_PLANE_TOKEN_FILE = "MECHA_CONTROL_PLANE_TOKEN_FILE"  # capability services: the reader token file
ENV_ALLOWED_HOSTS = "MECHA_ALLOWED_HOSTS"  # comma-separated extra names the API answers to (Host header)

SCOPE_ADMIN = "admin"  # every endpoint
SCOPE_DAPR_READ = "dapr:read"  # GET /api/v1/dapr with real values
SCOPE_UI_READ = "ui:read"  # GET /ui/...: the dashboard's session cookie (xds/controlplane/ui.py)
UI_LOGIN_PATH = "/ui/login"  # spends a one-time code: no credential, but Host and Origin are checked

WORKLOAD_REPORT_PATH = "/api/v1/workloads/health"  # a proxy's own health: its workload credential, no token
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes: no credential, they reveal nothing secret
BODY_TYPES = frozenset({"application/json", "application/yaml", "application/x-yaml", "text/yaml"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")  # who the request authenticated as
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return SCOPE_ADMIN in self.scopes or scope in self.scopes


# ---- token files ---------------------------------------------------------------------------------------
def _new_token() -> str:
    """A random token that never starts with '-': `mecha ... --token VALUE` would read it as an option."""
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        token = secrets.token_urlsafe(32)
    return token


def load_or_create_token(path: Path) -> str:
    """The token in path; a new random one (created 0600, never replacing a concurrent writer's) if absent."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        os.chmod(path, 0o600)  # an older copy with looser bits is tightened
        return token
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 from the start
    try:
        with os.fdopen(fd, "w") as out:
            out.write(_new_token() + "\n")
        try:
            os.link(tmp, path)  # atomic create-if-absent: two servers starting at once share one token
        except FileExistsError:
            pass
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path.read_text().strip()


@dataclass
class Credentials:
    """Token -> principal. Compared in constant time against every known token."""

    tokens: dict[str, Principal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._encoded = [(token.encode(), principal) for token, principal in self.tokens.items()]  # once

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> Credentials:
        admin = load_or_create_token(state_dir / API_TOKEN_FILE)
        reader = load_or_create_token(state_dir / READER_TOKEN_FILE)
        return cls(
            {
                admin: Principal("operator", frozenset({SCOPE_ADMIN})),
                reader: Principal("dapr-reader", frozenset({SCOPE_DAPR_READ})),
            }
        )

    def principal(self, authorization: str | None) -> Principal | None:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        given = presented.strip().encode()
        found = None
        for token, principal in self._encoded:  # no early exit: timing says nothing about which
            if hmac.compare_digest(given, token):
                found = principal
        return found


# ---- client side: where the CLI and the tests find the token (xds/statedir.py: no aiohttp there) ----------
def auth_headers(state_dir: Path | None = None, token: str | None = None) -> dict[str, str]:
    """{"Authorization": "Bearer ..."} for API calls (empty when no token is found)."""
    found = token or (read_token(state_dir) if state_dir is not None else api_token())
    return {"Authorization": f"Bearer {found}"} if found else {}


# ---- server side --------------------------------------------------------------------------------------
def allowed_hosts_from_env() -> list[str]:
    return [h.strip() for h in os.environ.get(ENV_ALLOWED_HOSTS, "").split(",") if h.strip()]


def _host_name(value: str) -> str:
    """Host header or Origin authority without its port: 'a:1' -> 'a', '[::1]:1' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass
class HostPolicy:
    """Names this server answers to. An IP literal cannot be rebound by DNS, so on a wildcard bind any of
    the machine's addresses is fine; names must be listed."""

    bound_address: str
    extra_names: Iterable[str] = ()

    def __post_init__(self) -> None:
        self.names = {*LOOPBACK_NAMES, self.bound_address.strip("[]").lower()}
        self.names.update(_host_name(n) for n in self.extra_names)
        self.any_ip = self.bound_address in WILDCARD_ADDRESSES

    def allows(self, host_header: str) -> bool:
        name = _host_name(host_header)
        return name in self.names or (self.any_ip and _is_ip(name))


def _refuse(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "diagnostics": []}, status=status, headers=headers)


def is_ui_read(request: web.Request) -> bool:
    return request.method in ("GET", "HEAD") and (request.path == "/ui" or request.path.startswith("/ui/"))


def required_scope(request: web.Request) -> str:
    if request.method in ("GET", "HEAD") and request.path == "/api/v1/dapr":
        return SCOPE_DAPR_READ
    if is_ui_read(request):
        return SCOPE_UI_READ
    return SCOPE_ADMIN


SessionPrincipal = Callable[[web.Request], Principal | None]


def guard(
    credentials: Credentials, hosts: HostPolicy, ui_session: SessionPrincipal | None = None
) -> Middleware:
    """The middleware: Host, Origin, credential (the bearer token; on /ui reads also the dashboard's
    session cookie), scope, then the body's content type."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS and request.method in ("GET", "HEAD"):
            return await handler(request)
        host = request.headers.get("Host")
        if host is not None and not hosts.allows(host):
            return _refuse(
                421,
                f"Host {host!r} is not a name of this control plane (DNS rebinding?); "
                f"add it with --allowed-host or {ENV_ALLOWED_HOSTS}",
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"http://{(host or '').lower()}":
            return _refuse(403, f"cross-origin request from {origin!r} refused: the API is not for browsers")
        if request.path == UI_LOGIN_PATH and request.method == "GET":
            return await handler(request)  # the one-time code is the credential (ui.py)
        if request.path == WORKLOAD_REPORT_PATH and request.method == "POST":
            return await handler(request)  # the workload credential is checked there (registration_api.py)
        principal = credentials.principal(request.headers.get("Authorization"))
        if principal is None and ui_session is not None and is_ui_read(request):
            principal = ui_session(request)
        if principal is None:
            return _refuse(
                401,
                "missing or wrong API token: send 'Authorization: Bearer <token>' (the `mecha` CLI reads "
                f"--token, ${ENV_TOKEN} or the state folder's {API_TOKEN_FILE} file)",
                **{"WWW-Authenticate": 'Bearer realm="mecha"'},
            )
        scope = required_scope(request)
        if not principal.may(scope):
            denied = f"the {principal.name} credential may not call {request.method} {request.path}"
            return _refuse(403, denied)
        if request.body_exists and request.content_type not in BODY_TYPES:
            return _refuse(
                415,
                f"Content-Type {request.content_type!r} refused: send application/json or application/yaml",
            )
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware
