"""Graph validation: a networkx reference graph plus semantic checks -> Diagnostics."""

from xds.validate.checks import is_catch_all, is_catch_all_match, validate
from xds.validate.graph import build_graph

__all__ = ["build_graph", "is_catch_all", "is_catch_all_match", "validate"]
