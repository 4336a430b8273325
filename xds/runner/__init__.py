"""`mecha up` without a container engine: supervise the control plane, demo apps and Envoys locally."""

from xds.runner.stack import Stack, StackError, StackOptions

__all__ = ["Stack", "StackError", "StackOptions"]
