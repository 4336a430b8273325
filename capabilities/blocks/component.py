"""What every component does, whatever its block (components-contrib's per-block interfaces all start so).

Each block's contract.py has its own Protocol (state Store, PubSub, Binding, SecretStore, ConfigurationStore,
LockStore, SequencerStore); Runtime.component(block, name) returns that Protocol for a known block name and
this one for any other, so a state save can be followed from the API to the backend's `set`.
"""

from __future__ import annotations

from typing import Protocol


class Component(Protocol):
    async def init(self) -> None:
        """Connect / prepare; the runtime awaits it (within spec.initTimeout) before serving the component."""
        ...

    async def close(self) -> None:
        """Release connections and end the component's tasks (a reload or the runtime stopping)."""
        ...

    def features(self) -> set[str]:
        """The optional capabilities it declares (the block's Feature values)."""
        ...
