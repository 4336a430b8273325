"""The runner's errors: `mecha up` and `mecha run` print each message as it is, one per failure."""

from __future__ import annotations


class StackError(RuntimeError):
    """Something could not start; the message names the component and points at its log."""


class ProxyRefused(StackError):
    """An Envoy NACKed the config it was sent: the message is Envoy's, on one line."""
