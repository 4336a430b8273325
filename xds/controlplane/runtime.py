"""The running control plane: config store + sources -> debounce -> SnapshotBuilder -> cache -> xDS server.

One asyncio process. Store changes are serialized by a lock and compiled off the event loop (compilation is
pure), so xDS streams keep answering ACKs while a big change compiles.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xds import metrics
from xds.cache.snapshot import Snapshot
from xds.controlplane import consistency
from xds.controlplane.diff import diff_all
from xds.controlplane.gcpolicy import QuietCollector
from xds.controlplane.inputs import (
    SOURCE_CREDENTIALS,
    SOURCE_JWKS_REFRESH,
    InputResolver,
    jwks_refresh_interval,
)
from xds.controlplane.report import change_summary, diag_line, own_diagnostics
from xds.controlplane.settings import Settings
from xds.controlplane.store import (
    OWNER_API,
    VERSION_CONFLICT,
    Change,
    ConfigStore,
    InputRefresh,
    Key,
    Plan,
    StoreError,
    StoreVersionConflict,
    folder_owner,
)
from xds.controlplane.store.open import is_shared, open_backend
from xds.controlplane.watcher import FolderWatcher
from xds.diagnostics import Diagnostic, Location
from xds.proxy import ProxyIdentity
from xds.redact import Redactor, secret_values
from xds.sources import RawDocument
from xds.sources.secrets import guard_folder, is_secret, refuse_keys
from xds.validate.strict import promote_strict

if TYPE_CHECKING:
    from xds.controlplane.compiler import Builder, Pipeline

log = logging.getLogger("mecha.controlplane")

DAPR_KINDS = {
    "components": "Component",
    "subscriptions": "Subscription",
    "resiliencies": "Resiliency",
    "configurations": "Configuration",
}


def status_dict(status: Any) -> dict[str, Any]:
    """ProxyStatus -> JSON: per type state and versions; types the proxy never requested are left out."""
    types_out: dict[str, Any] = {}
    for ts in status.types:
        if str(ts.state) == "NOT_REQUESTED":
            continue
        types_out[ts.short_name] = {
            "state": str(ts.state),
            "snapshot_version": ts.snapshot_version,
            "sent_version": ts.sent_version,
            "acked_version": ts.acked_version,
            "nack_message": ts.nack.message if ts.nack else "",
            "nack_version": ts.nack.version if ts.nack else "",
        }
    return {
        "proxy_id": status.proxy_id,
        "mode": status.mode,
        "state": str(status.state),
        "admin": status.identity.admin,
        "peer": status.peer,
        "flavour": status.flavour,
        "transport": status.transport,
        "connected_at": status.connected_at,
        "config_version": status.config_version,
        "types": types_out,
    }


class ControlPlane:
    def __init__(self, settings: Settings | None = None, pipeline: Pipeline | None = None) -> None:
        """pipeline: the xds.pipeline module (tests may pass a stand-in with the same functions)."""
        # Imported here so that `mecha validate` / the CLI client never pay for gRPC and the translator.
        if pipeline is None:
            from xds import pipeline as default_pipeline

            pipeline = default_pipeline
        from xds.cache import SnapshotCache
        from xds.server import XdsServer
        from xds.server.push import Debouncer

        self.settings = settings or Settings.from_env()
        self._pipeline: Pipeline = pipeline
        # durable: a restarted control plane serves the last accepted version (xds/controlplane/store/)
        backend = open_backend(self.settings.store, self.settings.state_dir)  # StoreError: a bad --store
        # JWKS and credential certificates are resolved with each change and stored with its version
        # (inputs.py): every replica serves the stored copy (a test pipeline may not take inputs)
        takes_inputs = "inputs" in inspect.signature(pipeline.compile_documents).parameters
        folders = tuple(Path(f) for f in self.settings.config_dirs)  # their TLS Secrets are credentials
        resolver = (
            InputResolver(self.settings.credentials_folder(), config_folders=folders)
            if takes_inputs
            else None
        )
        self.store = ConfigStore(pipeline.compile_documents, backend, resolver)
        # the secret values logs and API answers never show: known as soon as the store or the proxies change
        # (a folder loaded at start is masked before any API request)
        self.redactor = Redactor()
        self.store.on_change = self._refresh_secrets
        self.replication: Any = None  # a shared store (PostgreSQL): follow its head (replication.py)
        self.jobs = _periodic_jobs(self.settings, backend)
        from xds.controlplane.registration import Registration

        # auto-registered WorkloadEntries follow the connected proxies; the leader cleans up (registration.py)
        self.registration = Registration(
            self.store,
            lambda plan: self._change(plan, False),
            self._connections,
            controller=socket.gethostname(),
            grace_s=self.settings.registration_grace,
        )
        cleanup_every = min(5.0, self.settings.registration_grace / 2)
        self.jobs.add("endpoint-clean-up", self.registration.clean_up, every=cleanup_every)
        self.jobs.add("jwks-refresh", self.refresh_jwks, every=jwks_refresh_interval())
        self.jobs.add("credentials-check", self.check_credentials, every=CREDENTIALS_CHECK_S)
        self.cache = SnapshotCache(on_new_proxy=self._on_new_proxy)
        from xds.identity.controlplane import xds_identity

        self.identity = xds_identity(self.settings)  # TLS + credentials on the xDS port unless --insecure-xds
        pushes = self.settings.max_concurrent_pushes
        replicas: dict[str, Any] = (
            {"keepalive_options": replica_keepalive()} if is_shared(self.settings.store) else {}
        )
        self.server = XdsServer(
            self.cache, max_concurrent_pushes=pushes, **self.identity.server_options(), **replicas
        )
        self.certs = _certificates(self.settings)  # None unless mTLS is on
        from xds.identity.peers import EndpointIdentities

        # endpoints served by connected proxies: the SAN is their credential's account (identity/peers.py)
        self.endpoint_identities = EndpointIdentities()
        self.builder = self._new_builder()
        self._rotation: asyncio.Task[None] | None = None
        self._debouncer = Debouncer(
            self._push_all, after=self.settings.debounce_after, max_delay=self.settings.debounce_max
        )
        self._proxies: dict[str, ProxyIdentity] = {}
        self._secrets_of: dict[str, tuple[ProxyIdentity, set[str]]] = {}  # proxy id -> (identity, tokens)
        self._dapr_secrets: tuple[int, set[str]] = (-1, set())  # (store version, its component secrets)
        self._arrivals: list[ProxyIdentity] = []  # new proxies waiting for their first build
        self._arrivals_built: asyncio.Future[None] | None = None
        self._next_catch_up: asyncio.Future[bool] | None = None  # shared by the new proxies waiting for it
        self._running_catch_up: asyncio.Future[bool] | None = None
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._changed_at = time.monotonic()
        self._watchers: list[FolderWatcher] = []
        self.source_status: dict[str, dict[str, Any]] = {}
        self.xds_port: int | None = None
        self._logged_errors = RecentSet(LOGGED_ERRORS_KEEP)
        self._gc = QuietCollector()
        self._no_ca_accepted: tuple[Any, list[Diagnostic]] | None = None  # (accepted config, its findings)
        self.ready = False

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> int:
        """Load the config store (StoreError: unreadable, refuse to start), serve xDS from it, then load every
        config folder (refusals are reported, not fatal) and start watching."""
        await self._load_store()  # the first proxy gets exactly the stored version
        self.jobs.start()
        watched = {folder_owner(Path(f)) for f in self.settings.config_dirs}
        # a folder given under a new path takes over the documents of one no longer given (moved config)
        self.store.adoptable = frozenset(s for s in self.store.sources() - watched if s.startswith("folder:"))
        self.xds_port = await self.server.start(f"{self.settings.xds_host}:{self.settings.xds_port}")
        if is_shared(self.settings.store):  # follow the store's head; heartbeat this replica's streams
            from xds.controlplane.replication import Replication

            poll = self.settings.replica_poll
            authenticator = self.identity.authenticator  # None with --insecure-xds: nothing to revoke
            self.replication = Replication(
                self.store.backend,
                self.catch_up,
                poll,
                self._heartbeat_report,
                revocations=authenticator.revocations if authenticator is not None else None,
                on_revoked=lambda: authenticator and self.server.close_streams(authenticator.is_revoked),
            )
            self.replication.start()
        self.identity.start(self.server)  # streams whose credential expires are closed
        self.registration.controller = f"{socket.gethostname()}/{self.settings.xds_host}:{self.xds_port}"
        self.registration.start()
        for folder in self.settings.config_dirs:
            watcher = FolderWatcher(Path(folder), self._on_folder_change, self.settings.watch_interval)
            await watcher.poll_once()
            if self.settings.watch:
                watcher.start()
            self._watchers.append(watcher)
        credentials = self.settings.credentials_folder()
        if credentials is not None and self.settings.watch:
            # Gateway credentialName files (cert-manager style renewals): a new certificate reaches the
            # gateways without any config change
            watcher = FolderWatcher(
                credentials, self._on_credentials_change, self.settings.watch_interval, suffixes=None
            )
            await watcher.poll_once()
            watcher.start()
            self._watchers.append(watcher)
        await self._drop_unwatched_folders()
        self.store.adoptable = frozenset()
        if self.certs is not None:
            self._rotation = asyncio.create_task(self._rotate_certificates(), name="cert-rotation")
        self.ready = True
        return self.xds_port

    async def _load_store(self) -> None:
        diags = await self.store.load()
        log.info(
            "config store %s: version %d, %d documents",
            self.store.backend.location,
            self.store.version,
            len(self.store.documents),
        )
        for diag in diags:  # accepted by an earlier version of the compiler: served as accepted
            log.error("stored config: %s", diag_line(diag.to_dict()))

    async def _drop_unwatched_folders(self) -> None:
        """Documents of a folder no longer given with --config go, as if the folder had been emptied."""
        watched = {folder_owner(Path(f)) for f in self.settings.config_dirs}
        folders = {s for s in self.store.sources() if s.startswith(folder_owner(""))}  # not api, registration
        for source in sorted(folders - watched):
            outcome = await self._change(partial(self.store.plan_replace_source, source, []), False)
            if outcome["accepted"]:
                log.info("%s is no longer watched: %s", source, change_summary(outcome["changes"]))
            else:
                log.error(
                    "%s is no longer watched, but removing its documents was refused:\n%s",
                    source,
                    "\n".join(diag_line(d) for d in outcome["diagnostics"]),
                )

    async def stop(self) -> None:
        self.ready = False
        await self.registration.stop()
        await self.jobs.stop()
        if self.replication is not None:
            await self.replication.stop()
        await self.identity.stop()
        if self._rotation is not None:
            self._rotation.cancel()
            await asyncio.gather(self._rotation, return_exceptions=True)
        for watcher in self._watchers:
            await watcher.stop()
        await self._debouncer.close()
        await self.server.stop()
        await self.store.close()
        self._gc.close()

    # ---- pushing ---------------------------------------------------------------------------------------
    async def _on_new_proxy(self, proxy: ProxyIdentity) -> None:
        """A proxy connected: build its snapshot at once (no debounce, Envoy is waiting for CDS)."""
        self._proxies[proxy.id] = proxy
        self._refresh_secrets()  # its node metadata tokens
        self.registration.poke()  # its WorkloadEntry, when it names a WorkloadGroup
        if self.replication is not None:  # a proxy coming from another replica may have seen a newer head
            await self._catch_up_before_first_response()
        self._arrivals.append(proxy)
        if self._arrivals_built is None:
            self._arrivals_built = asyncio.ensure_future(self._build_arrivals())
        # shielded: a proxy that leaves (its task cancelled) does not cancel the others' build
        await asyncio.shield(self._arrivals_built)

    async def _build_arrivals(self) -> None:
        """First snapshots of the proxies that arrived together, in one build: a build walks the mesh's
        services once whatever the number of proxies (a fleet reconnecting at once paid it per proxy)."""
        await asyncio.sleep(0)  # the arrivals resumed in this loop iteration join
        arrived, self._arrivals, self._arrivals_built = self._arrivals, [], None
        batch = list({p.id: p for p in arrived}.values())  # a proxy back meanwhile: its latest identity
        # their credentials may change what clients expect of their endpoints: with mTLS (the only user of
        # endpoint identities) every proxy is rebuilt, debounced (a fleet connecting at once is one
        # rebuild, not one per proxy); these are built now
        changed = self.endpoint_identities.update(self.builder, self.store.config, self.server.proxies())
        if changed and self.certs is not None:
            self._changed_at = time.monotonic()
            self._debouncer.trigger(self.store.version)
        await self._build_and_set(batch)

    def _refresh_secrets(self) -> None:
        """Component credentials of the served set and the connected proxies' node metadata tokens."""
        proxies = {**self._proxies, **{p.id: p for p in self.server.proxies()}}
        if self._dapr_secrets[0] != self.store.version:  # walked once per version, not per new proxy
            self._dapr_secrets = (self.store.version, secret_values(self.dapr_view()))
        values = set(self._dapr_secrets[1])
        for proxy in proxies.values():
            values |= self._proxy_secrets(proxy)
        for pid in [pid for pid in self._secrets_of if pid not in proxies]:
            del self._secrets_of[pid]
        self.redactor.update(values)

    def _proxy_secrets(self, proxy: ProxyIdentity) -> set[str]:
        """A proxy's node metadata tokens, walked once per identity (this runs for every new stream: walking
        every connected proxy each time was quadratic in the fleet)."""
        found = self._secrets_of.get(proxy.id)
        if found is None or found[0] is not proxy:
            found = self._secrets_of[proxy.id] = (proxy, secret_values([dataclasses.asdict(proxy)]))
        return found[1]

    def _connections(self) -> list[tuple[ProxyIdentity, float]]:
        """(proxy, when its stream opened) per open stream: registration tells a restarted proxy apart."""
        return self.server.connections()

    def _connected(self) -> list[ProxyIdentity]:
        """Proxies with an open stream; forget snapshots of those that left."""
        live = {p.id: p for p in self.server.proxies()}
        for pid in [p for p in self._snapshots if p not in live]:
            del self._snapshots[pid]
        if live != self._proxies:
            self._proxies = live
            self._refresh_secrets()  # a proxy came back with other node metadata tokens
        return list(live.values())

    async def _push_all(self, _changes: list[int]) -> None:
        self.endpoint_identities.update(self.builder, self.store.config, self.server.proxies())
        await self._build_and_set(self._connected())

    async def _build_and_set(self, proxies: list[ProxyIdentity]) -> None:
        if not proxies:
            return
        started = time.perf_counter()
        snapshots = self.builder.build(
            self.store.config, proxies, changed_at=self._changed_at, config_version=str(self.store.version)
        )
        metrics.translate_time.observe(time.perf_counter() - started)
        self._gc.after_build()  # no full GC pass inside the pushes that follow (gcpolicy.py)
        # e.g. a Gateway credentialName with no files: log each error once
        for diag in getattr(self.builder, "warnings", ()):
            text = str(diag)
            if diag.severity == "error" and self._logged_errors.add(text):
                log.error("%s", text)
        for pid, snap in snapshots.items():
            try:  # an inconsistent snapshot is not published: the proxy keeps its last good one
                consistency.check(pid, snap, self._snapshots.get(pid), self.certs is not None)
            except consistency.InconsistentSnapshot as e:
                if self._logged_errors.add(str(e)):
                    log.error("%s", e)
                continue
            self._snapshots[pid] = snap
            self.cache.set_snapshot(pid, snap)

    def _new_builder(self) -> Builder:
        from xds.credential_files import CredentialStore

        options = {} if self.settings.route_tables == "auto" else {"route_tables": self.settings.route_tables}
        if self.settings.path_normalization != "BASE":  # a test pipeline's builder may not take it
            options["path_normalization"] = self.settings.path_normalization
        if self.certs is None:
            builder = self._pipeline.SnapshotBuilder(**options)
        else:  # a dry run sees the same certificates; with agents, SDS references and no key
            agent = {"agent_sds": True} if self.identity.agent_sds else {}
            builder = self._pipeline.SnapshotBuilder(certs=self.certs, **options, **agent)
        if hasattr(builder, "credentials"):  # Gateway credentialName folder (a test pipeline may lack it)
            stored = self.store.resolver is not None  # certificates from the version, keys from the files
            secrets = getattr(self.store.resolver, "secrets", None)  # TLS Secret documents' keys
            builder.credentials = CredentialStore(
                self.settings.credentials_folder(), stored=stored, secrets=secrets
            )
        return builder

    async def _rotate_certificates(self) -> None:
        """Rebuild the snapshots of proxies whose certificate passed half its lifetime: new SDS secrets."""
        certs = self.certs
        assert certs is not None
        idle = max(0.05, min(30.0, self.settings.cert_ttl / 20))
        while True:
            wait = certs.seconds_to_next_rotation()
            await asyncio.sleep(idle if wait is None else min(max(wait, 0.05), idle))
            async with self._lock:
                live = self._connected()
                certs.retain({p.id for p in live})
                due = set(certs.due([p.id for p in live]))
                if due:
                    log.info("rotating the certificates of %d proxies", len(due))
                    await self._build_and_set([p for p in live if p.id in due])

    def snapshot(self, proxy_id: str) -> Snapshot | None:
        return self._snapshots.get(proxy_id)

    def proxy(self, proxy_id: str) -> ProxyIdentity | None:
        return next((p for p in self.server.proxies() if p.id == proxy_id), None)

    def proxy_status(self) -> list[dict[str, Any]]:
        """This replica's streams and, on a shared store, those of every other live replica (from their
        heartbeats): any replica answers for the whole fleet; `replica` says which one holds each stream."""
        local = [status_dict(st) for st in self.server.status()]
        for row in local:  # a WorkloadEntry claiming another identity than this proxy's credential
            if warnings := self.endpoint_identities.warnings_for(row["proxy_id"]):
                row["warnings"] = warnings
        if self.replication is None:
            return local
        here = f"{self.settings.xds_host}:{self.xds_port}"
        seen = {row["proxy_id"] for row in local}
        remote = [
            {**row, "replica": other["address"]}
            for other in self.replication.others
            for row in other["proxies"]
            if row.get("proxy_id") not in seen
        ]
        return [{**row, "replica": here} for row in local] + remote

    def _heartbeat_report(self) -> tuple[str, str, int, list[dict[str, Any]]]:
        address = f"{self.settings.xds_host}:{self.xds_port}"
        streams = [status_dict(st) for st in self.server.status()]
        return f"{socket.gethostname()}/{address}", address, self.store.version, streams

    # ---- changes -----------------------------------------------------------------------------------------
    def load_text_files(self, files: Iterable[tuple[str, str]]) -> tuple[list[RawDocument], list[Diagnostic]]:
        docs: list[RawDocument] = []
        diags: list[Diagnostic] = []
        for name, text in files:
            more, problems = self._pipeline.load_text(text, name)
            docs.extend(more)
            diags.extend(problems)
        return docs, diags

    async def apply(
        self,
        files: Iterable[tuple[str, str]],
        dry_run: bool = False,
        expected_version: int | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """expected_version: refuse (conflict "version") unless the store is at that version. strict: refuse
        what istiod would accept with a warning (also for every change with MECHA_STRICT=1)."""
        docs, diags = self.load_text_files(files)
        docs = refuse_keys(docs, diags)  # keys never go through the config store (xds/sources/secrets.py)
        if not docs and not diags:
            diags.append(Diagnostic(Location(), "", "no config documents in the request", code="empty"))
        return await self._change(
            lambda: self.store.plan_apply(docs, OWNER_API, diags).with_strict(strict),
            dry_run,
            expected_version,
        )

    async def delete(
        self, files: Iterable[tuple[str, str]], dry_run: bool = False, expected_version: int | None = None
    ) -> dict[str, Any]:
        docs, diags = self.load_text_files(files)
        if diags:
            return self._outcome(Plan({}, {}, self.store.plan_delete(()).change, diags), dry_run)
        keys: list[Key] = [d.key for d in docs]
        where = {d.key: d.location for d in docs}
        return await self._change(
            lambda: self.store.plan_delete(keys, OWNER_API, where), dry_run, expected_version
        )

    async def _on_credentials_change(self, folder: Path) -> None:
        """A file under the credentials folder changed: the certificates are read again into a new version
        (source inputs:credentials) that every replica serves; only the gateways whose certificate changed
        get a new SDS secret. On a shared store the leader alone writes it (replicas mount the same files)."""
        if self.store.resolver is None:  # a test pipeline: rebuild from the files
            self._changed_at = time.monotonic()
            self._debouncer.trigger(self.store.version)
            return
        if not self.jobs.leader:
            return
        log.info("credentials folder %s changed", folder)
        await self.refresh_inputs(InputRefresh(credentials=True), SOURCE_CREDENTIALS)

    async def check_credentials(self) -> None:
        """The leader's job: credential files renewed while no watcher saw it (a restart, another mount)."""
        resolver = self.store.resolver
        if resolver is not None and await asyncio.to_thread(
            resolver.credentials_differ, self.store.config, self.store.inputs
        ):
            await self.refresh_inputs(InputRefresh(credentials=True), SOURCE_CREDENTIALS)

    async def refresh_jwks(self) -> None:
        """The leader's periodic job (istiod: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL): fetch every JWKS again."""
        if self.store.inputs.jwks and self.store.resolver is not None:
            await self.refresh_inputs(InputRefresh(jwks=True), SOURCE_JWKS_REFRESH)

    async def refresh_inputs(self, refresh: InputRefresh, source: str) -> dict[str, Any]:
        """Resolve the current config's inputs again: a new version when they differ, validated like any
        change (a JWKS that is no longer valid is refused and the last good one keeps serving)."""
        outcome = await self._change(lambda: self.store.plan_refresh_inputs(source, refresh), False)
        changed = outcome["changes"].get("inputs")
        if not outcome["accepted"]:
            log.error("%s refused:\n%s", source, "\n".join(diag_line(d) for d in outcome["diagnostics"]))
        elif changed:
            log.info("%s: version %d (%s)", source, outcome["version"], ", ".join(changed))
        return outcome

    async def _on_folder_change(self, folder: Path) -> None:
        source = folder_owner(folder)
        if not await asyncio.to_thread(folder.is_dir):
            diags = [Diagnostic(Location(file=str(folder)), "", "config folder does not exist", code="io")]
            self.source_status[source] = {"accepted": False, "diagnostics": [d.to_dict() for d in diags]}
            log.error("config folder %s does not exist", folder)
            return
        paths: list[str | Path] = [folder]
        docs, diags = await asyncio.to_thread(self._pipeline.load_paths, paths)
        docs = guard_folder(docs, diags)  # Secrets stored redacted; a key file open to others refused
        # a renewed Secret looks unchanged once redacted: its certificate is read again with the change
        refresh = InputRefresh(credentials=True) if any(map(is_secret, docs)) else None

        def plan() -> Plan:
            made = self.store.plan_replace_source(source, docs, diags)
            made.refresh = made.refresh or refresh
            return made

        outcome = await self._change(plan, False)
        self.source_status[source] = {
            "accepted": outcome["accepted"],
            "version": outcome["version"],
            "diagnostics": outcome["diagnostics"],
            "at": time.time(),
        }
        if outcome["accepted"]:
            log.info("config folder %s: %s", folder, change_summary(outcome["changes"]))
        else:
            log.error(
                "config folder %s refused; the last good config keeps serving:\n%s",
                folder,
                "\n".join(diag_line(d) for d in outcome["diagnostics"]),
            )

    async def _change(
        self, make_plan: Callable[[], Any], dry_run: bool, expected_version: int | None = None
    ) -> dict[str, Any]:
        """make_plan: a Plan against the current set (or an awaitable of one), called again when another
        replica wrote first: the change is then validated against the new head, or refused (409)."""
        for _attempt in range(CHANGE_ATTEMPTS):
            outcome = await self._change_once(make_plan, dry_run, expected_version)
            if outcome is not _REPLAN:
                return outcome
        message = "other replicas kept changing the config while this change was validated; retry"
        refused = Plan({}, {}, Change(), [Diagnostic(Location(), "", message, code=VERSION_CONFLICT)])
        current = self.store.version
        return {**self._outcome(refused, dry_run), "current_version": current, "expected_version": current}

    async def _change_once(
        self, make_plan: Callable[[], Any], dry_run: bool, expected_version: int | None = None
    ) -> Any:
        async with self._lock:
            if expected_version is not None and expected_version != self.store.version:
                return self._version_conflict(expected_version, dry_run)
            plan = make_plan()
            if inspect.isawaitable(plan):
                plan = await plan
            plan = await asyncio.to_thread(self.store.evaluate, plan)
            plan.earlier = list(self.store.result.diagnostics)  # before this change: not shown again
            if (plan.strict or self.settings.strict) and plan.result is not None:  # --strict, MECHA_STRICT=1
                plan.result.diagnostics[:] = promote_strict(plan.result.diagnostics, plan.earlier)
            if not self.settings.mtls and plan.result is not None and plan.result.config is not None:
                # no CA: what needs certificates is refused now rather than answering 503 later
                from xds.validate.no_ca import check_without_ca

                found, accepted = check_without_ca(plan.result.config, before=self._accepted_without_ca())
                plan.result.diagnostics += found
                plan.earlier += accepted
            if not plan.ok:
                if not dry_run:
                    metrics.config_refused.inc()
                    self.last_refused = {"at": time.time(), **self._outcome(plan, dry_run)}  # the dashboard
                return self._outcome(plan, dry_run)
            if dry_run:
                return self._outcome(plan, dry_run, proxies=self._dry_run_diff(plan))
            if plan.change.empty:
                return self._outcome(plan, dry_run)
            try:
                await self.store.commit(plan)  # durable before anyone is told it was accepted
            except StoreVersionConflict:
                # another replica wrote first (the database serialized us): catch up, then plan again
                await self._catch_up_locked()
                return _REPLAN
            except StoreError as exc:
                log.error("%s", exc)
                metrics.config_refused.inc()
                failed = Diagnostic(Location(), "", str(exc), code="store-error")
                outcome = self._outcome(plan, dry_run)
                return {**outcome, "accepted": False, "conflict": "store", "diagnostics": [failed.to_dict()]}
            self._changed_at = time.monotonic()
            metrics.config_accepted.inc()
            metrics.record_config_change(plan.change)
        self._debouncer.trigger(self.store.version)
        async with self._changed:
            self._changed.notify_all()
        return self._outcome(plan, dry_run)

    def _accepted_without_ca(self) -> list[Diagnostic]:
        """The no-CA findings of the accepted config: walked once per accepted config, not per change."""
        from xds.validate.no_ca import accepted_findings

        config = self.store.config
        if self._no_ca_accepted is None or self._no_ca_accepted[0] is not config:
            self._no_ca_accepted = (config, accepted_findings(config) if config is not None else [])
        return self._no_ca_accepted[1]

    # ---- replicas ----------------------------------------------------------------------------------------
    async def catch_up(self) -> bool:
        """Load the shared store's head when another replica moved it (NOTIFY, the periodic re-read)."""
        async with self._lock:
            return await self._catch_up_locked()

    async def _catch_up_locked(self) -> bool:
        before = self.store.version
        if not await self.store.refresh():
            return False
        log.info("config store: caught up from version %d to %d", before, self.store.version)
        self._changed_at = time.monotonic()
        self._debouncer.trigger(self.store.version)
        async with self._changed:
            self._changed.notify_all()
        return True

    def _fresh_catch_up(self) -> asyncio.Future[bool]:
        """A catch-up that starts after this call, shared by every caller until it starts: a fleet connecting
        at once reads the head a few times, not once per proxy behind the lock (1,000 reads in a row)."""
        if self._next_catch_up is None:
            before = self._running_catch_up

            async def run() -> bool:
                if before is not None:  # it may have read the head before our callers came
                    await asyncio.gather(before, return_exceptions=True)
                self._running_catch_up, self._next_catch_up = self._next_catch_up, None
                return await self.catch_up()

            self._next_catch_up = asyncio.ensure_future(run())
            # its error is logged by each waiting caller; none may be left waiting for it (they time out)
            self._next_catch_up.add_done_callback(lambda f: f.cancelled() or f.exception())
        return self._next_catch_up

    async def _catch_up_before_first_response(self) -> None:
        """The head now, or (store unreachable) the last config: a proxy is never kept waiting long."""
        try:
            # shielded: a caller that stops waiting does not cancel the read the others share
            await asyncio.wait_for(asyncio.shield(self._fresh_catch_up()), FIRST_RESPONSE_CATCH_UP_S)
        except (StoreError, OSError, TimeoutError) as exc:
            log.warning("serving %s the last config (version %d): %s", "a new proxy", self.store.version, exc)

    async def rollback(self, version: int, dry_run: bool = False) -> dict[str, Any]:
        """Re-apply the document set of an earlier version as a new version, validated like any change."""

        async def plan() -> Plan:
            try:
                return await self.store.plan_rollback(version)
            except StoreError as exc:
                diag = Diagnostic(Location(), "version", str(exc), code="unknown-version")
                return Plan({}, {}, Change(), [diag])

        outcome = await self._change(plan, dry_run)
        if any(d.get("code") == "unknown-version" for d in outcome["diagnostics"]):
            outcome["conflict"] = "not-found"
        return outcome

    async def history_view(self) -> dict[str, Any]:
        """Every stored version: who, when, what changed (document names only: no bodies, no secrets)."""
        versions = await self.store.history()
        return {
            "version": self.store.version,
            "versions": [
                {"version": v.version, "at": v.at, "source": v.source, "changes": v.change.to_dict()}
                for v in reversed(versions)
            ],
        }

    def _dry_run_diff(self, plan: Plan) -> dict[str, Any]:
        proxies = self._connected()
        if not proxies or plan.result is None:
            return {}
        proposed = self._new_builder().build(
            plan.result.config, proxies, changed_at=time.monotonic(), config_version="dry-run"
        )
        return diff_all(self._snapshots, proposed, with_content=True)  # `mecha diff` shows the content

    def _version_conflict(self, expected: int, dry_run: bool) -> dict[str, Any]:
        current = self.store.version
        message = (
            f"the config is at version {current}, not the expected {expected}: "
            "another change was accepted since; read the config again and retry"
        )
        refused = Plan({}, {}, Change(), [Diagnostic(Location(), "", message, code=VERSION_CONFLICT)])
        return {**self._outcome(refused, dry_run), "current_version": current, "expected_version": expected}

    def _outcome(self, plan: Plan, dry_run: bool, proxies: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accepted": plan.ok,
            "dry_run": dry_run,
            "version": self.store.version,
            "changes": plan.change.to_dict(),
        }
        own, out["earlier_warnings"] = own_diagnostics(plan.all_diagnostics(), plan.earlier)
        out["diagnostics"] = [d.to_dict() for d in own]
        result = plan.result
        if plan.ok and result is not None and getattr(result, "config", None) is not None:
            from xds.identity.peers import endpoint_accounts  # credentials of connected proxies

            _, mismatches = endpoint_accounts(result.config, self.server.proxies())
            out["diagnostics"] += [m.to_dict() for m in mismatches]
        if plan.conflict:  # refused because of who asked or when, not what: the API answers 409
            out["conflict"] = plan.conflict
        if proxies is not None:
            out["proxies"] = proxies
        return out

    # ---- views -------------------------------------------------------------------------------------------
    def config_view(self) -> dict[str, Any]:
        return {
            "version": self.store.version,
            "documents": [
                {**_doc_header(d), "source": self.store.owner(d.key), "body": d.body}
                for d in sorted(self.store.documents.values(), key=lambda d: d.key)
            ],
            "sources": self.source_status,
        }

    def dapr_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"version": self.store.version}
        for field, kind in DAPR_KINDS.items():
            view[field] = [d.body for d in self.store.docs_of_kind(kind)]
        return view

    async def wait_for_version_change(self, seen: int, within_s: float) -> None:
        """Return when the config version differs from `seen`, or after timeout (long-poll)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.store.version != seen), within_s)
            except TimeoutError:
                pass


CHANGE_ATTEMPTS = 3  # plans of one change when other replicas keep writing first
LOGGED_ERRORS_KEEP = 1024  # build errors remembered as logged (each distinct text is logged once while kept)
CREDENTIALS_CHECK_S = 10.0  # the leader compares the credential files with the stored version's
FIRST_RESPONSE_CATCH_UP_S = 2.0  # at most this long reading the head before a new proxy's first snapshot
HISTORY_KEEP = 1000  # versions kept for rollback; older ones are compacted by the leader
_REPLAN = object()  # _change_once: another replica wrote first, plan again
REPLICA_MIN_PING_INTERVAL_MS = 500


class RecentSet:
    """The last `keep` distinct texts seen: bounded, as build errors name documents that come and go."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, None] = OrderedDict()

    def add(self, text: str) -> bool:
        """True when text is new (not among the kept ones); it becomes the most recent either way."""
        if text in self._seen:
            self._seen.move_to_end(text)
            return False
        self._seen[text] = None
        if len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, text: object) -> bool:
        return text in self._seen


