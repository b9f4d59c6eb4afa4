//! The decision log: an append-only file of framed records, written by one thread in groups
//! and synced to disk before anything it holds is acknowledged.
//!
//! Callers append encoded events to a shared buffer under the experiment's lock (so the log
//! order is exactly the order in which the policy saw the events), then wait until the writer
//! reports that their sequence number is durable. The writer takes the whole buffer at once,
//! writes it, syncs it (`fdatasync`), and publishes the new durable sequence: one sync covers
//! every request that arrived meanwhile (group commit). A write or sync that fails is never
//! acknowledged: the writer stops, every waiting caller gets the error, and the deployment
//! refuses decisions and feedback (and its report) until it is opened again from its log, so
//! nothing served is ahead of the disk.
//!
//! # Framing
//!
//! Each record is one line, `<seq> <xxh3> <len> <json>\n` (see [`crate::logfile`]). Why this
//! shape:
//! - **A checksum per record** so that damage is found where it is, not guessed from a JSON
//!   parse error: XXH3-64 seeded with the sequence number, so a record copied to the wrong
//!   place, or a changed number, fails too. XXH3 rather than CRC32C: it is already a workspace
//!   dependency, it hashes at memory speed without a CPU extension, and 64 bits make an
//!   undetected random corruption (2^-64) far rarer than CRC32C's 2^-32.
//! - **The sequence number in the header**, so a gap (a lost or a duplicated record) is
//!   found without trusting the JSON, and so later segments and snapshots can be indexed by
//!   sequence with a cheap header read.
//! - **The length**, so a record cut short says so ("120 of 230 bytes") instead of failing
//!   its checksum.
//! - **Still one text line per record**, rather than binary frames: the JSON stays readable
//!   with standard tools (`cut -d' ' -f4- events.jsonl | jq`), the records of the format
//!   before framing (plain JSON lines, which start with `{` where framed ones start with a
//!   digit) are told apart by their first byte, and the cost is a few bytes of header: the
//!   JSON encoding dominates both the size and the time.
//!
//! # What is dropped, what is refused
//!
//! Only a torn tail is dropped on start: an incomplete last record, or bad bytes after the
//! last valid record with no valid record after them (the end of a write a crash cut short,
//! which no caller was told was durable). Any other damage (a bad record with valid records
//! after it, a sequence gap) stops that deployment from starting with an error naming the
//! file, the offset and the commands to run (`keel deployment verify`, `keel deployment
//! repair --from-offset`), and no byte of the file is changed. One case looks like damage and
//! is not: after a power loss (not a killed process), a group written in one `write` may have
//! reached the disk out of order, leaving a hole of zeros before a valid record; that group
//! was not acknowledged either, and `repair --from-offset` at the hole recovers it by hand.
//!
//! # Migration
//!
//! Logs written before framing open as they are: their plain JSON lines are read as records
//! (checked only by parsing; their sequence numbers must increase) and new records are
//! appended framed after them. Rewriting the old part on first open was rejected: it would
//! bless with fresh checksums bytes that may already be damaged, need twice the disk space of
//! a large log, and put a whole-file rewrite on the start path of every upgraded deployment.
//! A plain line after a framed record is damage (there is no way back to the old writer).
//!
//! A writer holds an exclusive advisory lock (`flock`) on the deployment folder's
//! `writer.lock`, so two processes never append to one log and `repair` refuses a log a
//! server has open.
//!
//! # Segments and snapshots
//!
//! The active file (`events.jsonl`) is closed into `segments/<first seq>.jsonl` once it holds
//! [`LogOptions::segment_bytes`] (after a group is durable: the rename, the new file and both
//! folders are synced, so a crash anywhere in between reads the same log). Sequence numbers
//! run on across files, and reading checks they do. The state is snapshotted beside them
//! ([`crate::snapshot`]); a start restores the newest good snapshot and reads only the
//! segment holding the record after it and those that follow, so its cost is bounded by the
//! snapshot interval, not by the history. Closed segments that a snapshot covers and whose
//! windows have closed are archived to the lake ([`crate::archive`]) and read back from there.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::{DeploymentError, Result};

/// When the log is considered durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` after every group: survives power loss.
    Fsync,
    /// Written to the OS before acknowledging: survives a killed process, not power loss.
    Os,
}

/// Events buffered for the writer, with the sequence number of the last one.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) bytes: Vec<u8>,
    pub(crate) last_seq: u64,
}

