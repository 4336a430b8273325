"""The PostgreSQL store against the real server: TLS modes, schema versions, leader election, and two
ControlPlanes (replicas) on one store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from pg_store import PG_BASE, private_schema, store_url

from xds.ca import CertificateAuthority
from xds.controlplane.jobs import AdvisoryLockElection
from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings
from xds.controlplane.store import StoreError
from xds.controlplane.store.migrations import SCHEMA_VERSION
from xds.controlplane.store.postgres import PostgresBackend
from xds.identity.credential import Credential

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: NAME}
spec:
  hosts: [NAME.example]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 127.0.0.1}]
"""


def entry(name: str) -> tuple[str, str]:
    return (f"{name}.yaml", SE.replace("NAME", name))


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with private_schema() as name:
        yield name


@asynccontextmanager
async def replica(url: str, state: Path, *folders: Path) -> AsyncIterator[ControlPlane]:
    settings = Settings(
        xds_port=0, config_dirs=list(folders), watch=False, state_dir=state, store=url, replica_poll=0.5
    )
    settings.insecure_xds = True
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


async def reaches(cp: ControlPlane, version: int, within: float = 10.0) -> None:
    """Wait (bounded) for a replica to serve `version`; the assertion is on the version, not the time."""
    async with asyncio.timeout(within):
        while cp.store.version < version:
            await cp.wait_for_version_change(cp.store.version, 1.0)
    assert cp.store.version == version


# ---- connecting ------------------------------------------------------------------------------------------
async def test_sslmode_disable_connects(schema: str) -> None:
    backend = PostgresBackend(store_url(schema, sslmode="disable"))
    try:
        assert (await backend.load()).version == 0
        assert "sslmode" not in backend.location and "password" not in backend.location
    finally:
        await backend.close()


async def test_verify_full_against_a_server_without_tls_is_refused_clearly(
    schema: str, tmp_path: Path
) -> None:
    root = tmp_path / "root-cert.pem"
    root.write_bytes(CertificateAuthority().root_pem)
    backend = PostgresBackend(store_url(schema, sslmode="verify-full", sslrootcert=str(root)))
    with pytest.raises(StoreError, match="sslmode=verify-full but the server does not offer TLS"):
        await backend.load()
    await backend.close()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("sslmode=prefer", "sslmode='prefer': expected one of disable, require, verify-ca, verify-full"),
        ("sslmode=verify-ca", "sslmode=verify-ca needs sslrootcert="),
        ("schema=a;drop", "schema='a;drop': letters, digits and _ only"),
    ],
)
def test_bad_store_urls_name_the_field(query: str, reason: str) -> None:
    with pytest.raises(StoreError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        PostgresBackend(f"{PG_BASE}?{query}")


# ---- schema versions -------------------------------------------------------------------------------------
async def test_newer_schema_is_refused_and_nothing_changes(schema: str) -> None:
    backend = PostgresBackend(store_url(schema))
    await backend.load()
    await backend.close()
    conn = await asyncpg.connect(PG_BASE)
    await conn.execute(f'UPDATE "{schema}".schema_info SET version = {SCHEMA_VERSION + 1}')
    again = PostgresBackend(store_url(schema))
    with pytest.raises(StoreError, match=f"newer Mecha \\(schema {SCHEMA_VERSION + 1}; this version reads"):
        await again.load()
    with pytest.raises(StoreError, match="newer Mecha"):
        await again.migrate()
    await again.close()
    assert await conn.fetchval(f'SELECT version FROM "{schema}".schema_info') == SCHEMA_VERSION + 1
    await conn.close()


async def test_older_schema_waits_for_migrate(schema: str) -> None:
    backend = PostgresBackend(store_url(schema))
    await backend.load()
    conn = await asyncpg.connect(PG_BASE)
    tables = f'"{schema}".replicas, "{schema}".revocations, "{schema}".resolved_inputs'  # not in schema 1
    await conn.execute(
        f'DROP TABLE {tables}; ALTER TABLE "{schema}".versions DROP COLUMN inputs; '
        f'UPDATE "{schema}".schema_info SET version = 1'
    )
    with pytest.raises(StoreError, match="run `mecha store migrate"):
        await PostgresBackend(store_url(schema)).load()
    assert await backend.migrate() == (1, SCHEMA_VERSION)
    assert (await PostgresBackend(store_url(schema)).load()).version == 0
    await conn.close()
    await backend.close()


async def test_foreign_tables_in_the_schema_are_refused(schema: str) -> None:
    conn = await asyncpg.connect(PG_BASE)
    await conn.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".orders (id int)')
    await conn.close()
    with pytest.raises(StoreError, match="not a Mecha config store"):
        await PostgresBackend(store_url(schema)).load()


# ---- periodic jobs: one leader ---------------------------------------------------------------------------
async def test_one_leader_and_a_lost_session_hands_the_jobs_over(schema: str) -> None:
    backend = PostgresBackend(store_url(schema))
    await backend.load()
    first, second = AdvisoryLockElection(backend, 1.0), AdvisoryLockElection(backend, 1.0)
    try:
        assert await first.check() is True
        assert await second.check() is False
        assert await first.check() is True  # still the leader (and the lock is not taken twice)
        conn = await asyncpg.connect(PG_BASE)  # the leader's database session ends (a network cut)
        pid = first._conn.get_server_pid()
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(200):  # the signal is asynchronous: wait until the session is gone
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.05)
        await conn.close()
        assert await second.check() is True  # the lock went with the session
        assert await first.check() is False  # and the old leader knows it at its next check
    finally:
        await first.close()
        await second.close()
        await backend.close()


