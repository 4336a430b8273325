"""One place that hides secrets in what the control plane shows (API answers, dry-run output, logs).

Two rules, applied to any JSON-like value:
- by name: a Dapr Component `spec.metadata` entry whose name looks secret (password, token, secret, *key,
  connectionString, ...) keeps its name but its `value` becomes "<redacted>" (a `secretKeyRef` shows where
  the value comes from and is kept); so does any mapping entry whose key looks secret and holds a string
  (e.g. node metadata `dapr_api_token`);
- by value: every known secret string (tokens from node metadata, component credential values) is replaced
  wherever it appears, e.g. inside an Envoy header matcher of a config dump, or a diagnostic message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"
MIN_SECRET_LEN = 4  # shorter values ("", "1", "on") would blank out unrelated text

# Names of secret fields, case-insensitive, `_`/`-` ignored: Dapr component metadata (redisPassword,
# connectionString, accountKey, masterKey, accessKey, secretKey, saslPassword, token, ...) and node metadata.
_SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|credential|connectionstring|apikey|privatekey|sas|"
    r"(access|account|master|secret|shared|signing|encryption|client|api|private)key|"
    r"authorization|cookie)",
    re.IGNORECASE,
)
# ...unless the name only points at or describes one (credentialName, secretKeyRef, tokenHeader)
_NOT_SECRET = re.compile(r"(name|ref|file|path|header|headers|uri|url|dir|type|ttl|version|prefix)$", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@\s:]*:)(?P<password>[^/@\s]+)(?=@)", re.I)


def secret_name(name: str) -> bool:
    flat = name.replace("_", "").replace("-", "")
    return bool(_SECRET_NAME.search(flat)) and not _NOT_SECRET.search(flat)


def _component_metadata(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    out = []
    for entry in entries:
        if isinstance(entry, dict) and secret_name(str(entry.get("name", ""))) and "value" in entry:
            entry = {**entry, "value": REDACTED}
        out.append(entry)
    return out


def secret_values(value: Any) -> set[str]:
    """The secret strings held in value by the name rules (to redact them anywhere else too)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("kind") == "Component" and isinstance(node.get("spec"), dict):
                for entry in node["spec"].get("metadata") or []:
                    if isinstance(entry, dict) and secret_name(str(entry.get("name", ""))):
                        if isinstance(entry.get("value"), str):
                            found.add(entry["value"])
            for key, item in node.items():
                if isinstance(item, str) and secret_name(str(key)):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return {s for s in found if len(s) >= MIN_SECRET_LEN and s != REDACTED}


class Redactor:
    """Holds the known secret values (updated as config and proxies change) and redacts with both rules."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self.update(known)

    def update(self, known: Iterable[str]) -> None:
        values = sorted({k for k in known if len(k) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)

    def value(self, node: Any) -> Any:
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[Any, Any] = {}
        is_component = node.get("kind") == "Component"
        for key, item in node.items():
            if isinstance(item, str) and secret_name(str(key)):
                out[key] = REDACTED
            elif is_component and key == "spec" and isinstance(item, dict):
                out[key] = self.value({**item, "metadata": _component_metadata(item.get("metadata"))})
            else:
                out[key] = self.value(item)
        return out


class RedactingFilter(logging.Filter):
    """Log records leave with known secret values replaced (message and arguments rendered first)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redactor.text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
