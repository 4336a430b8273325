"""`mecha agent`: the per-workload key holder, SDS server and xDS proxy (istio-agent's role)."""

from xds.agent.agent import Agent, AgentConfig, run_agent

__all__ = ["Agent", "AgentConfig", "run_agent"]
