"""Config sources: YAML files, folders and text -> RawDocuments (+ diagnostics for malformed input)."""

from xds.sources.kinds import KIND_TABLE, KindInfo, classify
from xds.sources.loader import RawDocument, load_paths, load_text

__all__ = ["KIND_TABLE", "KindInfo", "RawDocument", "classify", "load_paths", "load_text"]
