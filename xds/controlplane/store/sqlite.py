"""The embedded backend: one SQLite file in the state folder (`<state dir>/config.db`, 0600 in a 0700 folder).

WAL journal with synchronous=FULL: a committed change survives a SIGKILL or a power cut. Every call runs on
one dedicated thread that owns the connection, so the event loop never waits on the disk. A file that is not
a Mecha store, is corrupt, or was written by a newer schema is refused with its path; never reset.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from xds.controlplane.store.base import (
    ChangeRecord,
    StoredDocument,
    StoredState,
    StoreError,
    StoreVersionConflict,
    VersionRecord,
)
from xds.controlplane.store.migrations import SQLITE_INPUTS
from xds.controlplane.store.plan import Change
from xds.inputs import EMPTY_INPUTS, ResolvedInputs
from xds.statedir import ensure_private_dir

DB_FILE = "config.db"
SCHEMA_VERSION = 3  # PRAGMA user_version; bump with a migration in _MIGRATIONS
APPLICATION_ID = 0x4D454348  # PRAGMA application_id "MECH": this file is a Mecha config store

_SCHEMA = """
CREATE TABLE versions (
    version INTEGER PRIMARY KEY,          -- 1, 2, 3...: one row per accepted change
    at      REAL NOT NULL,                -- unix seconds
    source  TEXT NOT NULL,                -- api | folder:<path>
    changes TEXT NOT NULL                 -- JSON {"added": [[kind, namespace, name]], "modified", "removed"}
);
CREATE TABLE documents (
    kind        TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,            -- api | folder:<path>: the only source allowed to change it
    api_version TEXT NOT NULL,
    body        TEXT NOT NULL,            -- the document as JSON
    yaml        TEXT NOT NULL,            -- the document's YAML text as received
    file        TEXT NOT NULL,
    document    INTEGER NOT NULL,         -- index in a multi-document file
    version     INTEGER NOT NULL REFERENCES versions(version),  -- the version that last wrote it
    PRIMARY KEY (kind, namespace, name)
);
"""

# every write of a document (owner NULL: removed), for rollback; the history starts at its oldest version
_HISTORY = """
CREATE TABLE document_history (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    owner TEXT, api_version TEXT NOT NULL, body TEXT NOT NULL, yaml TEXT NOT NULL, file TEXT NOT NULL,
    document INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name, version)
);
CREATE INDEX document_history_version ON document_history (version);
"""

# _MIGRATIONS[n - 2] takes user_version n - 1 to n; a store upgraded to 2 can roll back to its head only
_MIGRATIONS = (
    _HISTORY
    + """INSERT INTO document_history SELECT kind, namespace, name,
        (SELECT coalesce(max(version), 0) FROM versions), owner, api_version, body, yaml, file, document
        FROM documents;""",
    SQLITE_INPUTS,
)
_HISTORY_COLUMNS = "kind, namespace, name, owner, api_version, body, yaml, file, document, version"

T = TypeVar("T")


def _row(doc: StoredDocument, version: int) -> tuple[Any, ...]:
    body = json.dumps(doc.body, default=str)
    return (*doc.key, doc.owner, doc.api_version, body, doc.text, doc.file, doc.document, version)


class SqliteBackend:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mecha-store")

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> SqliteBackend:
        return cls(Path(state_dir) / DB_FILE)

    @property
    def location(self) -> str:
        return str(self.path)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # ---- opening ---------------------------------------------------------------------------------------
    def _refuse(self, reason: str) -> StoreError:
        return StoreError(
            f"config store {self.path}: {reason}; refusing to start (nothing was changed: restore a backup "
            "or move the file away to start empty)"
        )

    def _open(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        ensure_private_dir(self.path.parent)
        try:
            # created 0600 before SQLite touches it (its -wal/-shm files copy the database file's mode)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
        except OSError as exc:
            raise StoreError(f"config store {self.path}: cannot open: {exc.strerror or exc}") from None
        db = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit (BEGIN IMMEDIATE)
        try:
            self._check_and_migrate(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._refuse(f"not a readable SQLite database ({exc})") from None
        except StoreError:
            db.close()
            raise
        self._db = db
        return db

    def _check_and_migrate(self, db: sqlite3.Connection) -> None:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        schema = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and schema == 0 and tables == 0:  # a new, empty file
            db.executescript(
                f"BEGIN; {_SCHEMA} {_HISTORY} {SQLITE_INPUTS} PRAGMA application_id={APPLICATION_ID}; "
                f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
            return
        if app_id != APPLICATION_ID:
            raise self._refuse("this SQLite file is not a Mecha config store")
        if schema > SCHEMA_VERSION:
            raise self._refuse(
                f"written by a newer Mecha (schema {schema}; this version reads up to {SCHEMA_VERSION})"
            )
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise self._refuse(f"the database is corrupt ({check})")
        for version in range(schema + 1, SCHEMA_VERSION + 1):  # one process: migrated at open
            db.executescript(f"BEGIN; {_MIGRATIONS[version - 2]} PRAGMA user_version={version}; COMMIT;")

    # ---- reading ---------------------------------------------------------------------------------------
    async def load(self) -> StoredState:
        return await self._run(self._load)

    def _load(self) -> StoredState:
        db = self._open()
        try:
            version = db.execute("SELECT coalesce(max(version), 0) FROM versions").fetchone()[0]
            inputs = self._inputs_of(db, version)
            rows = db.execute(
                "SELECT kind, namespace, name, owner, api_version, body, yaml, file, document FROM documents"
                " ORDER BY kind, namespace, name"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._refuse(f"cannot be read ({exc})") from None
        docs = []
        for kind, namespace, name, owner, api_version, body, text, file, index in rows:
            try:
                parsed = json.loads(body)
            except ValueError as exc:
                raise self._refuse(f"document {kind} {namespace}/{name} has a corrupt body ({exc})") from None
            docs.append(
                StoredDocument((kind, namespace, name), owner, api_version, parsed, file, int(index), text)
            )
        return StoredState(int(version), tuple(docs), inputs)

    def _inputs_of(self, db: sqlite3.Connection, version: int) -> ResolvedInputs:
        row = db.execute(
            "SELECT r.body FROM versions v JOIN resolved_inputs r ON r.hash = v.inputs WHERE v.version = ?",
            (version,),
        ).fetchone()
        try:
            return ResolvedInputs.from_json(row[0]) if row else EMPTY_INPUTS
        except (ValueError, KeyError, TypeError) as exc:
            raise self._refuse(f"the resolved inputs of version {version} are corrupt ({exc})") from None

    async def history(self) -> list[VersionRecord]:
        return await self._run(self._history)

    def _history(self) -> list[VersionRecord]:
        rows = self._open().execute("SELECT version, at, source, changes FROM versions ORDER BY version")
        out = []
        for version, at, source, changes in rows:
            change = Change.of_record(json.loads(changes))
            out.append(VersionRecord(int(version), float(at), source, change))
        return out

    # ---- writing ---------------------------------------------------------------------------------------
    async def save(self, record: ChangeRecord) -> None:
        await self._run(self._save, record)

    def _save(self, record: ChangeRecord) -> None:
        db = self._open()
        new = record.version
        try:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock now: the version check below holds
            try:
                current = db.execute("SELECT coalesce(max(version), 0) FROM versions").fetchone()[0]
                if new.version != current + 1:
                    raise StoreVersionConflict(
                        f"config store {self.path}: holds version {current}, refusing to write version "
                        f"{new.version} (another control plane on the same file?)"
                    )
                digest = record.inputs.digest
                if digest:  # once per distinct content: most versions share their predecessor's
                    db.execute(
                        "INSERT OR IGNORE INTO resolved_inputs (hash, body) VALUES (?, ?)",
                        (digest, record.inputs.to_json()),
                    )
                db.execute(
                    "INSERT INTO versions (version, at, source, changes, inputs) VALUES (?, ?, ?, ?, ?)",
                    (new.version, new.at, new.source, json.dumps(new.change.record()), digest),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO documents (kind, namespace, name, owner, api_version, body, yaml,"
                    " file, document, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_row(d, new.version) for d in record.upserts],
                )
                db.executemany(
                    "DELETE FROM documents WHERE kind = ? AND namespace = ? AND name = ?", record.removed
                )
                db.executemany(
                    f"INSERT INTO document_history ({_HISTORY_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                    [_row(d, new.version) for d in record.upserts]
                    + [(*k, None, "", "", "", "", 0, new.version) for k in record.removed],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"config store {self.path}: cannot write version {new.version}: {exc}") from None

    async def documents_at(self, version: int) -> StoredState:
        """The document set right after `version` (rollback); StoreError when unknown or compacted."""
        return await self._run(self._documents_at, version)

    def _documents_at(self, version: int) -> StoredState:
        db = self._open()
        known = db.execute("SELECT count(*) FROM versions WHERE version = ?", (version,)).fetchone()[0]
        oldest = db.execute("SELECT min(version) FROM document_history").fetchone()[0]
        if not known:
            raise StoreError(f"version {version} is not in the history")
        if oldest is None or version < oldest:
            raise StoreError(f"version {version} was compacted (the history starts at {oldest})")
        rows = db.execute(
            "SELECT h.kind, h.namespace, h.name, h.owner, h.api_version, h.body, h.yaml, h.file, h.document "
            "FROM document_history h JOIN (SELECT kind, namespace, name, max(version) AS version "
            "FROM document_history WHERE version <= ? GROUP BY kind, namespace, name) last "
            "USING (kind, namespace, name, version) ORDER BY h.kind, h.namespace, h.name",
            (version,),
        ).fetchall()
        docs = [
            StoredDocument((kind, ns, name), owner, api, json.loads(body), file, int(index), text)
            for kind, ns, name, owner, api, body, text, file, index in rows
            if owner is not None
        ]
        return StoredState(version, tuple(docs), self._inputs_of(db, version))

    async def compact(self, keep: int) -> int:
        """Drop history older than the last `keep` versions (as the PostgreSQL store does; the leader's
        periodic job). Returns how many version rows went."""
        return await self._run(self._compact, keep)

    def _compact(self, keep: int) -> int:
        db = self._open()
        db.execute("BEGIN IMMEDIATE")
        try:
            head = db.execute("SELECT coalesce(max(version), 0) FROM versions").fetchone()[0]
            floor = head - keep + 1
            if floor <= 1:
                db.execute("ROLLBACK")
                return 0
            # the newest entry of every document at or below the floor becomes its entry at the floor
            db.execute(
                f"INSERT OR REPLACE INTO document_history ({_HISTORY_COLUMNS}) "
                "SELECT h.kind, h.namespace, h.name, h.owner, h.api_version, h.body, h.yaml, h.file, "
                "h.document, ? FROM document_history h JOIN (SELECT kind, namespace, name, max(version) AS "
                "version FROM document_history WHERE version <= ? GROUP BY kind, namespace, name) last "
                "USING (kind, namespace, name, version) WHERE h.version < ? AND h.owner IS NOT NULL",
                (floor, floor, floor),
            )
            db.execute("DELETE FROM document_history WHERE version < ?", (floor,))
            dropped = db.execute("DELETE FROM versions WHERE version < ?", (floor,)).rowcount
            db.execute("DELETE FROM resolved_inputs WHERE hash NOT IN (SELECT inputs FROM versions)")
            db.execute("COMMIT")
            return int(dropped)
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        """Idempotent: the control plane and its tests may both close it."""
        if self._closed:
            return
        self._closed = True

        def close_db() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close_db)
        self._thread.shutdown(wait=False)
