//! Where a deployment's decision log lives: the seam between the engine and its two backends.
//!
//! - [`Log::File`] ([`crate::wal`]): the embedded default (SQLite store). One process owns the
//!   deployment's folder; each event is applied to the state when it is appended, and the
//!   caller waits until the writer has synced it.
//! - [`Log::Pg`] ([`crate::pglog`]): a PostgreSQL store. Every `keel serve` on the store serves
//!   the deployment; an event is staged, committed by the replica's writer in a batch (one
//!   transaction per batch) which gives it its place in the deployment's global order, and
//!   applied to the state in that order, with every other replica's events, before the caller
//!   is answered.
//!
//! The engine calls the same five operations on either ([`Log::failure`], [`Log::notify`],
//! [`Log::wait_durable`], [`Log::durable_seq`], [`Log::close`]) and [`crate::state::Inner::commit`]
//! appends to either; the paths whose answers differ (feedback, whose idempotency a PostgreSQL
//! constraint decides; closing windows; opening) are in `replica.rs`.

use crate::error::lock_err;
use crate::event::Event;
use crate::notice::Notice;
use crate::pglog::PgLog;
use crate::state::Inner;
use crate::wal::Wal;
use crate::{DeploymentError, Result};

/// A deployment's decision log, on one backend.
pub(crate) enum Log {
    File(Wal),
    Pg(PgLog),
}

impl Log {
    /// Why the log stopped taking events, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        match self {
            Log::File(wal) => wal.failure(),
            Log::Pg(pg) => pg.failure(),
        }
    }

    /// Wakes the writer after appending.
    pub(crate) fn notify(&self) {
        match self {
            Log::File(wal) => wal.notify(),
            Log::Pg(pg) => pg.notify(),
        }
    }

    /// Waits until what [`crate::state::Inner::commit`] returned is durable (the file log: a
    /// sequence number synced; PostgreSQL: a staged event committed and applied in order).
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<()> {
        match self {
            Log::File(wal) => wal.wait_durable(seq).await,
            Log::Pg(pg) => pg.wait_applied(seq).await,
        }
    }

    /// The sequence number of the last record durable and applied.
    pub(crate) fn durable_seq(&self) -> u64 {
        match self {
            Log::File(wal) => wal.durable_seq(),
            Log::Pg(pg) => pg.applied_seq(),
        }
    }

    /// Flushes and stops the writer.
    pub(crate) fn close(&self) {
        match self {
            Log::File(wal) => wal.close(),
            Log::Pg(pg) => pg.close(),
        }
    }

    /// The PostgreSQL log, when that is the backend.
    pub(crate) fn pg(&self) -> Option<&PgLog> {
        match self {
            Log::Pg(pg) => Some(pg),
            Log::File(_) => None,
        }
    }
}

/// Appending to the log, and the guardrail events that follow a reward on the file log.
impl Inner {
    /// Appends an event to the file log's buffer (framed: see [`crate::logfile`]), or stages
    /// it for the PostgreSQL writer. Refused once the log writer has failed, so nothing is
    /// applied that cannot be written.
    fn push(&mut self, log: &Log, event: &Event) -> Result<u64> {
        if let Some(failure) = log.failure() {
            return Err(DeploymentError::Log(failure));
        }
        match log {
            Log::File(wal) => {
                let json =
                    serde_json::to_vec(event).map_err(|e| DeploymentError::Log(format!("encoding event: {e}")))?;
                let mut pending = wal.pending().lock().map_err(|_| lock_err())?;
                crate::framing::frame(&mut pending.bytes, event.seq(), &json);
                pending.last_seq = event.seq();
                Ok(event.seq())
            }
            Log::Pg(pg) => pg.stage(event.clone()),
        }
    }

    /// Appends an event to the log. On the file log it is applied now; on PostgreSQL it is
    /// staged, and applied by the writer at its place in the global order (the number returned
    /// is then a ticket to wait on, and the state's sequence number is left as it was). If
    /// anything fails, the event's sequence number is given back, so the log never has a gap.
    pub(crate) fn commit(&mut self, log: &Log, event: &Event) -> Result<u64> {
        if let Some(failure) = log.failure() {
            self.seq = event.seq() - 1;
            return Err(DeploymentError::Log(failure));
        }
        if let Log::Pg(_) = log {
            self.seq = event.seq() - 1;
            return self.push(log, event);
        }
        let result = self.apply(event).and_then(|_| self.push(log, event));
        if result.is_err() {
            self.seq = event.seq() - 1;
        }
        result
    }

    /// Guardrails and canary progression after a reward: emits pause / step events.
    pub(crate) fn check_guardrails(&mut self, log: &Log, variant: usize, now: i64) -> Result<()> {
        let found = self.guardrail_move(variant, now);
        self.log_move(log, found, variant)
    }

    /// The guardrail metrics after values of them for `variant`: a pause when one is breached.
    pub(crate) fn check_metric_guardrails(&mut self, log: &Log, variant: usize, now: i64) -> Result<()> {
        let found = self.metric_guardrail_move(variant, now);
        self.log_move(log, found, variant)
    }

    /// Logs and applies a pause or a canary step, and keeps its notice.
    fn log_move(&mut self, log: &Log, found: Option<(Event, Notice)>, variant: usize) -> Result<()> {
        let Some((mut event, notice)) = found else {
            return Ok(());
        };
        event.set_seq(self.next_seq());
        self.commit(log, &event)?;
        if let Event::CanaryStep { .. } = event {
            self.counters.reset_step(variant);
        }
        self.notices.push(notice);
        Ok(())
    }
}
