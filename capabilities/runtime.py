"""The capability service runtime: settings, loaded components, resiliency, app channel, config reloads."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

from capabilities import registry
from capabilities.appchannel import AppChannel
from capabilities.config.documents import ConfigError, RawComponent, ResourceSet, load_folder
from capabilities.config.sandbox import FileSandbox
from capabilities.config.secrets import resolve_component
from capabilities.config.settings import Settings
from capabilities.daprspec.component import ComponentSpec
from capabilities.errors import DaprError
from capabilities.resiliency import Resiliency
from capabilities.shared_components import SharedComponents
from capabilities.tracing import TRACING

if TYPE_CHECKING:  # the contracts each block's API calls through (light, but not needed to run)
    from capabilities.blocks.bindings.contract import Binding
    from capabilities.blocks.component import Component
    from capabilities.blocks.configuration.contract import ConfigurationStore
    from capabilities.blocks.lock.contract import LockStore
    from capabilities.blocks.pubsub.contract import PubSub
    from capabilities.blocks.secretstores.contract import SecretStore
    from capabilities.blocks.sequencer.contract import SequencerStore
    from capabilities.blocks.state.contract import Store
    from capabilities.delivery.grpc.app import GrpcAppDelivery

__all__ = ["RUNTIME_VERSION", "Runtime", "Settings"]

log = logging.getLogger(__name__)

RUNTIME_VERSION = "1.14.4-mecha.0.1.0"


@dataclass(frozen=True)
class _BlockErrors:
    not_found_code: str
    not_found_msg: str
    not_found_status: int
    not_configured_code: str
    not_configured_msg: str
    # daprd answers 500 for some blocks (state, secrets); no store of the block is a caller's configuration
    # problem, not a server fault, so every block answers 400 (gRPC FAILED_PRECONDITION) here.
    not_configured_status: int = 400


# Dapr's codes/messages for an unknown or missing store, per building block (dapr pkg/messages).
BLOCK_ERRORS: dict[str, _BlockErrors] = {
    "state": _BlockErrors(
        "ERR_STATE_STORE_NOT_FOUND", "state store {} is not found", 400,
        "ERR_STATE_STORE_NOT_CONFIGURED", "state store is not configured",
    ),
    "pubsub": _BlockErrors(
        "ERR_PUBSUB_NOT_FOUND", "pubsub {} not found", 404,
        "ERR_PUBSUB_NOT_CONFIGURED", "no pubsub is configured", 400,
    ),
    "bindings": _BlockErrors(
        "ERR_BINDING_NOT_FOUND", "couldn't find output binding {}", 404,
        "ERR_BINDING_NOT_FOUND", "no bindings are configured", 404,
    ),
    "secretstores": _BlockErrors(
        "ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key {}", 401,
        "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured",
    ),
    "configuration": _BlockErrors(
        "ERR_CONFIGURATION_STORE_NOT_FOUND", "configuration store {} not found", 400,
        "ERR_CONFIGURATION_STORE_NOT_CONFIGURED", "configuration stores not configured",
    ),
    "lock": _BlockErrors(
        "ERR_LOCK_STORE_NOT_FOUND", "lock store {} not found", 400,
        "ERR_LOCK_STORE_NOT_CONFIGURED", "lock store is not configured",
    ),
    "sequencer": _BlockErrors(
        "ERR_SEQUENCER_STORE_NOT_FOUND", "sequencer store {} not found", 400,
        "ERR_SEQUENCER_STORE_NOT_CONFIGURED", "sequencer store is not configured",
    ),
}  # fmt: skip


# Building-block calls made before the first component set is loaded (daprd does not serve them yet).
NOT_READY_CODE = "ERR_NOT_READY"
NOT_READY_RETRY_AFTER_S = 1


async def _new_instance(spec: ComponentSpec) -> Component:
    instance = registry.create(spec)
    try:
        await asyncio.wait_for(instance.init(), spec.init_timeout_s)
    except TimeoutError:
        raise TimeoutError(f"init did not finish within spec.initTimeout {spec.init_timeout_s:g}s") from None
    return instance


@dataclass
class _Loaded:
    raw: RawComponent
    spec: ComponentSpec
    instance: Component


class Runtime:
    def __init__(self, settings: Settings | None = None, *, shared: SharedComponents | None = None) -> None:
        """shared: the process's component pool when it hosts several apps (node mode)."""
        self.settings = settings or Settings.from_env()
        self.shared = shared
        self.resiliency = Resiliency()
        self.file_sandbox = FileSandbox.build(
            self.settings.state_dirs or [], self.settings.allowed_file_roots
        )
        self.app_channel = AppChannel(self.settings.app_url, app_api_token=self.settings.app_api_token)
        self.subscriptions_docs: list[dict[str, Any]] = []
        self.configurations_docs: list[dict[str, Any]] = []
        # Programmatic subscriptions (GET /dapr/subscribe) in metadata-API form, filled by the messaging side.
        self.programmatic_subscriptions: list[dict[str, Any]] = []
        self.extended_metadata: dict[str, str] = {"daprRuntimeVersion": RUNTIME_VERSION}
        self.init_errors: dict[str, str] = {}  # component name -> why it is not serving
        # every component that failed, ignoreErrors or not: name -> (type, why); /v1.0/metadata shows them
        self.component_failures: dict[str, tuple[str, str]] = {}
        self.components_ready = asyncio.Event()
        # API servers healthz/outbound waits for besides components; serve() clears it until gRPC listens.
        self.servers_ready = asyncio.Event()
        self.servers_ready.set()
        self.shutdown_requested = asyncio.Event()
        self._loaded: dict[str, _Loaded] = {}
        self._local = ResourceSet()
        self._callbacks: list[Callable[..., Any]] = []
        self._apply_lock = asyncio.Lock()
        self._watcher: Any = None
        # APP_PROTOCOL=grpc: what delivers messages and binding events to the app (capabilities.delivery.grpc)
        self.grpc_app_delivery: GrpcAppDelivery | None = None

    @property
    def app_id(self) -> str:
        return self.settings.app_id

    # ---- components -------------------------------------------------------------------------------------
    @property
    def component_specs(self) -> list[ComponentSpec]:
        return [loaded.spec for loaded in self._loaded.values()]

    # components(block) / component(block, name): the block's contract Protocol for a known block name.
    @overload
    def components(self, block: Literal["state"]) -> dict[str, Store]: ...
    @overload
    def components(self, block: Literal["pubsub"]) -> dict[str, PubSub]: ...
    @overload
    def components(self, block: Literal["bindings"]) -> dict[str, Binding]: ...
    @overload
    def components(self, block: Literal["secretstores"]) -> dict[str, SecretStore]: ...
    @overload
    def components(self, block: Literal["configuration"]) -> dict[str, ConfigurationStore]: ...
    @overload
    def components(self, block: Literal["lock"]) -> dict[str, LockStore]: ...
    @overload
    def components(self, block: Literal["sequencer"]) -> dict[str, SequencerStore]: ...
    @overload
    def components(self, block: str) -> dict[str, Component]: ...
    def components(self, block: str) -> dict[str, Any]:
        return {name: item.instance for name, item in self._loaded.items() if item.spec.block == block}

    def component_spec(self, name: str) -> ComponentSpec | None:
        loaded = self._loaded.get(name)
        return loaded.spec if loaded else None

    @overload
    def component(self, block: Literal["state"], name: str) -> Store: ...
    @overload
    def component(self, block: Literal["pubsub"], name: str) -> PubSub: ...
    @overload
    def component(self, block: Literal["bindings"], name: str) -> Binding: ...
    @overload
    def component(self, block: Literal["secretstores"], name: str) -> SecretStore: ...
    @overload
    def component(self, block: Literal["configuration"], name: str) -> ConfigurationStore: ...
    @overload
    def component(self, block: Literal["lock"], name: str) -> LockStore: ...
    @overload
    def component(self, block: Literal["sequencer"], name: str) -> SequencerStore: ...
    @overload
    def component(self, block: str, name: str) -> Component: ...
    def component(self, block: str, name: str) -> Any:
        """The loaded component `name` of `block` (what the registry built for its spec.type, which
        implements the block's contract); else the Dapr error for an unknown/missing/unready store."""
        loaded = self._loaded.get(name)
        if loaded is not None and loaded.spec.block == block:
            return loaded.instance
        errors = BLOCK_ERRORS.get(block) or _BlockErrors(
            f"ERR_{block.upper()}_NOT_FOUND", f"{block} component {{}} not found", 400,
            f"ERR_{block.upper()}_NOT_CONFIGURED", f"{block} is not configured",
        )  # fmt: skip
        if name in self.init_errors:
            raise DaprError(
                errors.not_found_code, f"{errors.not_found_msg.format(name)}: {self.init_errors[name]}", 500
            )
        if not name:
            raise DaprError(
                "ERR_MALFORMED_REQUEST", f"{block} component name is empty", 400, "INVALID_ARGUMENT"
            )
        if not self.components_ready.is_set():
            # Not "not configured" (clients take that as permanent): the first component set is on its way.
            raise DaprError(
                NOT_READY_CODE,
                f"{block} component {name!r} is not available yet: components are still loading"
                f"{self._loading_detail()}; retry later",
                503, "UNAVAILABLE", retry_after_s=NOT_READY_RETRY_AFTER_S,
            )  # fmt: skip
        if not self.components(block):
            raise DaprError(
                errors.not_configured_code, errors.not_configured_msg, errors.not_configured_status,
                "FAILED_PRECONDITION",
            )  # fmt: skip
        raise DaprError(
            errors.not_found_code,
            errors.not_found_msg.format(name),
            errors.not_found_status,
            "INVALID_ARGUMENT",
        )

    def _loading_detail(self) -> str:
        """Why loading has not finished, when known (the control plane is not answering)."""
        error = getattr(self._watcher, "last_error", None)
        return f" (control plane: {error})" if error else ""

    def on_config_change(self, callback: Callable[..., Any]) -> None:
        """Call `callback()` or `callback(runtime)` (sync or async) after components/subscriptions change."""
        self._callbacks.append(callback)

    # ---- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the resources folder(s), init components, start the control-plane watch and the app probe."""
        self.app_channel.start_probe()
        local = ResourceSet()
        for path in self.settings.resources_paths:
            local.extend(load_folder(path, self.app_id))
        self._local = local
        await self.apply_resources(ResourceSet(), mark_ready=not self.settings.control_plane)
        if self.settings.control_plane:
            from capabilities.config.controlplane import ControlPlaneWatcher

            self._watcher = ControlPlaneWatcher(
                self.settings.control_plane, self.app_id, self.apply_resources
            )
            self._watcher.start()

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        for name in list(self._loaded):
            await self._close(self._loaded.pop(name))
        await self.app_channel.close()

    def request_shutdown(self) -> None:
        self.shutdown_requested.set()

    @property
    def healthy(self) -> bool:
        """Components ready and none failed (except those with ignoreErrors)."""
        return self.components_ready.is_set() and self.servers_ready.is_set() and not self.init_errors

    # ---- (re)configuration ------------------------------------------------------------------------------
    async def apply_resources(self, pushed: ResourceSet, *, mark_ready: bool = True) -> None:
        """Make the live components match local folder + `pushed`; unchanged components are kept."""
        async with self._apply_lock:
            merged = ResourceSet()
            merged.extend(self._local)
            merged.extend(pushed)
            wanted: dict[str, RawComponent] = {}
            for raw in merged.components:
                if raw.scopes and self.app_id not in raw.scopes:
                    continue
                if raw.name in wanted:
                    raise ConfigError(
                        f"{raw.source}: Component {raw.name!r} is also defined in {wanted[raw.name].source}"
                    )
                wanted[raw.name] = raw
            self.resiliency = Resiliency(merged.resiliencies)
            for name in [n for n in self._loaded if n not in wanted]:
                await self._close(self._loaded.pop(name))
            for name in [n for n in self.init_errors if n not in wanted]:
                del self.init_errors[name]
            for name in [n for n in self.component_failures if n not in wanted]:
                del self.component_failures[name]
            # Secret stores first: other components' secretKeyRefs are resolved through them.
            for raw in sorted(wanted.values(), key=lambda c: c.block != "secretstores"):
                current = self._loaded.get(raw.name)
                if current is not None and current.raw.fingerprint == raw.fingerprint:
                    continue
                await self._load(raw, current)
            self.subscriptions_docs = merged.subscriptions
            self.configurations_docs = merged.configurations
            TRACING.configure(merged.configurations, self.app_id or "daprd")  # spec.tracing
            if mark_ready:
                self.components_ready.set()
        await self._notify()

    async def _load(self, raw: RawComponent, current: _Loaded | None) -> None:
        try:
            spec = await resolve_component(raw, self.components("secretstores"), self.app_id)
            self.file_sandbox.check_component(spec)  # before init: refused paths are never opened
            if self.shared is not None:
                instance = await self.shared.acquire(spec, _new_instance)
            else:
                instance = await _new_instance(spec)
        except Exception as exc:
            reason = exc.message if isinstance(exc, DaprError) else (str(exc) or type(exc).__name__)
            message = f"{raw.source}: component {raw.name} ({raw.type}/{raw.version}): init failed: {reason}"
            self.component_failures[raw.name] = (raw.type, message)
            if raw.ignore_errors:
                log.warning("%s (ignored: spec.ignoreErrors)", message)
            else:
                log.error("%s", message)
                self.init_errors[raw.name] = message
            return
        self.init_errors.pop(raw.name, None)
        self.component_failures.pop(raw.name, None)
        self._loaded[raw.name] = _Loaded(raw, spec, instance)
        log.info("component loaded: %s (%s/%s)", spec.name, spec.type, spec.version)
        if current is not None:
            await self._close(current)

    async def _close(self, loaded: _Loaded) -> None:
        async def close(instance: Component) -> None:
            try:
                await instance.close()
            except Exception as exc:
                log.warning("component %s: close failed: %s", loaded.spec.name, exc)

        if self.shared is not None:
            await self.shared.release(loaded.instance, close)
        else:
            await close(loaded.instance)

    async def _notify(self) -> None:
        for callback in list(self._callbacks):
            try:
                takes_arg = bool(inspect.signature(callback).parameters)
                result = callback(self) if takes_arg else callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("config change callback %r failed", callback)
