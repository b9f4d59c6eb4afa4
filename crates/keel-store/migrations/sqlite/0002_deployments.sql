-- Deployments (SQLite): named endpoints with variants and a traffic policy. Every change is a
-- new immutable revision. Keep in step with ../postgres/0002_deployments.sql.

-- One row per deployment: the lock row that serialises revisions.
CREATE TABLE deployments (
    name       TEXT   NOT NULL PRIMARY KEY,
    revision   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE deployment_revisions (
    name       TEXT   NOT NULL REFERENCES deployments (name),
    revision   BIGINT NOT NULL,
    spec       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    reason     TEXT,
    CONSTRAINT deployment_revisions_pkey PRIMARY KEY (name, revision)
);
