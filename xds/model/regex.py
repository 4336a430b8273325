"""Regexes are checked as Envoy checks them, before a push: a pattern Envoy refuses would make every proxy
that receives it NACK the whole resource (and keep serving stale config) instead of one clear error here.

Envoy compiles `safe_regex` with Google RE2 and refuses a program larger than
`re2.max_program_size.error_level` (default 100, source/common/common/regex.cc); the same library
(google-re2) gives the same syntax errors and program size.
"""

from __future__ import annotations

from functools import lru_cache

import re2

ENVOY_MAX_PROGRAM_SIZE = 100  # runtime re2.max_program_size.error_level default

_QUIET = re2.Options()
_QUIET.log_errors = False  # RE2 would print every refused pattern on stderr


@lru_cache(maxsize=4096)
def regex_problem(pattern: str) -> str | None:
    """Why Envoy would refuse this regex (RE2 syntax, or program size over its limit), or None."""
    try:
        compiled = re2.compile(pattern, options=_QUIET)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        return f"{pattern!r:.80} is not an RE2 regex Envoy accepts: {reason}"
    size = compiled.programsize
    if size > ENVOY_MAX_PROGRAM_SIZE:
        return (
            f"{pattern!r:.80}: RE2 program size {size} is over Envoy's limit of {ENVOY_MAX_PROGRAM_SIZE} "
            "(re2.max_program_size.error_level); simplify it (fewer or smaller repetitions)"
        )
    return None


# ---- the regexes AuthorizationPolicy peer values become (istiod pilot/pkg/security/authz/matcher) --------
# One definition for the translation (xds/translate/security/rbac.py) and the check before a push
# (xds/model/security_checks.py), so the check validates exactly the regex Envoy is sent.


def principal_regex(value: str) -> str | None:
    """istiod StringMatcherWithPrefix(value, "spiffe://"): `*suffix` (not `*` alone) becomes a regex;
    None when the matcher is no regex (`*`: any, `prefix*`: a prefix, else exact)."""
    return f"spiffe://.*{value[1:]}" if value != "*" and value.startswith("*") else None


def namespace_regex(value: str) -> str:
    """istiod's principal matcher for a `namespaces` value (`*` inside it: any characters)."""
    return f".*/ns/{value.replace('*', '.*')}/.*"