/// The writer side of one log file.
pub struct Wal {
    pending: Arc<Mutex<Pending>>,
    durable: watch::Receiver<u64>,
    failed: Arc<Mutex<Option<String>>>,
    /// Set with `failed`, read on every append without a lock.
    has_failed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("path", &self.path).finish()
    }
}

/// How a deployment's log is kept: durability, segment size, snapshot cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    pub durability: Durability,
    /// The active file is closed into `segments/` once it holds this many bytes.
    pub segment_bytes: u64,
    /// A snapshot is taken once this many records follow the last one (or as many as there
    /// are decisions in open windows, if more: a snapshot writes them all)...
    pub snapshot_every_records: u64,
    /// ...or this long after it, if any record follows it.
    pub snapshot_every: std::time::Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Fsync,
            segment_bytes: 64 << 20,
            snapshot_every_records: 100_000,
            snapshot_every: std::time::Duration::from_secs(300),
        }
    }
}

impl From<Durability> for LogOptions {
    fn from(durability: Durability) -> Self {
        LogOptions {
            durability,
            ..LogOptions::default()
        }
    }
}

/// Where the writer is in the active file, to know when and how to close it into a segment.
struct Active {
    dir: PathBuf,
    len: u64,
    /// Sequence number of the file's first record (the segment's name once closed).
    first_seq: u64,
    segment_bytes: u64,
}

impl Wal {
    /// Opens a deployment's log (in `deployment_dir`) for appending to its active file after
    /// `good_len` bytes (anything after is cut off: only a torn tail ever is) and starts its
    /// writer thread. `last_seq` is the sequence number of the last record of the log,
    /// `active_first` that of the active file's first record, if it has any.
    pub fn open(
        deployment_dir: &Path,
        good_len: u64,
        last_seq: u64,
        active_first: Option<u64>,
        options: &LogOptions,
    ) -> Result<Wal> {
        let lock = crate::logfile::lock(deployment_dir)?;
        let path = crate::logfile::active_path(deployment_dir);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| DeploymentError::Log(format!("cannot open {}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| DeploymentError::Log(format!("cannot open {}: {e}", path.display())))?
            .len();
        if len < good_len {
            return Err(DeploymentError::Log(format!(
                "{} shrank while it was being opened ({len} bytes, {good_len} read); is another program writing it?",
                path.display()
            )));
        }
        if len > good_len {
            // Only a torn tail is ever cut here: damage is refused before a log is opened.
            tracing::warn!(path = %path.display(), offset = good_len, bytes = len - good_len, "cutting the torn tail of the decision log (never acknowledged)");
            file.set_len(good_len)
                .map_err(|e| DeploymentError::Log(format!("cannot prepare {}: {e}", path.display())))?;
        }
        file.seek(SeekFrom::Start(good_len))
            .map_err(|e| DeploymentError::Log(format!("cannot prepare {}: {e}", path.display())))?;
        let active = Active {
            dir: deployment_dir.to_path_buf(),
            len: good_len,
            first_seq: active_first.unwrap_or(last_seq + 1),
            segment_bytes: options.segment_bytes.max(1),
        };
        let pending = Arc::new(Mutex::new(Pending {
            bytes: Vec::new(),
            last_seq,
        }));
        let (tx, rx) = watch::channel(last_seq);
        let failed = Arc::new(Mutex::new(None));
        let has_failed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let durability = options.durability;
        let thread = {
            let (pending, stop) = (pending.clone(), stop.clone());
            let failure = (failed.clone(), has_failed.clone());
            let name = format!("keel-wal-{}", path.display());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    // The lock lives as long as the writer.
                    let _lock = lock;
                    writer(file, active, pending, tx, failure, stop, durability)
                })
                .map_err(|e| DeploymentError::Log(format!("cannot start the log writer: {e}")))?
        };
        Ok(Wal {
            pending,
            durable: rx,
            failed,
            has_failed,
            stop,
            thread: Mutex::new(Some(thread)),
            path,
        })
    }

    /// The buffer events go into; callers hold this lock only to append.
    pub(crate) fn pending(&self) -> &Mutex<Pending> {
        &self.pending
    }

    /// Wakes the writer after appending.
    pub(crate) fn notify(&self) {
        if let Ok(guard) = self.thread.lock()
            && let Some(t) = guard.as_ref()
        {
            t.thread().unpark();
        }
    }

