"""Malformed HTTP (bad request line, header token, URL bytes) is the client's fault: one log line each.

aiohttp answers such requests 400 itself, before any handler runs, and logs "Error handling request" at
ERROR with the parser's traceback; a scanner or fuzzer then fills the log with tracebacks.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"
# the very line of the control plane's copy on the same logger (xds/controlplane/api.py OneLineHttpErrors)
MALFORMED_HTTP_LINE = "%s: malformed HTTP request answered %s: %s"


class MalformedHttpFilter(logging.Filter):
    """Rewrite parser errors to one WARNING line without the traceback; let every other record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = " ".join(str(exc.message).split()) or type(exc).__name__
            original = record.getMessage()
            record.msg, record.args = MALFORMED_HTTP_LINE, (original, exc.code, reason[:200])
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_http() -> None:
    """Install the filter once on aiohttp's server logger (build_app calls it for every app)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedHttpFilter) for f in logger.filters):
        logger.addFilter(MalformedHttpFilter())
