"""Input and output binding contracts (components-contrib bindings/{input,output}_binding.go, in Python).

An output binding executes operations (`create`, `get`, `exec`...) and lists the ones it supports; an input
binding calls a handler per event: the handler returns the app's reply bytes, or raises when the app did
not take the event (the binding retries or, for brokers, leaves the message un-acked).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Feature(StrEnum):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


@dataclass(frozen=True)
class InvokeRequest:
    operation: str
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InvokeResponse:
    data: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = ""


InputHandler = Callable[[bytes, dict[str, str]], Awaitable[bytes | None]]
StopReading = Callable[[], Awaitable[None]]


class Binding(Protocol):
    async def init(self) -> None: ...

    async def close(self) -> None: ...

    def features(self) -> set[str]: ...


@runtime_checkable
class OutputBinding(Protocol):
    def operations(self) -> list[str]: ...

    async def invoke(self, request: InvokeRequest) -> InvokeResponse: ...


@runtime_checkable
class InputBinding(Protocol):
    async def read(self, handler: InputHandler) -> StopReading:
        """Start delivering events to handler; the returned callable stops reading."""


class BindingBackendError(Exception):
    """A backend failure (server down, bad response...); mapped to ERR_INVOKE_OUTPUT_BINDING."""


class UnsupportedOperation(BindingBackendError):
    pass


class BindingRequestError(BindingBackendError):
    """The request itself is wrong (missing metadata, path outside rootPath...): a 400."""
