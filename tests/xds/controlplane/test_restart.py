"""A ControlPlane restarted on the same state folder: what it serves, and what re-reading folders does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from xds.controlplane.runtime import ControlPlane
from xds.controlplane.settings import Settings

SE = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: NAME}
spec:
  hosts: [NAME]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 127.0.0.1}]
"""


def entry(name: str) -> str:
    return SE.replace("NAME", name)


@asynccontextmanager
async def running(state: Path, *folders: Path) -> AsyncIterator[ControlPlane]:
    settings = Settings(xds_port=0, config_dirs=list(folders), watch=False, state_dir=state)
    settings.insecure_xds = True  # type: ignore[attr-defined]  # no workload credentials in this test
    cp = ControlPlane(settings)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


async def test_restart_serves_the_stored_version_and_an_unchanged_folder_adds_none(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "a.yaml").write_text(entry("a"))
    async with running(tmp_path / "state", folder) as cp:
        outcome = await cp.apply([("b.yaml", entry("b"))])
        assert outcome["accepted"] and outcome["version"] == 2
        before = cp.config_view()
    async with running(tmp_path / "state", folder) as cp:
        after = cp.config_view()
        assert after["version"] == 2  # the folder was re-read: unchanged, so no version
        assert after["documents"] == before["documents"]
        assert [v.version for v in await cp.store.history()] == [1, 2]


async def test_folder_changed_while_down_is_one_new_version(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "a.yaml").write_text(entry("a"))
    async with running(tmp_path / "state", folder) as cp:
        assert cp.store.version == 1
    (folder / "a.yaml").unlink()
    (folder / "c.yaml").write_text(entry("c"))
    async with running(tmp_path / "state", folder) as cp:
        assert cp.store.version == 2
        assert sorted(k[2] for k in cp.store.documents) == ["c"]


async def test_a_folder_no_longer_watched_is_dropped_api_documents_stay(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "a.yaml").write_text(entry("a"))
    (new / "n.yaml").write_text(entry("n"))
    async with running(tmp_path / "state", old) as cp:
        await cp.apply([("api.yaml", entry("api"))])
    async with running(tmp_path / "state", new) as cp:
        assert sorted(k[2] for k in cp.store.documents) == ["api", "n"]
        assert cp.store.owner(("ServiceEntry", "default", "api")) == "api"


async def test_config_folder_moved_to_a_new_path_is_taken_over(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "a.yaml").write_text(entry("a"))
    (new / "a.yaml").write_text(entry("a"))  # the same documents under another path
    async with running(tmp_path / "state", old) as cp:
        assert cp.store.version == 1
    async with running(tmp_path / "state", new) as cp:
        assert list(cp.store.documents) == [("ServiceEntry", "default", "a")]
        assert cp.store.owner(("ServiceEntry", "default", "a")) == f"folder:{new}"
        assert all(s["accepted"] for s in cp.source_status.values())
    async with running(tmp_path / "state", new) as cp:  # and it stays taken over
        assert cp.store.owner(("ServiceEntry", "default", "a")) == f"folder:{new}"
        assert cp.store.version == 2


async def test_auto_registered_entries_survive_a_restart(tmp_path: Path) -> None:
    """Registration owns its WorkloadEntries (no folder): a restart dropped them as an unwatched folder's, so
    every registered endpoint left EDS until its proxy reconnected (503s through a control-plane restart)."""
    from xds.controlplane.registration import OWNER_REGISTRATION
    from xds.pipeline import load_text

    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "a.yaml").write_text(entry("a"))
    registered = (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        "metadata: {name: a-a-v1, namespace: default}\nspec: {address: 127.0.0.1, labels: {app: a}}\n"
    )
    key = ("WorkloadEntry", "default", "a-a-v1")
    async with running(tmp_path / "state", folder) as cp:
        docs, _ = load_text(registered, "registration")
        outcome = await cp._change(lambda: cp.store.plan_apply(docs, OWNER_REGISTRATION), False)
        assert outcome["accepted"], outcome
    async with running(tmp_path / "state", folder) as cp:
        assert key in cp.store.documents and cp.store.owner(key) == OWNER_REGISTRATION
