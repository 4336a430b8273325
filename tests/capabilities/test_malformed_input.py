"""Bad input to the Dapr HTTP API gets a 4xx with a Dapr error code, never a 500: deep nesting, lone UTF-16
surrogates, non-UTF-8 bodies, foreign charsets; malformed HTTP is one log line, not a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from capability_testkit import component
from sidecar_process import SidecarProcess, start_sidecar

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    folder = tmp_path_factory.mktemp("malformed")
    docs = [
        component("statestore", "state.in-memory"),
        component("pubsub", "pubsub.in-memory"),
        component("files", "bindings.localstorage", rootPath=str(folder / "files")),
    ]
    (folder / "components.yaml").write_text(yaml.safe_dump_all(docs))
    process = start_sidecar(folder, "fuzzed", "--resources-path", str(folder))
    process.wait_until(lambda: process.request("GET", "/v1.0/healthz").status == 204, "healthy")
    yield process
    process.stop()


CASES = [
    ("deep state save", "/v1.0/state/statestore", DEEP, "application/json", "ERR_MALFORMED_REQUEST"),
    ("deep object", "/v1.0/state/statestore", DEEP_OBJECT, "application/json", "ERR_MALFORMED_REQUEST"),
    ("deep value", "/v1.0/state/statestore", b'[{"key":"k","value":' + DEEP + b"}]", "application/json",
     "ERR_MALFORMED_REQUEST"),
    ("surrogate key", "/v1.0/state/statestore", b'[{"key":"\\ud800","value":1}]', "application/json",
     "ERR_MALFORMED_REQUEST"),
    ("surrogate value", "/v1.0/state/statestore", b'[{"key":"k","value":"\\udc00x"}]', "application/json",
     "ERR_MALFORMED_REQUEST"),
    ("not UTF-8", "/v1.0/state/statestore", b'[{"key":"\xff\xfe","value":1}]', "application/json",
     "ERR_MALFORMED_REQUEST"),
    ("UTF-16 body", "/v1.0/state/statestore", '[{"key":"k","value":1}]'.encode("utf-16"),
     "application/json", "ERR_MALFORMED_REQUEST"),
    ("latin-1 charset", "/v1.0/state/statestore", '[{"key":"é","value":1}]'.encode("latin-1"),
     "application/json; charset=latin-1", "ERR_MALFORMED_REQUEST"),
    ("unknown charset", "/v1.0/state/statestore", b'[{"key":"k","value":1}]',
     "application/json; charset=x-made-up", "ERR_MALFORMED_REQUEST"),
    ("deep bulk get", "/v1.0/state/statestore/bulk", DEEP, "application/json", "ERR_MALFORMED_REQUEST"),
    ("deep transaction", "/v1.0/state/statestore/transaction", DEEP, "application/json",
     "ERR_MALFORMED_REQUEST"),
    ("deep query", "/v1.0-alpha1/state/statestore/query", DEEP, "application/json", "ERR_MALFORMED_REQUEST"),
    ("deep binding", "/v1.0/bindings/files", DEEP, "application/json", "ERR_MALFORMED_REQUEST"),
    ("surrogate binding", "/v1.0/bindings/files", b'{"operation":"create","data":"\\ud800"}',
     "application/json", "ERR_MALFORMED_REQUEST"),
    ("deep cloudevent", "/v1.0/publish/pubsub/t", DEEP_OBJECT, "application/cloudevents+json",
     "ERR_PUBSUB_CLOUD_EVENTS_SER"),
    ("deep bulk publish", "/v1.0-alpha1/publish/bulk/pubsub/t", DEEP, "application/json",
     "ERR_PUBSUB_EVENTS_SER"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "ctype", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_bodies_get_a_4xx_with_a_dapr_code(
    sidecar: SidecarProcess, path: str, body: bytes, ctype: str, code: str
) -> None:
    answer = sidecar.request("POST", path, body, **{"Content-Type": ctype})
    assert 400 <= answer.status < 500, answer
    assert answer.json()["errorCode"] == code, answer.json()


def test_a_published_lone_surrogate_is_not_a_500(sidecar: SidecarProcess) -> None:
    # A JSON payload that is not valid Unicode is published as text, as Dapr falls back for bad JSON data.
    answer = sidecar.request(
        "POST", "/v1.0/publish/pubsub/t", b'{"a":"\\ud800"}', **{"Content-Type": "application/json"}
    )
    assert answer.status == 204, answer


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_http_is_answered_400_and_logged_as_one_line(sidecar: SidecarProcess) -> None:
    before = sidecar.log()
    for request in (b"PUT /v1.0/metadata/\xed\xa0\x80 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
                    b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
                    b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"):  # fmt: skip
        assert raw_exchange(sidecar.http_port, request).startswith(b"HTTP/1.0 400"), request
    assert sidecar.request("GET", "/v1.0/healthz").status == 204
    new_lines = sidecar.log()[len(before) :]
    assert "Traceback" not in new_lines, new_lines
    assert new_lines.count("answered 400") == 3, new_lines


def test_log_has_no_tracebacks_after_bad_bodies(sidecar: SidecarProcess) -> None:
    for _, path, body, ctype, _ in CASES:
        sidecar.request("POST", path, body, **{"Content-Type": ctype})
    assert "Traceback" not in sidecar.log()
    assert "unhandled error" not in sidecar.log()


def test_normal_calls_still_work(sidecar: SidecarProcess, tmp_path: Path) -> None:
    saved = sidecar.request("POST", "/v1.0/state/statestore", '[{"key":"ü","value":"😀"}]'.encode())
    assert saved.status == 204, saved
    assert sidecar.request("GET", "/v1.0/state/statestore/%C3%BC").json() == "😀"
    assert (
        sidecar.request("POST", "/v1.0/state/statestore", b'[{"key":"p","value":"\\ud83d\\ude00"}]').status
        == 204
    )