    /// Waits until every event up to `seq` is durable.
    pub async fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut rx = self.durable.clone();
        loop {
            if *rx.borrow_and_update() >= seq {
                return Ok(());
            }
            if let Some(e) = self.failure() {
                return Err(DeploymentError::Log(e));
            }
            if rx.changed().await.is_err() {
                return Err(DeploymentError::Log("the log writer stopped".into()));
            }
        }
    }

    /// Why the writer stopped, if a write or a sync failed.
    pub fn failure(&self) -> Option<String> {
        if !self.has_failed.load(Ordering::Acquire) {
            return None;
        }
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Sequence number known durable.
    pub fn durable_seq(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Flushes what is buffered and stops the writer.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.thread.lock().ok().and_then(|mut g| g.take());
        if let Some(h) = handle {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer(
    mut file: File,
    mut active: Active,
    pending: Arc<Mutex<Pending>>,
    durable: watch::Sender<u64>,
    (failed, has_failed): (Arc<Mutex<Option<String>>>, Arc<AtomicBool>),
    stop: Arc<AtomicBool>,
    durability: Durability,
) {
    let mut batch = Vec::new();
    loop {
        let last = {
            let Ok(mut p) = pending.lock() else { return };
            std::mem::swap(&mut batch, &mut p.bytes);
            p.last_seq
        };
        if batch.is_empty() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::park_timeout(std::time::Duration::from_millis(5));
            continue;
        }
        let result = file.write_all(&batch).and_then(|_| match durability {
            Durability::Fsync => faults::sync(&active.dir).and_then(|()| file.sync_data()),
            Durability::Os => Ok(()),
        });
        active.len += batch.len() as u64;
        batch.clear();
        let result = result.and_then(|()| {
            durable.send_replace(last);
            if active.len < active.segment_bytes {
                return Ok(());
            }
            // Durable and acknowledged already: closing the file into a segment only moves
            // it, and a failure here stops the writer like a failed write.
            file.sync_all()?;
            file = roll(&active, active.first_seq)?;
            active.len = 0;
            active.first_seq = last + 1;
            Ok(())
        });
        if let Err(e) = result {
            let done = *durable.borrow();
            tracing::error!(error = %e, durable_seq = done, "decision log write failed; decisions and feedback are refused until restart");
            if let Ok(mut f) = failed.lock() {
                *f = Some(format!(
                    "{e}; nothing after record {done} was acknowledged; \
                     fix the disk (free space, permissions) and restart keel or apply the deployment again"
                ));
            }
            has_failed.store(true, Ordering::Release);
            // Wake every waiter, so it sees the failure (`done` was read in its own
            // statement: a borrow alive here would deadlock the send).
            durable.send_replace(done);
            return;
        }
    }
}

/// Closes the active file into `segments/<first_seq>.jsonl` and opens a new, empty active
/// file. Every step is synced (the folders too), so after a crash at any point the log reads
/// the same: the records are either still in the active file or already in the segment.
fn roll(active: &Active, first_seq: u64) -> std::io::Result<File> {
    let segments = crate::logfile::segments_dir(&active.dir);
    std::fs::create_dir_all(&segments)?;
    let from = crate::logfile::active_path(&active.dir);
    let to = crate::logfile::segment_path(&active.dir, first_seq);
    if to.exists() {
        return Err(std::io::Error::other(format!(
            "cannot close the log into {}: that segment exists already",
            to.display()
        )));
    }
    std::fs::rename(&from, &to)?;
    File::open(&segments)?.sync_all()?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&from)?;
    File::open(&active.dir)?.sync_all()?;
    tracing::debug!(segment = %to.display(), "decision log segment closed");
    Ok(file)
}

/// Faults a test can inject into a log writer, for what cannot be provoked from outside on
/// an ordinary machine (an `fsync` that fails: the disk reported an I/O error after the
/// write was accepted). One relaxed atomic load per group commit when nothing is armed.
#[doc(hidden)]
pub mod faults {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    static ARMED: AtomicBool = AtomicBool::new(false);
    static SYNC_FAILS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

    /// The next `fsync` of the log in `deployment_dir` fails with EIO.
    pub fn fail_next_sync(deployment_dir: &Path) {
        if let Ok(mut set) = SYNC_FAILS.lock() {
            set.get_or_insert_with(HashSet::new)
                .insert(deployment_dir.to_path_buf());
            ARMED.store(true, Ordering::Release);
        }
    }

    pub(crate) fn sync(deployment_dir: &Path) -> std::io::Result<()> {
        if !ARMED.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fired = SYNC_FAILS
            .lock()
            .ok()
            .and_then(|mut set| set.as_mut().map(|s| s.remove(deployment_dir)))
            .unwrap_or(false);
        if fired {
            return Err(std::io::Error::other(
                "fsync failed: Input/output error (os error 5, injected)",
            ));
        }
        Ok(())
    }
}