# ---- two replicas ----------------------------------------------------------------------------------------
async def test_a_change_on_one_replica_reaches_the_other(schema: str, tmp_path: Path) -> None:
    url = store_url(schema)
    async with replica(url, tmp_path / "a") as a, replica(url, tmp_path / "b") as b:
        outcome = await a.apply([entry("one")])
        assert outcome["accepted"] and outcome["version"] == 1
        await reaches(b, 1)
        assert b.config_view()["documents"] == a.config_view()["documents"]
        assert b.jobs.leader != a.jobs.leader  # exactly one runs the periodic jobs


async def test_concurrent_applies_on_two_replicas_both_land_in_sequence(schema: str, tmp_path: Path) -> None:
    url = store_url(schema)
    async with replica(url, tmp_path / "a") as a, replica(url, tmp_path / "b") as b:
        await a.replication.stop()  # no NOTIFY: both plan against version 0 and race to commit
        await b.replication.stop()
        first, second = await asyncio.gather(a.apply([entry("x")]), b.apply([entry("y")]))
        assert first["accepted"] and second["accepted"], (first, second)
        assert sorted([first["version"], second["version"]]) == [1, 2]
        history = await a.store.history()
        assert [v.version for v in history] == [1, 2]
        await a.catch_up()
        await b.catch_up()
        names = {d["name"] for d in a.config_view()["documents"]}
        assert names == {"x", "y"} and a.config_view() == b.config_view()


async def test_expected_version_on_a_stale_replica_is_409(schema: str, tmp_path: Path) -> None:
    url = store_url(schema)
    async with replica(url, tmp_path / "a") as a, replica(url, tmp_path / "b") as b:
        await b.replication.stop()  # b has not heard of version 1 yet
        assert (await a.apply([entry("x")]))["accepted"]
        outcome = await b.apply([entry("y")], expected_version=0)
        assert not outcome["accepted"] and outcome["conflict"] == "version"
        assert outcome["current_version"] == 1  # b caught up while refusing
        assert [v.version for v in await a.store.history()] == [1]


async def test_stale_replica_revalidates_against_the_new_head(schema: str, tmp_path: Path) -> None:
    url = store_url(schema)
    folder = tmp_path / "config"
    folder.mkdir()
    async with replica(url, tmp_path / "b") as b:
        await b.replication.stop()  # b will not know that a folder now owns `shared`
        (folder / "shared.yaml").write_text(entry("shared")[1])
        async with replica(url, tmp_path / "a", folder) as a:
            assert a.store.version == 1
            outcome = await b.apply([entry("shared")])
            assert not outcome["accepted"] and outcome["conflict"] == "owner", outcome
            assert "owned by folder:" in outcome["diagnostics"][0]["message"]
            assert [v.source for v in await a.store.history()] == [f"folder:{folder}"]


