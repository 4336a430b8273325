"""Attacks on the control-plane API (real ControlPlane and pipeline, real aiohttp server): no token, a foreign
web page, DNS rebinding, the reader token trying to write, secrets in answers, hostile bodies."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from xds.cli.client import ApiError, Client
from xds.controlplane.api import start_api
from xds.controlplane.auth import API_TOKEN_FILE, READER_TOKEN_FILE, Credentials, HostPolicy
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.redact import REDACTED, Redactor, secret_values
from xds.testing.fake_proxy import FakeProxy

PASSWORD = "hunter2-redis-Pa55"
COMPONENT = f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: statestore}}
spec:
  type: state.redis
  version: v1
  metadata:
  - {{name: redisHost, value: "127.0.0.1:6379"}}
  - {{name: redisPassword, value: "{PASSWORD}"}}
  - name: actorStateStore
    value: "false"
  - name: accessKey
    secretKeyRef: {{name: aws, key: access}}
"""
SERVICE_ENTRY = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [ext.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"""
YAML = {"Content-Type": "application/yaml"}


@dataclass
class Server:
    cp: ControlPlane
    url: str
    state: Path
    session: aiohttp.ClientSession

    def token(self, name: str = API_TOKEN_FILE) -> str:
        return (self.state / name).read_text().strip()

    def auth(self, name: str = API_TOKEN_FILE) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}

    async def call(
        self, method: str, path: str, body: bytes | str | None = None, **headers: str
    ) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, data=body, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def version(self) -> int:
        _, config = await self.call("GET", "/api/v1/config", **self.auth())
        return int(config["version"])


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    state = tmp_path / "state"
    settings = Settings(api_port=0, xds_port=0, state_dir=state, watch=False)
    cp = ControlPlane(settings)
    runner, port = await start_api(cp, "127.0.0.1", 0, state)
    await cp.start()
    # skip_auto_headers: aiohttp would add a Content-Type to str bodies; the tests choose it
    session = aiohttp.ClientSession(skip_auto_headers={"Content-Type"})
    try:
        yield Server(cp, f"http://127.0.0.1:{port}", state, session)
    finally:
        await session.close()
        await cp.stop()
        await runner.cleanup()


# ---- credentials ----------------------------------------------------------------------------------------
async def test_unauthenticated_apply_is_401_and_applies_nothing(server: Server) -> None:
    before = await server.version()
    status, body = await server.call("POST", "/api/v1/apply", SERVICE_ENTRY, **YAML)
    assert status == 401 and "API token" in body["error"]
    status, _ = await server.call(
        "POST", "/api/v1/apply", SERVICE_ENTRY, Authorization="Bearer wrong", **YAML
    )
    assert status == 401
    status, _ = await server.call("POST", "/api/v1/apply", SERVICE_ENTRY, Authorization="Basic x", **YAML)
    assert status == 401
    assert await server.version() == before
    status, ok = await server.call("POST", "/api/v1/apply", SERVICE_ENTRY, **YAML, **server.auth())
    assert status == 200 and ok["accepted"] and await server.version() == before + 1


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/api/v1/config"), ("GET", "/api/v1/proxies"), ("GET", "/api/v1/dapr"), ("GET", "/metrics"),
     ("GET", "/api/v1/proxies/p/config/clusters"), ("POST", "/api/v1/delete")],
)  # fmt: skip
async def test_every_endpoint_but_the_probes_needs_the_token(server: Server, method: str, path: str) -> None:
    status, _ = await server.call(method, path)
    assert status == 401
    for probe in ("/healthz", "/readyz"):
        status, body = await server.call("GET", probe)
        assert status == 200 and "token" not in json.dumps(body)


async def test_reader_token_reads_dapr_documents_only(server: Server) -> None:
    await server.call("POST", "/api/v1/apply", COMPONENT, **YAML, **server.auth())
    reader = server.auth(READER_TOKEN_FILE)
    status, _ = await server.call("POST", "/api/v1/apply", SERVICE_ENTRY, **YAML, **reader)
    assert status == 403
    for path in ("/api/v1/config", "/api/v1/proxies", "/metrics"):
        status, _ = await server.call("GET", path, **reader)
        assert status == 403, path
    status, dapr = await server.call("GET", "/api/v1/dapr", **reader)
    assert status == 200 and PASSWORD in json.dumps(dapr)  # the capability service needs the real value
    status, dapr = await server.call("GET", "/api/v1/dapr", **server.auth())
    assert status == 200 and PASSWORD not in json.dumps(dapr)


def test_token_files_are_0600_random_and_reused(tmp_path: Path) -> None:
    first = Credentials.from_state_dir(tmp_path / "state")
    for name in (API_TOKEN_FILE, READER_TOKEN_FILE):
        mode = stat.S_IMODE((tmp_path / "state" / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    admin, reader = list(first.tokens)
    assert admin != reader and len(admin) >= 40
    assert list(Credentials.from_state_dir(tmp_path / "state").tokens) == [admin, reader]  # restart: same
    assert admin not in Credentials.from_state_dir(tmp_path / "other").tokens


# ---- browsers -------------------------------------------------------------------------------------------
async def test_foreign_origin_text_plain_post_is_refused(server: Server) -> None:
    before = await server.version()
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    status, _ = await server.call("POST", "/api/v1/apply", SERVICE_ENTRY, **evil)
    assert status == 403
    status, _ = await server.call("POST", "/api/v1/apply", SERVICE_ENTRY, **evil, **server.auth())
    assert status == 403  # even with a token (a browser could hold one): a foreign page is never served
    status, body = await server.call(
        "POST", "/api/v1/apply", SERVICE_ENTRY, **{"Content-Type": "text/plain"}, **server.auth()
    )
    assert status == 415 and "text/plain" in body["error"]
    status, _ = await server.call(
        "POST",
        "/api/v1/apply",
        "files=x",
        **{"Content-Type": "application/x-www-form-urlencoded"},
        **server.auth(),
    )
    assert status == 415
    assert await server.version() == before


async def test_dns_rebinding_host_is_refused(server: Server) -> None:
    status, body = await server.call("GET", "/api/v1/config", Host="evil.example", **server.auth())
    assert status == 421 and "evil.example" in body["error"]
    status, _ = await server.call("GET", "/api/v1/config", Host="evil.example:15010", **server.auth())
    assert status == 421
    for host in ("localhost:1", "127.0.0.1", "[::1]:15010"):
        status, _ = await server.call("GET", "/api/v1/config", Host=host, **server.auth())
        assert status == 200, host


def test_host_policy_names_and_wildcard_bind() -> None:
    local = HostPolicy("127.0.0.1", ["mesh.internal"])
    assert local.allows("mesh.internal:15010") and not local.allows("10.0.0.5:15010")
    assert not local.allows("evil.example")
    wildcard = HostPolicy("0.0.0.0")
    assert wildcard.allows("10.0.0.5:15010")  # an address cannot be rebound by DNS
    assert not wildcard.allows("evil.example")


# ---- redaction ------------------------------------------------------------------------------------------
async def test_component_password_is_redacted_in_config_and_dry_run(server: Server) -> None:
    status, ok = await server.call("POST", "/api/v1/apply?dry_run=1", COMPONENT, **YAML, **server.auth())
    assert status == 200 and PASSWORD not in json.dumps(ok)
    status, _ = await server.call("POST", "/api/v1/apply", COMPONENT, **YAML, **server.auth())
    assert status == 200
    status, config = await server.call("GET", "/api/v1/config", **server.auth())
    assert status == 200 and PASSWORD not in json.dumps(config)
    [component] = [d for d in config["documents"] if d["kind"] == "Component"]
    metadata = {m["name"]: m for m in component["body"]["spec"]["metadata"]}
    assert metadata["redisPassword"]["value"] == REDACTED
    assert metadata["redisHost"]["value"] == "127.0.0.1:6379"  # not a secret: still shown
    assert metadata["accessKey"]["secretKeyRef"] == {"name": "aws", "key": "access"}
    # a refused change that echoes the password does not leak it either
    bad = COMPONENT.replace("state.redis", "state.nope").replace("statestore", "other")
    _, refused = await server.call("POST", "/api/v1/apply", bad, **YAML, **server.auth())
    assert PASSWORD not in json.dumps(refused)


def test_node_metadata_tokens_redacted_by_name_and_by_value() -> None:
    metadata = {
        "mecha": {"dapr_api_token": "tok-dapr-123", "app_api_token": "tok-app-456", "mode": "sidecar"}
    }
    dump = {"route": {"match": {"headers": [{"name": "dapr-api-token", "exact": "tok-dapr-123"}]}}}
    redactor = Redactor(secret_values(metadata))
    assert redactor.value(metadata)["mecha"] == {"dapr_api_token": REDACTED, "app_api_token": REDACTED,
                                                 "mode": "sidecar"}  # fmt: skip
    assert "tok-dapr-123" not in json.dumps(redactor.value(dump))
    assert redactor.text("redis://user:pw-123@host:6379/0") == f"redis://user:{REDACTED}@host:6379/0"
    assert redactor.value({"credentialName": "bookinfo-cert"}) == {"credentialName": "bookinfo-cert"}


async def test_a_secret_logged_before_any_api_request_is_redacted(tmp_path: Path) -> None:
    """The folder watcher loads a Component at start; a log line carrying its password is masked although
    the API has answered nothing yet (the known values follow the store, not the API requests)."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "statestore.yaml").write_text(COMPONENT)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    settings = Settings(
        api_port=0, xds_port=0, state_dir=tmp_path / "state", watch=False, config_dirs=[config]
    )
    cp = ControlPlane(settings)
    runner, _ = await start_api(cp, "127.0.0.1", 0, settings.state_dir)
    try:
        await cp.start()
        assert [d.key[2] for d in cp.store.docs_of_kind("Component")] == ["statestore"]
        logging.getLogger("mecha.controlplane").warning("state store dial failed (password %s)", PASSWORD)
    finally:
        root.removeHandler(handler)
        await cp.stop()
        await runner.cleanup()
    assert PASSWORD not in stream.getvalue()
    assert f"state store dial failed (password {REDACTED})" in stream.getvalue()


