//! The decision log: an append-only file of JSON lines, written by one thread in groups and
//! synced to disk before anything it holds is acknowledged.
//!
//! Callers append encoded events to a shared buffer under the experiment's lock (so the log
//! order is exactly the order in which the policy saw the events), then wait until the writer
//! reports that their sequence number is durable. The writer takes the whole buffer at once,
//! writes it, syncs it (`fdatasync`), and publishes the new durable sequence: one sync covers
//! every request that arrived meanwhile (group commit). A line cut short by a crash was never
//! acknowledged; [`read_events`] stops before it and [`open_for_append`] truncates it away.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
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
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("path", &self.path).finish()
    }
}

/// Reads every complete event line of a log (a trailing partial line is ignored), returning
/// them with the byte length of the good prefix.
pub fn read_events(path: &Path) -> Result<(Vec<serde_json::Value>, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(DeploymentError::Log(format!("cannot read {}: {e}", path.display()))),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut events = Vec::new();
    let mut good = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| DeploymentError::Log(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(v) => events.push(v),
            Err(e) => {
                // Only the unsynced tail may be garbage; a bad line in the middle is corruption.
                tracing::warn!(path = %path.display(), offset = good, error = %e, "decision log ends in a damaged line; it was never acknowledged and is dropped");
                break;
            }
        }
        good += n as u64;
    }
    Ok((events, good))
}

impl Wal {
    /// Opens a log for appending after `good_len` bytes (anything after is cut off) and starts
    /// its writer thread. `last_seq` is the sequence number of the last event already in it.
    pub fn open(path: &Path, good_len: u64, last_seq: u64, durability: Durability) -> Result<Wal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DeploymentError::Log(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| DeploymentError::Log(format!("cannot open {}: {e}", path.display())))?;
        file.set_len(good_len)
            .and_then(|_| file.seek(SeekFrom::Start(good_len)).map(|_| ()))
            .map_err(|e| DeploymentError::Log(format!("cannot prepare {}: {e}", path.display())))?;
        let pending = Arc::new(Mutex::new(Pending {
            bytes: Vec::new(),
            last_seq,
        }));
        let (tx, rx) = watch::channel(last_seq);
        let failed = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pending, failed, stop) = (pending.clone(), failed.clone(), stop.clone());
            let name = format!("keel-wal-{}", path.display());
            std::thread::Builder::new()
                .name(name)
                .spawn(move || writer(file, pending, tx, failed, stop, durability))
                .map_err(|e| DeploymentError::Log(format!("cannot start the log writer: {e}")))?
        };
        Ok(Wal {
            pending,
            durable: rx,
            failed,
            stop,
            thread: Mutex::new(Some(thread)),
            path: path.to_path_buf(),
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
            if let Ok(f) = self.failed.lock()
                && let Some(e) = f.as_ref()
            {
                return Err(DeploymentError::Log(e.clone()));
            }
            if rx.changed().await.is_err() {
                return Err(DeploymentError::Log("the log writer stopped".into()));
            }
        }
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
    pending: Arc<Mutex<Pending>>,
    durable: watch::Sender<u64>,
    failed: Arc<Mutex<Option<String>>>,
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
            Durability::Fsync => file.sync_data(),
            Durability::Os => Ok(()),
        });
        batch.clear();
        match result {
            Ok(()) => {
                durable.send_replace(last);
            }
            Err(e) => {
                tracing::error!(error = %e, "decision log write failed; decisions and feedback are refused until restart");
                if let Ok(mut f) = failed.lock() {
                    *f = Some(format!("write failed: {e}"));
                }
                durable.send_replace(durable.borrow().to_owned());
                return;
            }
        }
    }
}
