-- Schedules: a keel command that `keel serve` runs on a cron expression, and its runs.
-- Keep in step with the other backend's 0005_schedules.sql.

CREATE TABLE schedules (
    name        TEXT    NOT NULL PRIMARY KEY,
    cron        TEXT    NOT NULL,
    -- The command's arguments after `keel`, as a JSON array of strings.
    args        TEXT    NOT NULL,
    -- Where failures are announced (a webhook URL), if anywhere.
    notify      TEXT,
    paused      BOOLEAN NOT NULL,
    -- The next firing (ms since epoch) the runners wait for.
    next_at     BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    created_by  TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- One row per firing: its primary key is the lease, so exactly one runner takes each firing.
CREATE TABLE schedule_runs (
    schedule      TEXT    NOT NULL,
    scheduled_for BIGINT  NOT NULL,
    -- succeeded, failed, running, missed, retrying
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    runner        TEXT    NOT NULL,
    trigger_kind  TEXT    NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    -- The runner renews this while it works; a run whose lease lapsed is taken over.
    lease_until   BIGINT  NOT NULL,
    next_attempt_at BIGINT,
    rows_written  BIGINT,
    error         TEXT,
    CONSTRAINT schedule_runs_pkey PRIMARY KEY (schedule, scheduled_for)
);
CREATE INDEX schedule_runs_due ON schedule_runs (status, next_attempt_at);