async def test_a_connected_proxys_node_token_is_redacted_in_logs(tmp_path: Path) -> None:
    """A proxy's dapr_api_token (node metadata) is masked in log lines from the moment it connects."""
    token = "tok-dapr-node-7f3a"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    settings = Settings(api_port=0, xds_port=0, state_dir=tmp_path / "state", watch=False, insecure_xds=True)
    cp = ControlPlane(settings)
    runner, _ = await start_api(cp, "127.0.0.1", 0, settings.state_dir)
    try:
        await cp.start()
        assert cp.xds_port is not None
        proxy = FakeProxy(f"127.0.0.1:{cp.xds_port}", "reviews-v1", {"dapr_api_token": token})
        await proxy.start()
        try:
            for _ in range(500):  # its first snapshot is built: the control plane knows the proxy
                if cp.snapshot("reviews-v1") is not None:
                    break
                await asyncio.sleep(0.02)
            assert cp.snapshot("reviews-v1") is not None
            logging.getLogger("mecha.controlplane").warning("invoke refused (token %s)", token)
        finally:
            await proxy.stop()
    finally:
        root.removeHandler(handler)
        await cp.stop()
        await runner.cleanup()
    assert token not in stream.getvalue()
    assert f"invoke refused (token {REDACTED})" in stream.getvalue()


