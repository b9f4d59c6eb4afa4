-- Catalog and access (sqlite): lake tables with owners, descriptions, tags, column notes and PII
-- flags, schema history and lineage; principals, teams, per-table grants, API tokens and the
-- audit log. Keep in step with ../postgres/0003_catalog_access.sql.

-- Who may act. Workspace admins may do anything; the first principal to act becomes one.
CREATE TABLE principals (
    name       TEXT    NOT NULL PRIMARY KEY,
    is_admin   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL,
    created_by TEXT    NOT NULL
);

CREATE TABLE teams (
    name        TEXT   NOT NULL PRIMARY KEY,
    description TEXT,
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL
);

-- role: 'member' or 'admin' (a team admin manages the team's members and tables).
CREATE TABLE team_members (
    team      TEXT   NOT NULL REFERENCES teams (name),
    principal TEXT   NOT NULL REFERENCES principals (name),
    role      TEXT   NOT NULL,
    added_at  BIGINT NOT NULL,
    added_by  TEXT   NOT NULL,
    CONSTRAINT team_members_pkey PRIMARY KEY (team, principal)
);

-- API tokens: only the sha256 of the secret is kept.
CREATE TABLE api_tokens (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    principal  TEXT   NOT NULL REFERENCES principals (name),
    label      TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE lake_tables (
    name        TEXT   NOT NULL PRIMARY KEY,
    owner_team  TEXT   NOT NULL REFERENCES teams (name),
    description TEXT,
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE table_tags (
    table_name TEXT NOT NULL REFERENCES lake_tables (name),
    tag        TEXT NOT NULL,
    CONSTRAINT table_tags_pkey PRIMARY KEY (table_name, tag)
);
CREATE INDEX table_tags_tag_idx ON table_tags (tag);

-- pii_source: 'detected' or 'manual'; a manual flag (or unflag) is never overwritten by detection.
CREATE TABLE table_columns (
    table_name  TEXT   NOT NULL REFERENCES lake_tables (name),
    column_name TEXT   NOT NULL,
    data_type   TEXT   NOT NULL,
    description TEXT,
    pii         BOOLEAN NOT NULL DEFAULT FALSE,
    pii_kind    TEXT,
    pii_source  TEXT,
    CONSTRAINT table_columns_pkey PRIMARY KEY (table_name, column_name)
);

-- One row per table version whose schema differs from the previous one.
CREATE TABLE table_schemas (
    table_name  TEXT   NOT NULL REFERENCES lake_tables (name),
    version     BIGINT NOT NULL,
    schema      TEXT   NOT NULL,
    recorded_at BIGINT NOT NULL,
    CONSTRAINT table_schemas_pkey PRIMARY KEY (table_name, version)
);

-- permission: 'read', 'write' or 'admin'; one grant per (table, team).
CREATE TABLE table_grants (
    table_name TEXT   NOT NULL REFERENCES lake_tables (name),
    team       TEXT   NOT NULL REFERENCES teams (name),
    permission TEXT   NOT NULL,
    granted_at BIGINT NOT NULL,
    granted_by TEXT   NOT NULL,
    CONSTRAINT table_grants_pkey PRIMARY KEY (table_name, team)
);

-- Lineage edges between nodes named 'table/<name>[@v<version>]', 'model/<name>/<version>',
-- 'deployment/<name>' and 'decisions/<deployment>'.
CREATE TABLE lineage_edges (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    source     TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    relation   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    CONSTRAINT lineage_edges_unique UNIQUE (source, target, relation)
);
CREATE INDEX lineage_edges_target_idx ON lineage_edges (target);

-- Every read and write of a table, allowed or denied, and every access change.
CREATE TABLE audit_events (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    occurred_at BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    allowed     BOOLEAN NOT NULL DEFAULT FALSE,
    via         TEXT   NOT NULL,
    details     TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_resource_idx ON audit_events (resource, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
