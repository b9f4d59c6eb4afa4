-- Approvals (a policy naming changes that need a second person, and the changes waiting for
-- one) and webhooks (subscriptions, and a durable outbox of deliveries with every attempt).
-- Keep in step with the other backend's 0007_approvals_webhooks.sql.

-- Named policies as JSON (today only 'approvals'), applied from a changes-as-code folder.
CREATE TABLE policies (
    name        TEXT    NOT NULL PRIMARY KEY,
    body        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL
);

-- A change held for approval: what exactly (proposal, JSON), its readable diff, the state of
-- its target when requested (base, to refuse stale approvals) and who decided it.
CREATE TABLE pending_changes (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    proposal      TEXT    NOT NULL,
    diff          TEXT    NOT NULL,
    base          TEXT    NOT NULL,
    -- The policy rule that holds it (e.g. 'aliases: production').
    rule          TEXT    NOT NULL,
    -- pending, approving (an approver is applying it), approved, rejected
    status        TEXT    NOT NULL,
    requested_by  TEXT    NOT NULL,
    requested_at  BIGINT  NOT NULL,
    -- rest, cli, apply, console
    source        TEXT    NOT NULL,
    git_commit    TEXT,
    decided_by    TEXT,
    decided_at    BIGINT,
    -- Why it was rejected, or why the last approval failed to apply.
    note          TEXT
);
CREATE INDEX pending_changes_status ON pending_changes (status, id);

-- Webhook subscriptions. The signing secret is never stored: only the name of the server's
-- environment variable that holds it.
CREATE TABLE webhooks (
    id          BIGSERIAL PRIMARY KEY,
    url         TEXT    NOT NULL,
    -- JSON array of event names ('*' for all).
    events      TEXT    NOT NULL,
    secret_env  TEXT,
    created_at  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL
);

-- One row per (event, webhook): the outbox the server's deliverer drains.
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    webhook_id       BIGINT  NOT NULL,
    event            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    -- pending, delivering, delivered, failed (for good), cancelled (webhook removed)
    status           TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL,
    next_attempt_at  BIGINT  NOT NULL,
    lease_until      BIGINT,
    created_at       BIGINT  NOT NULL,
    finished_at      BIGINT,
    last_status_code BIGINT,
    last_error       TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    delivery_id  BIGINT  NOT NULL,
    attempt      BIGINT  NOT NULL,
    at           BIGINT  NOT NULL,
    status_code  BIGINT,
    error        TEXT,
    duration_ms  BIGINT  NOT NULL,
    CONSTRAINT webhook_attempts_pkey PRIMARY KEY (delivery_id, attempt)
);
