"""`mecha agent`: the per-proxy agent holding the proxy's credential and key (xds/agent/agent.py).

Names load lazily: importing xds.agent.config or xds.agent.launch must not pull in gRPC and cryptography,
which the agent itself needs (it needs no generated Envoy protos: tests/xds/agent/test_agent_imports.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xds.agent.agent import Agent, run_agent
    from xds.agent.config import AgentConfig

__all__ = ["Agent", "AgentConfig", "run_agent"]


def __getattr__(name: str) -> Any:
    if name == "AgentConfig":
        from xds.agent.config import AgentConfig

        return AgentConfig
    if name in ("Agent", "run_agent"):
        from xds.agent import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'xds.agent' has no attribute {name!r}")
