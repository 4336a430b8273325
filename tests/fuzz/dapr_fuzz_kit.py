"""Shared by the Dapr HTTP and gRPC fuzz suites: one real capability service (a subprocess, so a crash is
seen as process death) with a component of each in-memory/local kind, and the mutation helpers."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import yaml

# The process helpers live with the capability service tests (tests/capabilities).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capabilities"))

from capability_testkit import component
from sidecar_process import SidecarProcess, start_sidecar

__all__ = ["SidecarProcess", "fuzz_sidecar", "mutate", "weird_text"]


def fuzz_sidecar(folder: Path) -> SidecarProcess:
    """A ready capability service (HTTP + gRPC) hosting one store of each fuzzed kind."""
    (folder / "secrets.json").write_text(json.dumps({"db": "pw", "nested": {"a": "b"}}))
    docs = [
        component("statestore", "state.in-memory"),
        component("pubsub", "pubsub.in-memory"),
        component("files", "bindings.localstorage", rootPath=str(folder / "files")),
        component("vault", "secretstores.local.file", secretsFile=str(folder / "secrets.json")),
        component("locks", "lock.in-memory"),
        component("config", "configuration.in-memory", items='{"color": "blue"}'),
    ]
    resources = folder / "resources"  # apart from secrets.json: every .json there is read as a resource
    resources.mkdir()
    (resources / "components.yaml").write_text(yaml.safe_dump_all(docs))
    sidecar = start_sidecar(folder, "fuzzed", "--resources-path", str(resources), grpc=True)
    sidecar.wait_until(lambda: sidecar.request("GET", "/v1.0/healthz").status == 204, "healthy")
    return sidecar


WEIRD_TEXT = [
    "", " ", "..", "../../etc/passwd", "/", "%", "%00", "%ff", "\x00", "\x7f", "ü", "😀", "\u202e", "\ufeff",
    "a" * 5000, "{", "}", "null", "[]", "\\", '"', "'", "*", "?", "#", "a/b", "||", "k||k",
]  # fmt: skip


def weird_text(rng: random.Random) -> str:
    return (
        rng.choice(WEIRD_TEXT)
        if rng.random() < 0.7
        else "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 20)))
    )


def weird_json_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(10 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 2**63, -(2**64), 10**400, 1.5, -0.0])
    if choice in (3, 4, 5):
        return weird_text(rng)
    if choice in (6, 7):
        return [weird_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {weird_text(rng): weird_json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _replace_somewhere(rng: random.Random, doc: Any) -> Any:
    """doc with one value somewhere (or doc itself) replaced by a value of a random type."""
    if isinstance(doc, dict) and doc and rng.random() < 0.7:
        key = rng.choice(list(doc))
        return {**doc, key: _replace_somewhere(rng, doc[key])}
    if isinstance(doc, list) and doc and rng.random() < 0.7:
        index = rng.randrange(len(doc))
        return [*doc[:index], _replace_somewhere(rng, doc[index]), *doc[index + 1 :]]
    return weird_json_value(rng)


def mutate(rng: random.Random, seed_doc: Any) -> bytes:
    """A malformed variant of a valid JSON document: type confusion, bad bytes, truncation, deep nesting,
    lone surrogates, huge numbers, or random bytes."""
    text = json.dumps(seed_doc).encode()
    kind = rng.randrange(9)
    if kind == 0:
        return json.dumps(_replace_somewhere(rng, seed_doc), default=str).encode()
    if kind == 1:
        return text[: rng.randrange(len(text) + 1)]
    if kind == 2:
        data = bytearray(text)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 3:
        depth = rng.choice([50, 900, 1000, 5000, 20000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return opener * depth + (b"1" if opener != b"[" else b"") + closer * depth
    if kind == 4:
        lone = rng.choice([b"\\ud800", b"\\udfff", b"\\uDBFF"])
        return text.replace(b'"', b'"' + lone, rng.choice([1, 2]))
    if kind == 5:
        return text.replace(b"1", b"1" + b"9" * rng.choice([20, 400, 5000]), 1) + b" "
    if kind == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    if kind == 7:
        plain = text.decode()
        return rng.choice([plain.encode("utf-16"), plain.encode("utf-32"), b"\xef\xbb\xbf" + text])
    return text + rng.choice([b",", b"}", b"]]", b"\x00", b" garbage", b"\xff"])
