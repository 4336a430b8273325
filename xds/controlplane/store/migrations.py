"""Versioned schemas of the PostgreSQL store: POSTGRES_MIGRATIONS[n - 1] takes a schema from n - 1 to n.

Append a migration (never edit a released one) and bump nothing else: SCHEMA_VERSION follows the list. A
control plane refuses a schema newer than its own, and an older one until `mecha store migrate` ran.
`{schema}` is replaced by the store's schema name (checked to be a plain identifier).
"""

from __future__ import annotations

APPLICATION = "mecha-config-store"

_V1 = """
CREATE SCHEMA IF NOT EXISTS "{schema}";
CREATE TABLE "{schema}".schema_info (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    application text NOT NULL,
    version     integer NOT NULL
);
INSERT INTO "{schema}".schema_info (application, version) VALUES ('mecha-config-store', 0);
CREATE TABLE "{schema}".head (                 -- one row: the current version; writers lock it
    id      integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO "{schema}".head (version) VALUES (0);
CREATE TABLE "{schema}".versions (
    version bigint PRIMARY KEY,                -- 1, 2, 3...: one row per accepted change
    at      double precision NOT NULL,         -- unix seconds
    source  text NOT NULL,                     -- api | folder:<path> | rollback:<version>
    changes text NOT NULL                      -- JSON {"added": [[kind, ns, name]], "modified", "removed"}
);
CREATE TABLE "{schema}".documents (
    kind        text NOT NULL,
    namespace   text NOT NULL,
    name        text NOT NULL,
    owner       text NOT NULL,                 -- api | folder:<path>: the only source allowed to change it
    api_version text NOT NULL,
    body        text NOT NULL,                 -- the document as JSON (text: key order kept)
    yaml        text NOT NULL,
    file        text NOT NULL,
    document    integer NOT NULL,
    version     bigint NOT NULL,               -- the version that last wrote it
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE "{schema}".document_history (     -- every write of a document; owner NULL: removed
    kind        text NOT NULL,
    namespace   text NOT NULL,
    name        text NOT NULL,
    version     bigint NOT NULL,
    owner       text,
    api_version text NOT NULL,
    body        text NOT NULL,
    yaml        text NOT NULL,
    file        text NOT NULL,
    document    integer NOT NULL,
    PRIMARY KEY (kind, namespace, name, version)
);
CREATE INDEX ON "{schema}".document_history (version);
"""

_V2 = """
CREATE TABLE "{schema}".replicas (             -- heartbeat and xDS streams of every running replica
    id           text PRIMARY KEY,
    address      text NOT NULL,
    heartbeat_at double precision NOT NULL,
    version      bigint NOT NULL,
    proxies      text NOT NULL                 -- JSON: proxy status rows of the streams it holds
);
"""

_V3 = """
CREATE TABLE "{schema}".revocations (          -- workload credentials revoked on any replica
    kind   text NOT NULL CHECK (kind IN ('id', 'proxy')),
    key    text NOT NULL,                      -- a credential id (jti) or a proxy id
    cutoff double precision NOT NULL DEFAULT 0, -- proxy: credentials issued at or before this are revoked
    PRIMARY KEY (kind, key)
);
"""

# inputs resolved with a version (JWKS, credential certificates: xds/inputs.py), once per distinct content
_V4 = """
ALTER TABLE "{schema}".versions ADD COLUMN inputs text NOT NULL DEFAULT '';  -- resolved_inputs.hash, '' none
CREATE TABLE "{schema}".resolved_inputs (
    hash text PRIMARY KEY,                     -- SHA-256 of body
    body text NOT NULL                         -- JSON: JWKS texts, credential certificates (never a key)
);
"""

POSTGRES_MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)

# The embedded SQLite store's schema 3 (its migrations live in sqlite.py; this one is shared in shape)
SQLITE_INPUTS = """
ALTER TABLE versions ADD COLUMN inputs TEXT NOT NULL DEFAULT '';
CREATE TABLE resolved_inputs (hash TEXT PRIMARY KEY, body TEXT NOT NULL);
"""
SCHEMA_VERSION = len(POSTGRES_MIGRATIONS)
