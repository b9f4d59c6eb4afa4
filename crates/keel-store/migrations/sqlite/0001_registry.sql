-- Model registry metadata (SQLite). Timestamps are milliseconds since the Unix
-- epoch (UTC); JSON documents are stored as TEXT. Keep in step with
-- ../postgres/0001_registry.sql: same tables, same columns, same constraints.

-- One row per model. Pushes upsert it, alias writes touch it: the row is the
-- per-model lock that serialises version assignment and alias moves.
CREATE TABLE models (
    name       TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE model_versions (
    model         TEXT   NOT NULL REFERENCES models (name),
    version       BIGINT NOT NULL,
    content_hash  TEXT   NOT NULL,
    artifact_key  TEXT   NOT NULL,
    size_bytes    BIGINT NOT NULL,
    format        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    author        TEXT   NOT NULL,
    description   TEXT,
    metrics       TEXT   NOT NULL DEFAULT '{}',
    training_data TEXT,
    signature     TEXT   NOT NULL DEFAULT 'null',
    CONSTRAINT model_versions_pkey PRIMARY KEY (model, version),
    CONSTRAINT model_versions_content_hash_key UNIQUE (model, content_hash)
);

CREATE TABLE aliases (
    model      TEXT   NOT NULL,
    alias      TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT   NOT NULL,
    CONSTRAINT aliases_pkey PRIMARY KEY (model, alias),
    CONSTRAINT aliases_version_fkey FOREIGN KEY (model, version)
        REFERENCES model_versions (model, version)
);

-- Append-only: rows outlive the alias they describe.
CREATE TABLE alias_events (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    model        TEXT    NOT NULL REFERENCES models (name),
    alias        TEXT    NOT NULL,
    from_version BIGINT,
    to_version   BIGINT,
    occurred_at  BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    reason       TEXT
);

CREATE INDEX alias_events_model_alias_idx
    ON alias_events (model, alias, occurred_at, id);

-- Append-only change log: every change, who made it, and what it touched.
CREATE TABLE change_events (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    occurred_at BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX change_events_subject_idx ON change_events (subject);
CREATE INDEX change_events_occurred_at_idx ON change_events (occurred_at, id);
