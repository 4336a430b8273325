"""The embedded SQLite backend: file modes, durability seen from another connection, refusing bad files."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xds.controlplane.store import OWNER_API, ConfigStore, SqliteBackend, StoreError
from xds.controlplane.store.sqlite import DB_FILE, SCHEMA_VERSION
from xds.diagnostics import Diagnostic
from xds.sources import RawDocument, load_text


@dataclass
class Compiled:
    config: list[tuple[str, str, str]]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    ok: bool = True


def compile_docs(docs: list[RawDocument]) -> Compiled:
    return Compiled(sorted(d.key for d in docs))


COMPONENT = (
    "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: store}\nspec: {type: state.redis}\n"
)


async def applied(state: Path) -> ConfigStore:
    store = ConfigStore(compile_docs, SqliteBackend.in_state_dir(state))
    await store.load()
    docs, _ = load_text(COMPONENT, "c.yaml")
    await store.commit(store.evaluate(store.plan_apply(docs, OWNER_API)))
    return store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_db_file_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    store = await applied(state)
    try:
        assert mode(state) == 0o700
        assert mode(state / DB_FILE) == 0o600
        wal = state / (DB_FILE + "-wal")
        assert wal.exists() and mode(wal) == 0o600  # WAL journal, same mode as the database
    finally:
        await store.close()


async def test_existing_world_readable_db_is_made_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    await (await applied(state)).close()
    os.chmod(state / DB_FILE, 0o644)
    store = ConfigStore(compile_docs, SqliteBackend.in_state_dir(state))
    await store.load()
    await store.close()
    assert mode(state / DB_FILE) == 0o600 and store.version == 1


async def test_commit_is_visible_to_another_connection_before_it_returns(tmp_path: Path) -> None:
    store = await applied(tmp_path)
    try:
        other = sqlite3.connect(tmp_path / DB_FILE)  # e.g. `sqlite3 config.db .backup`
        try:
            assert other.execute("SELECT max(version) FROM versions").fetchone()[0] == 1
            row = other.execute("SELECT kind, name, owner, file FROM documents").fetchone()
            assert row == ("Component", "store", OWNER_API, "c.yaml")
        finally:
            other.close()
    finally:
        await store.close()


def _refused(state: Path) -> str:
    async def load() -> None:
        backend = SqliteBackend.in_state_dir(state)
        try:
            await backend.load()
        finally:
            await backend.close()

    with pytest.raises(StoreError) as caught:
        asyncio.run(load())
    return str(caught.value)


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / DB_FILE
    garbage = b"this is not a database, it is a text file that got copied over it\n" * 100
    db.write_bytes(garbage)
    message = _refused(tmp_path)
    assert str(db) in message and "refusing to start" in message
    assert db.read_bytes() == garbage


def test_newer_schema_and_foreign_sqlite_files_are_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    newer.mkdir()

    async def make() -> None:
        await (await applied(newer)).close()

    asyncio.run(make())
    with sqlite3.connect(newer / DB_FILE) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert "newer Mecha" in _refused(newer)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / DB_FILE) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    assert "not a Mecha config store" in _refused(foreign)


def test_mecha_serve_refuses_to_start_on_a_corrupt_store(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"\x00garbage" * 512)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "xds.cli",
            "serve",
            "--port",
            "0",
            "--xds-port",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MECHA_INSECURE_XDS": "1"},
    )
    assert run.returncode == 1, run.stderr
    assert f"config store {tmp_path / DB_FILE}" in run.stderr and "Traceback" not in run.stderr


async def test_schema_1_store_is_migrated_at_start_and_rolls_back_from_its_head(tmp_path: Path) -> None:
    """A store written before the history table (schema 1) keeps its documents; rollback works from the
    version it had when it was upgraded, and an older one is refused by name."""
    store = await applied(tmp_path)
    docs, _ = load_text(COMPONENT.replace("name: store", "name: second"), "d.yaml")
    await store.commit(store.evaluate(store.plan_apply(docs, OWNER_API)))
    await store.close()
    with sqlite3.connect(tmp_path / DB_FILE) as db:  # what schema 1 looked like
        db.execute("DROP TABLE document_history")
        db.execute("DROP TABLE resolved_inputs")  # schema 3
        db.execute("ALTER TABLE versions DROP COLUMN inputs")
        db.execute("PRAGMA user_version = 1")
    again = ConfigStore(compile_docs, SqliteBackend.in_state_dir(tmp_path))
    await again.load()
    try:
        assert again.version == 2 and len(again.documents) == 2
        with sqlite3.connect(tmp_path / DB_FILE) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        with pytest.raises(StoreError, match="version 1 was compacted"):
            await again.plan_rollback(1)
        docs, _ = load_text(COMPONENT.replace("name: store", "name: third"), "e.yaml")
        await again.commit(again.evaluate(again.plan_apply(docs, OWNER_API)))
        plan = again.evaluate(await again.plan_rollback(2))
        assert plan.ok and [k[2] for k in plan.change.removed] == ["third"]
    finally:
        await again.close()
