//! What a running job shares with whoever started it: rows done so far (a progress bar, a
//! job's status) and a cancel flag checked between chunks; and the tally of refused rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Progress and cancellation of one job; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Control {
    rows: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// Input rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Sets the rows done so far (the job does; a caller wrapping another job may too).
    pub fn set_rows(&self, rows: u64) {
        self.rows.store(rows, Ordering::Relaxed);
    }

    /// Asks the job to stop after the chunk it is working on; what it committed stays.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Examples kept per reason.
const EXAMPLES: usize = 5;

/// Refused rows by code: how many, and the first few with their message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Refusals(BTreeMap<String, Refusal>);

/// Rows refused for one reason.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Refusal {
    pub rows: u64,
    pub examples: Vec<Example>,
}

/// One refused row: what identifies it (a unit, a decision id, a row number) and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub row: String,
    pub error: String,
}

impl Refusals {
    pub(crate) fn add(&mut self, code: &str, row: &str, error: &str) {
        let entry = self.0.entry(code.to_owned()).or_default();
        entry.rows += 1;
        if entry.examples.len() < EXAMPLES {
            entry.examples.push(Example {
                row: row.to_owned(),
                error: error.to_owned(),
            });
        }
    }

    /// Every reason, by code.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Refusal)> {
        self.0.iter().map(|(code, r)| (code.as_str(), r))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Rows refused for `code`.
    pub fn count(&self, code: &str) -> u64 {
        self.0.get(code).map_or(0, |r| r.rows)
    }
}
