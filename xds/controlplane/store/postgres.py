"""The shared backend: PostgreSQL (asyncpg), for several control-plane replicas on one config (Kuma's
universal mode).

`postgresql://user[:password]@host[:port]/database?sslmode=MODE&schema=NAME`. Every table lives in one
schema (default `mecha`), so one database can hold several meshes, and each test its own. The head version
is one row (`head`): `save` locks it (SELECT ... FOR UPDATE), so two replicas applying at once are serialized
by the database and the second one gets StoreVersionConflict, never a half-applied change. Each commit sends
NOTIFY on the schema's channel: replicas LISTEN and catch up at once (xds/controlplane/replication.py).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from xds.controlplane.store.base import (
    ChangeRecord,
    StoredDocument,
    StoredState,
    StoreError,
    StoreVersionConflict,
    VersionRecord,
)
from xds.controlplane.store.migrations import APPLICATION, POSTGRES_MIGRATIONS, SCHEMA_VERSION
from xds.controlplane.store.plan import Change
from xds.inputs import EMPTY_INPUTS, ResolvedInputs

log = logging.getLogger("mecha.store")

SSL_MODES = ("disable", "require", "verify-ca", "verify-full")  # Kuma's modes (require: TLS, no checks)
DEFAULT_SCHEMA = "mecha"
CONNECT_TIMEOUT = 5.0
_ADVISORY_NAMESPACE = "mecha"  # advisory lock keys are hashtext(namespace:schema:purpose)
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # a bind address, not one another replica can dial


class PostgresDsn:
    """A parsed `postgresql://` URL: what asyncpg gets, the schema, the TLS mode, a printable form."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise StoreError(f"--store {url!r}: expected a postgresql:// URL")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.schema = query.pop("schema", DEFAULT_SCHEMA) or DEFAULT_SCHEMA
        if (
            not self.schema.replace("_", "").isalnum()
            or not self.schema[0].isalpha()
            or len(self.schema) > 40
        ):
            raise StoreError(
                f"--store: schema={self.schema!r}: letters, digits and _ only, starting with a letter, "
                "at most 40 characters"
            )
        self.sslmode = query.pop("sslmode", "disable")
        if self.sslmode not in SSL_MODES:
            raise StoreError(f"--store: sslmode={self.sslmode!r}: expected one of {', '.join(SSL_MODES)}")
        self.sslrootcert = query.pop("sslrootcert", "")
        if self.sslmode.startswith("verify") and not self.sslrootcert:
            raise StoreError(
                f"--store: sslmode={self.sslmode} needs sslrootcert=<CA file> (the CA that signed the "
                "server's certificate)"
            )
        self.dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        host = parts.hostname or "localhost"
        port = parts.port or 5432
        user = f"{parts.username}@" if parts.username else ""
        self.printable = f"postgresql://{user}{host}:{port}{parts.path}?schema={self.schema}"
        self.host = host

    def ssl_context(self) -> ssl.SSLContext | bool:
        if self.sslmode == "disable":
            return False
        if self.sslmode == "require":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            context = ssl.create_default_context(cafile=self.sslrootcert)
        except (OSError, ssl.SSLError) as exc:
            raise StoreError(f"--store: sslrootcert={self.sslrootcert}: cannot read: {exc}") from None
        context.check_hostname = self.sslmode == "verify-full"
        return context


Listener = Callable[[int], Awaitable[None] | None]


