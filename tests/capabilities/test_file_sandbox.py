"""File components stay in their sandbox: no `/`, system folders or the Mecha state folder unless allowed
(MECHA_ALLOWED_FILE_ROOTS / --allow-file-root), and no `..` escape from an allowed root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from capability_testkit import component

from capabilities.__main__ import parse_args, settings_from_args
from capabilities.config.sandbox import FileSandbox, SandboxError
from capabilities.config.settings import Settings


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    allowed, outside, state = tmp_path / "allowed", tmp_path / "outside", tmp_path / "project" / ".mecha"
    for folder in (allowed / "data", outside, state):
        folder.mkdir(parents=True)
    (outside / "secret.txt").write_text("TOP-SECRET")
    (state / "ca-key.json").write_text(json.dumps({"key": "CA-PRIVATE-KEY"}))
    return {"root": tmp_path, "allowed": allowed, "outside": outside, "state": state}


async def invoke(client: Any, name: str, operation: str, file_name: str, data: str | None = None) -> Any:
    body: dict[str, Any] = {"operation": operation, "metadata": {"fileName": file_name}}
    if data is not None:
        body["data"] = data
    return await client.post(f"/v1.0/bindings/{name}", json=body)


async def test_component_rooted_at_slash_cannot_read_outside_the_allowed_root(
    make_sidecar: Any, layout: dict[str, Path]
) -> None:
    escape = component("escape", "bindings.localstorage", rootPath="/")
    client, runtime = await make_sidecar(
        [escape], allowed_file_roots=[str(layout["allowed"])], state_dirs=[str(layout["state"])]
    )
    assert "outside the allowed roots" in runtime.init_errors["escape"]
    stolen = await invoke(client, "escape", "get", str(layout["outside"] / "secret.txt").lstrip("/"))
    assert stolen.status >= 400
    assert "TOP-SECRET" not in await stolen.text()


async def test_dot_dot_under_an_allowed_root_is_refused(make_sidecar: Any, layout: dict[str, Path]) -> None:
    files = component("files", "bindings.localstorage", rootPath=str(layout["allowed"] / "data"))
    sneaky = component("sneaky", "bindings.localstorage", rootPath=f"{layout['allowed']}/../outside")
    client, runtime = await make_sidecar(
        [files, sneaky], allowed_file_roots=[str(layout["allowed"])], state_dirs=[str(layout["state"])]
    )
    assert list(runtime.init_errors) == ["sneaky"]
    assert "resolves to" in runtime.init_errors["sneaky"]
    assert (await invoke(client, "files", "create", "ok.txt", "hello")).status == 200
    assert await (await invoke(client, "files", "get", "ok.txt")).read() == b"hello"
    for name in ("../../outside/secret.txt", str(layout["outside"] / "secret.txt")):
        refused = await invoke(client, "files", "get", name)
        assert refused.status == 400 and "outside rootPath" in (await refused.json())["message"], name
    written = await invoke(client, "files", "create", "../escaped.txt", "x")
    assert written.status == 400 and not (layout["allowed"] / "escaped.txt").exists()


@pytest.mark.parametrize(
    ("ctype", "field", "where", "reason"),
    [
        ("bindings.localstorage", "rootPath", "/", "is the filesystem root"),
        ("bindings.localstorage", "rootPath", "/etc", "overlaps the system folder /etc"),
        ("bindings.localstorage", "rootPath", "/usr/lib", "overlaps the system folder /usr"),
        ("bindings.localstorage", "rootPath", "{state}", "overlaps the Mecha state folder"),
        ("bindings.localstorage", "rootPath", "{state}/../..", "overlaps the Mecha state folder"),
        ("secretstores.local.file", "secretsFile", "{state}/ca-key.json", "overlaps the Mecha state folder"),
        ("secretstores.local.file", "secretsFile", "/etc/passwd", "overlaps the system folder /etc"),
    ],
)
async def test_default_sandbox_refuses_root_system_and_state_folders(
    make_sidecar: Any, layout: dict[str, Path], ctype: str, field: str, where: str, reason: str
) -> None:
    path = where.format(state=layout["state"])
    _, runtime = await make_sidecar(
        [component("c", ctype, **{field: path})], state_dirs=[str(layout["state"])]
    )
    message = runtime.init_errors["c"]
    assert f"metadata {field}" in message and reason in message and "component c" in message
    assert "c" not in runtime.components(ctype.split(".")[0])


async def test_symlink_to_slash_is_followed_before_the_check(
    make_sidecar: Any, layout: dict[str, Path]
) -> None:
    (layout["root"] / "innocent").symlink_to("/")
    doc = component("c", "bindings.localstorage", rootPath=str(layout["root"] / "innocent"))
    _, runtime = await make_sidecar([doc], state_dirs=[str(layout["state"])])
    assert "is the filesystem root" in runtime.init_errors["c"]


async def test_secret_store_in_a_plain_folder_still_loads(make_sidecar: Any, layout: dict[str, Path]) -> None:
    secrets = layout["allowed"] / "secrets.json"
    secrets.write_text('{"db": "pw"}')
    doc = component("vault", "secretstores.local.file", secretsFile=str(secrets))
    client, runtime = await make_sidecar([doc], state_dirs=[str(layout["state"])])
    assert not runtime.init_errors
    assert await (await client.get("/v1.0/secrets/vault/db")).json() == {"db": "pw"}


def test_an_explicitly_allowed_system_folder_is_accepted_but_the_state_folder_is_not(
    layout: dict[str, Path],
) -> None:
    sandbox = FileSandbox.build([layout["state"]], ["/etc", "/"])
    assert sandbox.check_path("/etc/hostname", "secretsFile") == Path("/etc/hostname")
    with pytest.raises(SandboxError, match="state folder"):
        sandbox.check_path(str(layout["state"] / "ca-key.json"), "secretsFile")
    inside_state = FileSandbox.build([layout["state"]], [layout["state"]])  # deliberate: a root in it
    assert inside_state.check_path(str(layout["state"] / "ca-key.json"), "secretsFile")


def test_roots_come_from_the_environment_and_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MECHA_ALLOWED_FILE_ROOTS", f"/srv/a:{tmp_path}")
    monkeypatch.setenv("MECHA_STATE_DIR", str(tmp_path / "state"))
    settings = settings_from_args(parse_args(["--allow-file-root", "/srv/b", "--state-dir", "/opt/mecha"]))
    assert settings.allowed_file_roots == ["/srv/a", str(tmp_path), "/srv/b"]
    assert settings.state_dirs is not None and settings.state_dirs[:2] == [
        "/opt/mecha",
        str(tmp_path / "state"),
    ]
    assert str(tmp_path / "state") in (Settings().state_dirs or [])  # a bare Settings finds it too


@pytest.mark.parametrize("form", ["path", "uri"])
async def test_sqlite_state_store_cannot_open_a_database_in_the_state_folder(
    make_sidecar: Any, layout: dict[str, Path], form: str
) -> None:
    """state.sqlite's connectionString is a file path (or a `file:` URI): pointed at a database in the state
    folder with its tableName, it would read (and write) that database through the state API."""
    import sqlite3

    store = layout["state"] / "config.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE docs (key TEXT PRIMARY KEY, value BLOB NOT NULL, etag INTEGER NOT NULL, "
                   "expires REAL)")  # fmt: skip
        db.execute("INSERT INTO docs VALUES ('token', '\"STATE-SECRET\"', 1, NULL)")
    db.close()
    target = str(store) if form == "path" else f"file:{store}?mode=rw"
    thief = component("thief", "state.sqlite", connectionString=target, tableName="docs")
    memory = component("scratch", "state.sqlite", connectionString=":memory:")
    client, runtime = await make_sidecar([thief, memory], state_dirs=[str(layout["state"])])
    assert list(runtime.init_errors) == ["thief"], runtime.init_errors
    assert "overlaps the Mecha state folder" in runtime.init_errors["thief"]
    stolen = await client.get("/v1.0/state/thief/token")
    assert stolen.status >= 400 and "STATE-SECRET" not in await stolen.text()
    saved = await client.post("/v1.0/state/scratch", json=[{"key": "k", "value": 1}])
    assert saved.status == 204  # an in-memory database has no path: nothing to refuse