# ---- hostile bodies: 4xx naming the reason, never 500 ----------------------------------------------------
# nine times more nodes per level: 9^9 when walked
BILLION_LAUGHS = ("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
)).encode()  # fmt: skip
BAD_BODIES: list[tuple[str, bytes, str, str]] = [
    ("not utf-8", b"kind: \xff\xfe\x00bad", "application/yaml", "not valid utf-8"),
    ("unknown charset", b"kind: x", "application/yaml; charset=klingon", "unknown charset"),
    ("deep json", b"[" * 5000 + b"]" * 5000, "application/json", "too deep"),
    ("deep yaml", b"a: " + b"[" * 5000 + b"]" * 5000, "application/yaml", "nest"),  # libyaml: nesting depth
    ("deep yaml map", "".join("  " * i + f"k{i}:\n" for i in range(300)).encode(), "application/yaml",
     "nested more than"),
    ("yaml bomb", BILLION_LAUGHS, "application/yaml", "YAML bomb"),
    ("huge yaml number", b"spec: {n: " + b"9" * 5000 + b"}", "application/yaml", "digits"),
    ("huge json number", b'{"files": [{"name": "a", "text": "x"}], "n": ' + b"9" * 5000 + b"}",
     "application/json", "digits"),
    ("duplicate json key", b'{"files": [], "files": []}', "application/json", "duplicate key 'files'"),
    ("json list", b"[1, 2]", "application/json", "expected {'files'"),
    ("json files not a list", b'{"files": 3}', "application/json", "expected {'files'"),
    ("json file text not a string", b'{"files": [{"name": "a", "text": 1}]}', "application/json", "files[0]"),
]  # fmt: skip


