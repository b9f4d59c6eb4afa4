//! The pipelining the batch jobs share (decide, feedback ingest): the next chunk is read and
//! prepared while up to [`DEPTH`] earlier chunks are applied to the deployment; their results
//! come back in the order the chunks were started.

use std::future::Future;

use futures::StreamExt;
use futures::stream::FuturesOrdered;

/// Chunks a job applies at once: one being applied while the next waits its turn keeps the
/// deployment busy, and memory holds at most this many chunks' rows beside the one being read.
pub(crate) const DEPTH: usize = 2;

/// The chunks a job has started and not yet collected, oldest first.
pub(crate) struct InFlight<F: Future> {
    chunks: FuturesOrdered<F>,
}

impl<F: Future> InFlight<F> {
    pub(crate) fn new() -> Self {
        InFlight {
            chunks: FuturesOrdered::new(),
        }
    }

    /// Makes room for one more chunk: when [`DEPTH`] are in flight, waits for the oldest and
    /// returns its result (to collect before starting the next).
    pub(crate) async fn room(&mut self) -> Option<F::Output> {
        if self.chunks.len() >= DEPTH {
            self.chunks.next().await
        } else {
            None
        }
    }

    /// Starts `chunk` after those in flight.
    pub(crate) fn push(&mut self, chunk: F) {
        self.chunks.push_back(chunk);
    }

    /// The oldest chunk's result once it is done; none when nothing is in flight.
    pub(crate) async fn next(&mut self) -> Option<F::Output> {
        self.chunks.next().await
    }
}