class PostgresBackend:
    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.dsn = PostgresDsn(url)
        self.schema = self.dsn.schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self._seen_from: str | None = None  # this host as PostgreSQL sees it ("": a Unix socket)

    @property
    def location(self) -> str:
        return self.dsn.printable

    @property
    def channel(self) -> str:
        """The NOTIFY channel of this schema: the payload is the new head version."""
        return f"{self.schema}_config"

    def lock_key(self, purpose: str) -> str:
        """Text for hashtext(): an advisory lock per schema and purpose (migrations, periodic jobs)."""
        return f"{_ADVISORY_NAMESPACE}:{self.schema}:{purpose}"

    def _t(self, table: str) -> str:
        return f'"{self.schema}".{table}'

    # ---- connections -----------------------------------------------------------------------------------
    def _cannot(self, what: str, exc: BaseException) -> StoreError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionError) and "SSL" in reason and self.dsn.sslmode != "disable":
            reason = (
                f"sslmode={self.dsn.sslmode} but the server does not offer TLS ({reason}); enable ssl on "
                "the server, or use sslmode=disable on a trusted network"
            )
        elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
            reason = f"sslmode={self.dsn.sslmode}: the server's certificate is not trusted ({reason})"
        return StoreError(f"config store {self.location}: {what}: {reason}")

    async def connect(self, **server_settings: str) -> asyncpg.Connection:
        """A connection of its own (LISTEN, the job lock): the caller closes it."""
        try:
            return await asyncpg.connect(
                self.dsn.dsn,
                ssl=self.dsn.ssl_context(),
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": "mecha", **server_settings},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise self._cannot("cannot connect", exc) from None

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn.dsn,
                    ssl=self.dsn.ssl_context(),
                    min_size=0,  # no floor to restore while PostgreSQL is down (asyncpg logs each retry)
                    max_size=self._pool_size,
                    timeout=CONNECT_TIMEOUT,
                    command_timeout=30,
                    server_settings={"application_name": "mecha"},
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                raise self._cannot("cannot connect", exc) from None
        return self._pool

    # ---- schema ------------------------------------------------------------------------------------------
    async def schema_version(self, conn: asyncpg.Connection) -> int:
        """0: no Mecha schema here yet. StoreError: the schema exists but is not Mecha's."""
        exists = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", self.schema
        )
        if not exists:
            return 0
        try:
            row = await conn.fetchrow(f"SELECT application, version FROM {self._t('schema_info')}")
        except asyncpg.UndefinedTableError:
            row = None
        if row is None or row["application"] != APPLICATION:
            raise StoreError(
                f"config store {self.location}: schema {self.schema} holds tables that are not a Mecha "
                "config store; refusing to start (pick another schema=)"
            )
        return int(row["version"])

    async def migrate(self, create: bool = True) -> tuple[int, int]:
        """Bring the schema to SCHEMA_VERSION (under an advisory lock: replicas starting together migrate
        once). Returns (before, after). A newer schema is refused; an older one is only migrated here."""
        conn = await self.connect()
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.lock_key("migrate"))
                before = await self.schema_version(conn)
                self._refuse_newer(before)
                if before == 0 and not create:
                    return 0, 0
                for version in range(before + 1, SCHEMA_VERSION + 1):
                    await conn.execute(POSTGRES_MIGRATIONS[version - 1].replace("{schema}", self.schema))
                    await conn.execute(f"UPDATE {self._t('schema_info')} SET version = $1", version)
                return before, SCHEMA_VERSION
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._cannot("cannot migrate the schema", exc) from None
        finally:
            await conn.close()

    def _refuse_newer(self, found: int) -> None:
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"config store {self.location}: written by a newer Mecha (schema {found}; this version "
                f"reads up to {SCHEMA_VERSION}); refusing to start (upgrade this control plane)"
            )

    async def _check_schema(self) -> None:
        """At start: create a new store, refuse a newer schema, and an older one until `mecha store migrate`
        (a schema upgrade is an operator's step, after a backup: docs/operations.md)."""
        pool = await self._ensure_pool()
        async with pool.acquire() as conn:
            found = await self.schema_version(conn)
        self._refuse_newer(found)
        if found == 0:
            await self.migrate()
        elif found < SCHEMA_VERSION:
            raise StoreError(
                f"config store {self.location}: schema {found} is older than this Mecha's "
                f"{SCHEMA_VERSION}; run `mecha store migrate --store ...` (after a backup) and start again"
            )

    # ---- reading ---------------------------------------------------------------------------------------
    async def head(self) -> int:
        """The stored version (cheap: replicas poll it)."""
        pool = await self._ensure_pool()
        try:
            return int(await pool.fetchval(f"SELECT version FROM {self._t('head')}"))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._cannot("cannot read the head version", exc) from None

    async def load(self) -> StoredState:
        try:
            await self._check_schema()
            pool = await self._ensure_pool()
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                version = await conn.fetchval(f"SELECT version FROM {self._t('head')}")
                rows = await conn.fetch(
                    "SELECT kind, namespace, name, owner, api_version, body, yaml, file, document FROM "
                    f"{self._t('documents')} ORDER BY kind, namespace, name"
                )
                inputs = await self._inputs_of(conn, int(version))
        except StoreError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._cannot("cannot be read", exc) from None
        return StoredState(int(version), tuple(_document(r) for r in rows), inputs)

    async def _inputs_of(self, conn: asyncpg.Connection, version: int) -> ResolvedInputs:
        body = await conn.fetchval(
            f"SELECT r.body FROM {self._t('versions')} v JOIN {self._t('resolved_inputs')} r "
            "ON r.hash = v.inputs WHERE v.version = $1",
            version,
        )
        try:
            return ResolvedInputs.from_json(body) if body else EMPTY_INPUTS
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"config store {self.location}: the resolved inputs of version {version} are corrupt ({exc})"
            ) from None

    async def documents_at(self, version: int) -> StoredState:
        """The document set as it was right after `version` (for rollback)."""
        pool = await self._ensure_pool()
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                known = await conn.fetchval(
                    f"SELECT count(*) FROM {self._t('versions')} WHERE version = $1", version
                )
                oldest = await conn.fetchval(f"SELECT min(version) FROM {self._t('document_history')}")
                if not known:
                    raise StoreError(f"version {version} is not in the history")
                if oldest is not None and version < oldest:
                    raise StoreError(f"version {version} was compacted (the history starts at {oldest})")
                rows = await conn.fetch(
                    "SELECT DISTINCT ON (kind, namespace, name) kind, namespace, name, owner, api_version, "
                    f"body, yaml, file, document FROM {self._t('document_history')} WHERE version <= $1 "
                    "ORDER BY kind, namespace, name, version DESC",
                    version,
                )
                inputs = await self._inputs_of(conn, version)
        except StoreError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._cannot("cannot read the history", exc) from None
        return StoredState(version, tuple(_document(r) for r in rows if r["owner"] is not None), inputs)

    async def history(self) -> list[VersionRecord]:
        pool = await self._ensure_pool()
        try:
            rows = await pool.fetch(
                f"SELECT version, at, source, changes FROM {self._t('versions')} ORDER BY version"
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._cannot("cannot read the history", exc) from None
        return [_version_record(r) for r in rows]

    # ---- writing ---------------------------------------------------------------------------------------
    async def save(self, record: ChangeRecord) -> None:
        new = record.version
        pool = await self._ensure_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                # the row lock serializes writers of every replica until this transaction ends
                current = int(await conn.fetchval(f"SELECT version FROM {self._t('head')} FOR UPDATE"))
                if new.version != current + 1:
                    raise StoreVersionConflict(
                        f"config store {self.location}: holds version {current}, refusing to write version "
                        f"{new.version} (another replica wrote first)"
                    )
                digest = record.inputs.digest
                if digest:  # once per distinct content: most versions share their predecessor's
                    await conn.execute(
                        f"INSERT INTO {self._t('resolved_inputs')} (hash, body) VALUES ($1, $2) "
                        "ON CONFLICT (hash) DO NOTHING",
                        digest,
                        record.inputs.to_json(),
                    )
                await conn.execute(
                    f"INSERT INTO {self._t('versions')} (version, at, source, changes, inputs) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    new.version,
                    new.at,
                    new.source,
                    json.dumps(new.change.record()),
                    digest,
                )
                columns = "kind, namespace, name, owner, api_version, body, yaml, file, document"
                rows = [_row(d) for d in record.upserts]
                await conn.executemany(
                    f"INSERT INTO {self._t('documents')} ({columns}, version) VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (kind, namespace, name) DO UPDATE "
                    "SET owner = EXCLUDED.owner, api_version = EXCLUDED.api_version, body = EXCLUDED.body, "
                    "yaml = EXCLUDED.yaml, file = EXCLUDED.file, document = EXCLUDED.document, "
                    "version = EXCLUDED.version",
                    [(*r, new.version) for r in rows],
                )
                await conn.executemany(
                    f"DELETE FROM {self._t('documents')} WHERE kind = $1 AND namespace = $2 AND name = $3",
                    [tuple(k) for k in record.removed],
                )
                await conn.executemany(
                    f"INSERT INTO {self._t('document_history')} ({columns}, version) VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    [(*r, new.version) for r in rows]
                    + [(*k, None, "", "", "", "", 0, new.version) for k in record.removed],
                )
                await conn.execute(f"UPDATE {self._t('head')} SET version = $1", new.version)
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, str(new.version))
        except StoreError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._cannot(f"cannot write version {new.version}", exc) from None

    # ---- the fleet: one heartbeat row per replica -----------------------------------------------------
    async def heartbeat(
        self, replica: str, address: str, version: int, proxies: list[dict[str, Any]]
    ) -> None:
        """This replica is alive, at `version`, holding these xDS streams (for `mecha proxy-status`), reached
        by the other replicas at `address` (replica_relay.py forwards admin reads there)."""
        pool = await self._ensure_pool()
        address = await self._reachable(pool, address)
        await pool.execute(
            f"INSERT INTO {self._t('replicas')} (id, address, heartbeat_at, version, proxies) VALUES "
            "($1, $2, extract(epoch from clock_timestamp()), $3, $4) ON CONFLICT (id) DO UPDATE SET "
            "address = EXCLUDED.address, heartbeat_at = EXCLUDED.heartbeat_at, version = EXCLUDED.version, "
            "proxies = EXCLUDED.proxies",
            replica,
            address,
            version,
            json.dumps(proxies, default=str),
        )

    async def _reachable(self, pool: asyncpg.Pool, address: str) -> str:
        """A replica bound to every interface (--host 0.0.0.0, as in compose and Kubernetes) is written at the
        address PostgreSQL sees it connect from: the network it shares with the store and the other replicas
        (0.0.0.0:15012 would name every replica alike, and the one who dials it)."""
        host, _, port = address.rpartition(":")
        if host.strip("[]") not in WILDCARD_HOSTS:
            return address
        if self._seen_from is None:
            self._seen_from = str(await pool.fetchval("SELECT host(inet_client_addr())") or "")
        if not self._seen_from:
            return address
        return f"[{self._seen_from}]:{port}" if ":" in self._seen_from else f"{self._seen_from}:{port}"

    async def fleet(self, max_age: float) -> list[dict[str, Any]]:
        """Replicas whose heartbeat is younger than max_age seconds (the database's clock for both)."""
        pool = await self._ensure_pool()
        rows = await pool.fetch(
            f"SELECT id, address, version, proxies FROM {self._t('replicas')} "
            "WHERE heartbeat_at > extract(epoch from clock_timestamp()) - $1 ORDER BY id",
            max_age,
        )
        return [
            {
                "id": r["id"],
                "address": r["address"],
                "version": r["version"],
                "proxies": json.loads(r["proxies"]),
            }
            for r in rows
        ]

    async def share_revocations(
        self, ids: set[str], proxies: dict[str, float]
    ) -> tuple[set[str], dict[str, float]]:
        """Add this replica's revocations (a union: the later cutoff wins, none removed); return them all."""
        pool = await self._ensure_pool()
        table = self._t("revocations")
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                f"INSERT INTO {table} (kind, key, cutoff) VALUES ($1, $2, $3) ON CONFLICT (kind, key) "
                f"DO UPDATE SET cutoff = greatest({table}.cutoff, EXCLUDED.cutoff)",
                [("id", jti, 0.0) for jti in sorted(ids)]
                + [("proxy", p, c) for p, c in sorted(proxies.items())],
            )
            rows = await conn.fetch(f"SELECT kind, key, cutoff FROM {table}")
        return (
            {r["key"] for r in rows if r["kind"] == "id"},
            {r["key"]: float(r["cutoff"]) for r in rows if r["kind"] == "proxy"},
        )

    async def leave(self, replica: str) -> None:
        pool = await self._ensure_pool()
        await pool.execute(f"DELETE FROM {self._t('replicas')} WHERE id = $1", replica)

    async def compact(self, keep: int) -> int:
        """Drop history older than the last `keep` versions (the current documents stay restorable).
        Returns how many version rows went."""
        pool = await self._ensure_pool()
        async with pool.acquire() as conn, conn.transaction():
            head = int(await conn.fetchval(f"SELECT version FROM {self._t('head')} FOR UPDATE"))
            floor = head - keep + 1
            if floor <= 1:
                return 0
            # the newest entry of every document at or below the floor becomes its entry at the floor
            await conn.execute(
                "WITH last AS (SELECT DISTINCT ON (kind, namespace, name) * FROM "
                f"{self._t('document_history')} WHERE version <= $1 "
                "ORDER BY kind, namespace, name, version DESC) "
                f"INSERT INTO {self._t('document_history')} SELECT kind, namespace, name, $1, owner, "
                "api_version, body, yaml, file, document FROM last WHERE version < $1 AND owner IS NOT NULL",
                floor,
            )
            await conn.execute(f"DELETE FROM {self._t('document_history')} WHERE version < $1", floor)
            status = await conn.execute(f"DELETE FROM {self._t('versions')} WHERE version < $1", floor)
            await conn.execute(
                f"DELETE FROM {self._t('resolved_inputs')} WHERE hash NOT IN "
                f"(SELECT inputs FROM {self._t('versions')})"
            )
            return int(status.split()[-1])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except Exception:  # the server may be gone: closing must not fail
                pool.terminate()


def _row(doc: StoredDocument) -> tuple[Any, ...]:
    body = json.dumps(doc.body, default=str)
    return (*doc.key, doc.owner, doc.api_version, body, doc.text, doc.file, doc.document)


def _document(row: asyncpg.Record) -> StoredDocument:
    key = (row["kind"], row["namespace"], row["name"])
    return StoredDocument(
        key,
        row["owner"],
        row["api_version"],
        json.loads(row["body"]),
        row["file"],
        int(row["document"]),
        row["yaml"],
    )


def _version_record(row: asyncpg.Record) -> VersionRecord:
    change = Change.of_record(json.loads(row["changes"]))
    return VersionRecord(int(row["version"]), float(row["at"]), row["source"], change)