@pytest.mark.parametrize("label,body,content_type,reason", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_hostile_bodies_are_4xx_with_the_reason(
    server: Server, label: str, body: bytes, content_type: str, reason: str
) -> None:
    before = await server.version()
    status, answer = await server.call(
        "POST", "/api/v1/apply?filename=evil.yaml", body, **{"Content-Type": content_type}, **server.auth()
    )
    assert 400 <= status < 500, (label, status, answer)
    assert reason.lower() in json.dumps(answer).lower(), answer
    assert await server.version() == before


async def test_utf16_body_is_decoded(server: Server) -> None:
    body = SERVICE_ENTRY.encode("utf-16")
    headers = {"Content-Type": "application/yaml; charset=utf-16", **server.auth()}
    status, ok = await server.call("POST", "/api/v1/apply", body, **headers)
    assert status == 200 and ok["accepted"], ok


async def test_non_mapping_yaml_document_is_a_diagnostic(server: Server) -> None:
    status, body = await server.call(
        "POST", "/api/v1/apply?filename=list.yaml", "- a\n- b\n", **YAML, **server.auth()
    )
    assert status == 422 and body["diagnostics"][0]["file"] == "list.yaml"


async def test_malformed_http_is_logged_in_one_line(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
            await writer.drain()
            answer = await reader.read(200)
            writer.close()
            assert answer.split(b" ")[1] == b"400", answer
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    # one WARNING line each, no traceback (the capability service's filter on this logger writes the same)
    assert records and all(r.exc_info is None and r.levelno == logging.WARNING for r in records)
    assert all("malformed HTTP request answered 400: " in r.getMessage() for r in records), records
    assert all("\n" not in r.getMessage() and "Content-Length" in r.getMessage() for r in records)


def test_both_aiohttp_server_filters_write_the_same_line() -> None:
    """The control plane's and the capability service's filters share aiohttp.server in one process
    (`mecha up` tests, embedded sidecars): whichever runs first, the line is the same."""
    from aiohttp.http_exceptions import BadHttpMessage

    from capabilities.api.http.logfilter import MalformedHttpFilter
    from xds.controlplane.api import OneLineHttpErrors

    def rewritten(log_filter: logging.Filter) -> tuple[str, int, object]:
        try:
            raise BadHttpMessage("Content-Length\n  nope")
        except BadHttpMessage:
            record = logging.LogRecord(
                "aiohttp.server",
                logging.ERROR,
                __file__,
                1,
                "Error handling %s",
                ("request",),
                sys.exc_info(),
            )
        assert log_filter.filter(record)
        return record.getMessage(), record.levelno, record.exc_info

    line = "Error handling request: malformed HTTP request answered 400: Content-Length nope"
    assert rewritten(OneLineHttpErrors()) == rewritten(MalformedHttpFilter()) == (line, logging.WARNING, None)


# ---- the CLI finds the token ------------------------------------------------------------------------------
async def test_cli_client_uses_the_state_folder_token(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MECHA_TOKEN", raising=False)
    monkeypatch.delenv("MECHA_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .mecha here or above (tmp): no token
    with pytest.raises(ApiError) as refused:
        await asyncio.to_thread(Client(server.url).get, "/api/v1/config")
    assert refused.value.status == 401 and "--token" in str(refused.value)
    monkeypatch.setenv("MECHA_STATE_DIR", str(server.state))
    config = await asyncio.to_thread(Client(server.url).get, "/api/v1/config")
    assert "version" in config
    monkeypatch.delenv("MECHA_STATE_DIR")
    (tmp_path / "project" / "sub").mkdir(parents=True)
    (tmp_path / "project" / ".mecha").symlink_to(server.state)
    monkeypatch.chdir(tmp_path / "project" / "sub")  # `.mecha/` of a parent folder, as after `mecha up`
    assert "version" in await asyncio.to_thread(Client(server.url).get, "/api/v1/config")
    monkeypatch.setenv("MECHA_TOKEN", "wrong")
    with pytest.raises(ApiError):
        await asyncio.to_thread(Client(server.url).get, "/api/v1/config")
    explicit = Client(server.url, token=server.token())
    assert "version" in await asyncio.to_thread(explicit.get, "/api/v1/config")


def test_a_new_token_never_starts_with_a_dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mecha apply --token VALUE` reads a VALUE starting with '-' as an option ('expected one argument'):
    1 token in 64 from token_urlsafe did, and an e2e fixture's apply failed on it."""
    from xds.controlplane import auth

    second = "M7e1fyLzazww0l7S6sbtTnkktmC_y7RZhCLLr79KAY"
    drawn = iter(["-" + second, second])
    monkeypatch.setattr(auth.secrets, "token_urlsafe", lambda _n: next(drawn))
    token = auth.load_or_create_token(tmp_path / API_TOKEN_FILE)
    assert token == second  # drawn again