async def test_rollback_and_history_across_replicas(schema: str, tmp_path: Path) -> None:
    url = store_url(schema)
    async with replica(url, tmp_path / "a") as a, replica(url, tmp_path / "b") as b:
        await a.apply([entry("one")])
        await a.apply([entry("two")])
        await reaches(b, 2)
        outcome = await b.rollback(1)
        assert outcome["accepted"] and outcome["version"] == 3
        assert outcome["changes"]["removed"] == ["ServiceEntry default/two"]
        await reaches(a, 3)
        assert {d["name"] for d in a.config_view()["documents"]} == {"one"}
        history = await a.history_view()
        assert [(v["version"], v["source"]) for v in history["versions"]] == [
            (3, "rollback:1"),
            (2, "api"),
            (1, "api"),
        ]
        missing = await a.rollback(42)
        assert not missing["accepted"] and missing["conflict"] == "not-found"


async def test_a_revocation_on_one_replica_holds_on_the_other(schema: str, tmp_path: Path) -> None:
    url = store_url(schema)
    settings = [
        Settings(xds_port=0, watch=False, state_dir=tmp_path / n, store=url, replica_poll=0.5) for n in "ab"
    ]
    a, b = ControlPlane(settings[0]), ControlPlane(settings[1])  # secure xDS: workload credentials
    await a.start()
    await b.start()
    try:
        issued = Credential("p1", "default", ("reviews",), issued_at=int(time.time()) - 5, jti="j-old")
        assert b.identity.authenticator is not None and a.identity.authenticator is not None
        assert not b.identity.authenticator.is_revoked(issued)
        a.identity.revoke(a.server, proxy_id="p1")
        a.identity.revoke(a.server, jti="j-other")
        async with asyncio.timeout(10):
            while not b.identity.authenticator.is_revoked(issued):
                await b.replication.wake()
        other = Credential("p2", "default", ("x",), issued_at=int(time.time()), jti="j-other")
        assert b.identity.authenticator.is_revoked(other)
        later = Credential("p1", "default", ("reviews",), issued_at=int(time.time()) + 60, jti="j-new")
        assert not b.identity.authenticator.is_revoked(later)  # a credential issued after stays valid
        assert b.identity.authenticator.revocations.path.exists()  # kept across b's restarts too
    finally:
        await a.stop()
        await b.stop()


async def test_replicas_sharing_the_identity_files_accept_each_others_credentials(
    schema: str, tmp_path: Path
) -> None:
    """The CA root and the credential signing key are files every replica mounts (never in the database):
    a credential issued by one replica is accepted by the other, and both sign under the same root."""
    url = store_url(schema)
    shared = tmp_path / "shared-state"
    first = Settings(xds_port=0, watch=False, state_dir=shared, store=url, replica_poll=0.5)
    a = ControlPlane(first)
    b = ControlPlane(Settings(xds_port=0, watch=False, state_dir=shared, store=url, replica_poll=0.5))
    assert a.identity.issuer is not None and b.identity.authenticator is not None
    token, _ = a.identity.issuer.issue("p1", "default", ["reviews"])
    assert b.identity.authenticator.verifier.verify(token).proxy_id == "p1"
    assert a.identity.ca is not None and b.identity.ca is not None
    assert a.identity.ca.root_pem == b.identity.ca.root_pem
    await a.start()
    try:
        await a.apply([entry("one")])
        a.identity.revoke(a.server, proxy_id="p9")
        await a.replication.wake()
    finally:
        await a.stop()
    conn = await asyncpg.connect(PG_BASE)
    try:  # no key went into the store (nor into its backups)
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert len(tables) >= 6
        for row in tables:
            content = str(await conn.fetch(f'SELECT * FROM "{schema}".{row["table_name"]}'))
            assert "PRIVATE KEY" not in content and "BEGIN" not in content, row["table_name"]
    finally:
        await conn.close()
