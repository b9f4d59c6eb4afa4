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
//! constraint decides; closing windows; opening) are in [`crate::replica`].

use crate::Result;
use crate::pglog::PgLog;
use crate::wal::Wal;

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