def replica_keepalive() -> tuple[tuple[str, int], ...]:
    """Replicas accept the faster keepalive of multi-replica bootstraps (xds/bootstrap.py REPLICA_KEEPALIVE: a
    ping a second), so a proxy leaves a frozen replica within seconds; faster pings still count as strikes."""
    from xds.server.services import KEEPALIVE_SERVER_OPTIONS

    minimum = "grpc.http2.min_ping_interval_without_data_ms"
    return tuple(
        (name, REPLICA_MIN_PING_INTERVAL_MS if name == minimum else value)
        for name, value in KEEPALIVE_SERVER_OPTIONS
    )


def _periodic_jobs(settings: Settings, backend: Any) -> Any:
    from xds.controlplane.jobs import AdvisoryLockElection, AlwaysLeader, PeriodicJobs

    shared = is_shared(settings.store)
    election = AdvisoryLockElection(backend, settings.replica_poll) if shared else AlwaysLeader()
    jobs = PeriodicJobs(election, interval=settings.replica_poll)
    compact = getattr(backend, "compact", None)
    if compact is not None:

        async def compact_history() -> None:
            dropped = await compact(HISTORY_KEEP)
            if dropped:
                log.info("config history: compacted %d versions", dropped)

        jobs.add("history-compaction", compact_history, every=3600.0)
    return jobs


def _certificates(settings: Settings) -> Any:
    if not settings.mtls:
        return None
    from datetime import timedelta

    from xds.ca import CertificateAuthority, WorkloadCertificates

    if settings.ca_dir is not None:  # the same root across restarts: proxies' certificates stay valid
        ca = CertificateAuthority.load_or_create(settings.ca_dir, settings.trust_domain)
    else:
        ca = CertificateAuthority(settings.trust_domain)
    where = f"root in {settings.ca_dir}" if settings.ca_dir is not None else "root in memory"
    log.info(
        "mTLS on: CA for trust domain %s (%s), certificate TTL %.0fs",
        ca.trust_domain,
        where,
        settings.cert_ttl,
    )
    return WorkloadCertificates(ca, ttl=timedelta(seconds=settings.cert_ttl))


def _doc_header(doc: RawDocument) -> dict[str, Any]:
    kind, namespace, name = doc.key
    return {
        "kind": kind,
        "apiVersion": doc.api_version,
        "namespace": namespace,
        "name": name,
        "file": doc.location.file,
        "document": doc.location.document,
    }
