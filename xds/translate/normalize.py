"""Request path normalization on every HttpConnectionManager (istiod's meshConfig.pathNormalization).

Envoy normalizes the path before routing and before RBAC sees it, and forwards the normalized path, so an
AuthorizationPolicy on `/admin` also holds for `/./admin`, `/public/../admin` or `/%61dmin`. The four choices
and the fields they set are istiod's (pilot/pkg/networking/core/listener.go): escaped slashes are always
kept unchanged unless DECODE_AND_MERGE_SLASHES decodes them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager import v3 as hcm


class PathNormalization(StrEnum):
    NONE = "NONE"  # forwarded as received (istiod warns: vulnerable to path confusion)
    BASE = "BASE"  # RFC 3986 (dot segments, unreserved %XX decoded) + backslash to slash: istiod's default
    MERGE_SLASHES = "MERGE_SLASHES"  # BASE, then `//` -> `/`
    DECODE_AND_MERGE_SLASHES = "DECODE_AND_MERGE_SLASHES"  # also %2F and %5C decoded to / and \, then merged


DEFAULT_PATH_NORMALIZATION = PathNormalization.BASE
_ESCAPED = hcm.HttpConnectionManagerPathWithEscapedSlashesAction


def parse_path_normalization(raw: str) -> PathNormalization:
    """A setting's value (case-insensitive; istiod's DEFAULT means BASE); ValueError names the choices."""
    value = raw.strip().upper() or DEFAULT_PATH_NORMALIZATION.value
    if value == "DEFAULT":
        return DEFAULT_PATH_NORMALIZATION
    try:
        return PathNormalization(value)
    except ValueError:
        choices = ", ".join(p.value for p in PathNormalization)
        raise ValueError(f"path normalization {raw!r}: expected one of {choices}") from None


def normalization_fields(choice: PathNormalization) -> dict[str, Any]:
    """HttpConnectionManager keyword arguments for one choice (normalize_path is a BoolValue: always set)."""
    fields: dict[str, Any] = {
        "normalize_path": choice is not PathNormalization.NONE,
        "path_with_escaped_slashes_action": _ESCAPED.KEEP_UNCHANGED,
    }
    if choice in (PathNormalization.MERGE_SLASHES, PathNormalization.DECODE_AND_MERGE_SLASHES):
        fields["merge_slashes"] = True
    if choice is PathNormalization.DECODE_AND_MERGE_SLASHES:
        fields["path_with_escaped_slashes_action"] = _ESCAPED.UNESCAPE_AND_FORWARD
    return fields
