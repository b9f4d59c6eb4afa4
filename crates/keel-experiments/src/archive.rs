//! Archiving a file log's closed segments to the lake, so a deployment's folder holds what a
//! restart and the open attribution windows need, not its whole history.
//!
//! A closed segment is archived once (1) the oldest snapshot kept covers its last record, so
//! no start needs it, and (2) its newest record is older than the attribution window, so none
//! of its decisions can still be rewarded. Its records go to the lake table `decision_log`
//! (partitioned by `deployment`; one row per record: `seq`, `ts_ms`, `kind`, `decision_id` and
//! the record's JSON exactly as logged), in one commit, made durable before anything local
//! changes (files synced on a local lake; an object store's put is durable when it returns).
//! Then the deployment's manifest `archive.json` (written atomically: temporary file, sync,
//! rename, folder sync) records the segment's range, record count and checksum (XXH3-64 of its
//! records framed as the log frames them), and only then is the local file removed. A crash
//! between the commit and the manifest leaves rows the next pass finds (it counts the range
//! in the table first and appends only when it holds none); rows that disagree with the
//! segment stop archiving loudly, and nothing local is removed.
//!
//! Reading: every reader of a log goes through [`crate::logfile::read_log`], which reads the
//! archived part of the range it is asked for back from the lake (checking each segment's
//! count and checksum against the manifest) before the local files, so offline OPE, the
//! console's timeline, segments and the re-run of a batch see the whole history. The lake is
//! found through [`register`]: the process that opens a lake (`keel serve`, a `keel` command)
//! registers it for its deployments folder. A log with archived records and no lake to read
//! them from is an error saying so, never a silently shorter history.
//!
//! Why a table of records and not the `decisions`/`feedback` tables the prediction log
//! writes: those are a bounded writer's copy (it drops rows, counted, when the lake falls
//! behind) without the distributions, contexts and specs OPE and replays need; the archive
//! must be the log itself.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::event::Event;
use crate::files::atomic_write;
use crate::framing::frame;
use crate::{DeploymentError, Result};

/// The lake table archived records go to.
pub const TABLE: &str = "decision_log";
pub(crate) const MANIFEST: &str = "archive.json";
/// Records read back from the lake per query.
const READ_CHUNK: u64 = 100_000;

/// A future an [`ArchiveStore`] returns.
pub type ArchiveFuture<'a, T> = Pin<Box<dyn Future<Output = std::result::Result<T, String>> + Send + 'a>>;

/// One archived record, as a row of [`TABLE`].
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveRow {
    pub seq: u64,
    pub ts_ms: i64,
    pub kind: &'static str,
    pub decision_id: Option<String>,
    /// The record's JSON, exactly as logged.
    pub record: String,
}

/// Where archived records live (the lake's [`TABLE`]).
pub trait ArchiveStore: Send + Sync {
    /// Appends the rows of one segment of `deployment` in one commit, durable when it
    /// returns; the table's new version.
    fn append<'a>(&'a self, deployment: &'a str, rows: Vec<ArchiveRow>) -> ArchiveFuture<'a, u64>;
    /// How many rows of `deployment` have a sequence number in `first..=last`.
    fn count<'a>(&'a self, deployment: &'a str, first: u64, last: u64) -> ArchiveFuture<'a, u64>;
    /// The (sequence number, record JSON) rows of `deployment` in `first..=last`, in order.
    fn read<'a>(&'a self, deployment: &'a str, first: u64, last: u64) -> ArchiveFuture<'a, Vec<(u64, String)>>;
}

/// One archived segment, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archived {
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    /// XXH3-64 of the segment's records framed as the log frames them, in hex.
    pub xxh3: String,
    /// The version of [`TABLE`] that holds them (none: found there by a later pass).
    pub lake_version: Option<u64>,
    /// The newest record's time, and when it was archived (milliseconds since the epoch).
    pub newest_ts_ms: i64,
    pub archived_at_ms: i64,
}

/// A deployment's archived segments (`archive.json` in its folder), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub table: String,
    pub segments: Vec<Archived>,
}

impl Manifest {
    /// The manifest of the deployment folder `dir` (none yet: empty). An unreadable one is an
    /// error: which records live in the lake would be unknown.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(DeploymentError::Log(format!("cannot read {}: {e}", path.display()))),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            DeploymentError::Log(format!(
                "{} is unreadable ({e}): it says which records of the log were archived to the lake table {TABLE}; \
                 restore it from a backup (nothing was changed)",
                path.display()
            ))
        })
    }

    /// The last archived sequence number (0: nothing archived).
    pub fn through(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.last_seq)
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| DeploymentError::Log(format!("encoding the archive manifest: {e}")))?;
        atomic_write(&dir.join(MANIFEST), &bytes)
    }
}

/// Archive stores by the deployments folder they serve.
type Registry = Vec<(PathBuf, Arc<dyn ArchiveStore>)>;
static STORES: Mutex<Registry> = Mutex::new(Vec::new());

fn key(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Makes `store` the archive of the deployments whose folders are under `deployments_dir`
/// (replacing an earlier one): where their logs' closed segments go, and where reading them
/// finds what was archived.
pub fn register(deployments_dir: &Path, store: Arc<dyn ArchiveStore>) {
    let dir = key(deployments_dir);
    if let Ok(mut stores) = STORES.lock() {
        stores.retain(|(d, _)| *d != dir);
        stores.push((dir, store));
    }
}

/// The archive registered for the deployments folder `deployments_dir`.
pub(crate) fn registered(deployments_dir: &Path) -> Option<Arc<dyn ArchiveStore>> {
    let dir = key(deployments_dir);
    let stores = STORES.lock().ok()?;
    stores.iter().find(|(d, _)| *d == dir).map(|(_, s)| s.clone())
}

/// The archive registered for the deployment folder `deployment_dir`.
pub(crate) fn store_for(deployment_dir: &Path) -> Option<Arc<dyn ArchiveStore>> {
    registered(deployment_dir.parent()?)
}

/// Runs `fut` to its end on a thread of its own (a current-thread runtime), so synchronous
/// readers of a log, on any thread, can read the lake.
fn block_on<T: Send>(fut: impl Future<Output = Result<T>> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| DeploymentError::Log(format!("cannot start a runtime to read the lake: {e}")))?
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|_| Err(DeploymentError::Log("reading the lake stopped".into())))
    })
}

/// The checksum of records as the log frames them.
pub(crate) fn checksum(records: impl Iterator<Item = (u64, impl AsRef<[u8]>)>) -> String {
    let mut framed = Vec::new();
    for (seq, json) in records {
        frame(&mut framed, seq, json.as_ref());
    }
    format!("{:016x}", xxh3_64(&framed))
}

/// The records of one archived segment of deployment `name`, read back from `store` and
/// checked against what `manifest` (where the segment is recorded, for errors) says of it:
/// their number, their sequence numbers and their checksum.
pub(crate) async fn read_segment(
    store: &dyn ArchiveStore,
    name: &str,
    seg: &Archived,
    manifest: &str,
) -> Result<Vec<(u64, String)>> {
    let mut rows: Vec<(u64, String)> = Vec::with_capacity(seg.records as usize);
    let mut from = seg.first_seq;
    while from <= seg.last_seq {
        let through = seg.last_seq.min(from + READ_CHUNK - 1);
        let chunk = store
            .read(name, from, through)
            .await
            .map_err(|e| DeploymentError::Log(format!("reading archived records of '{name}' from the lake: {e}")))?;
        rows.extend(chunk);
        from = through + 1;
    }
    let bad = |why: String| {
        DeploymentError::Log(format!(
            "the archived records {}..={} of deployment '{name}' in the lake table {TABLE} do not match {manifest}: {why}; \
             nothing was changed (restore the table from a backup)",
            seg.first_seq, seg.last_seq,
        ))
    };
    if rows.len() as u64 != seg.records {
        return Err(bad(format!("{} rows, the manifest says {}", rows.len(), seg.records)));
    }
    if let Some((i, (seq, _))) = rows
        .iter()
        .enumerate()
        .find(|(i, (seq, _))| *seq != seg.first_seq + *i as u64)
    {
        return Err(bad(format!("row {i} has seq {seq}")));
    }
    if checksum(rows.iter().map(|(s, r)| (*s, r.as_bytes()))) != seg.xxh3 {
        return Err(bad("checksum mismatch".into()));
    }
    Ok(rows)
}

/// The event of an archived record (checked by [`read_segment`] already).
pub(crate) fn event_of(name: &str, seq: u64, record: &str) -> Result<Event> {
    serde_json::from_str(record).map_err(|e| {
        DeploymentError::Log(format!(
            "the archived record {seq} of deployment '{name}' in the lake table {TABLE} is unreadable: {e}"
        ))
    })
}

/// Passes the archived records of the deployment folder `dir` after `after` (through the
/// manifest's end) to `each`, read back from the lake and checked against the manifest; how
/// many were passed. Called by [`crate::logfile::read_log`].
pub(crate) fn read_archived(
    dir: &Path,
    manifest: &Manifest,
    after: u64,
    each: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<u64> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let path = dir.join(MANIFEST);
    let store = store_or_err(dir, &name, after + 1, manifest.through(), &path.display().to_string())?;
    let mut passed = 0;
    for seg in manifest.segments.iter().filter(|s| s.last_seq > after) {
        let rows = block_on(read_segment(store.as_ref(), &name, seg, &path.display().to_string()))?;
        for (seq, record) in rows {
            if seq <= after {
                continue;
            }
            each(event_of(&name, seq, &record)?)?;
            passed += 1;
        }
    }
    Ok(passed)
}

/// The archive registered for `dir`, or the error saying records `first..=last` of `name`
/// (archived, as `manifest` records) cannot be read without it.
pub(crate) fn store_or_err(
    dir: &Path,
    name: &str,
    first: u64,
    last: u64,
    manifest: &str,
) -> Result<Arc<dyn ArchiveStore>> {
    store_for(dir).ok_or_else(|| {
        DeploymentError::Log(format!(
            "records {first}..={last} of the decision log of deployment '{name}' were archived to the lake table {TABLE} ({manifest}); \
             this process has no lake to read them from: run it with the lake keel serve uses (--lake, or the home's lake folder)"
        ))
    })
}

/// What one archiving pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArchiveDone {
    /// Segments archived (and removed locally) by this pass.
    pub segments: u64,
    pub records: u64,
    /// The last archived sequence number after the pass (0: none).
    pub through_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(Manifest::read(dir.path()).expect("none").through(), 0);
        let m = Manifest {
            table: TABLE.into(),
            segments: vec![Archived {
                first_seq: 1,
                last_seq: 40,
                records: 40,
                xxh3: "00".into(),
                lake_version: Some(3),
                newest_ts_ms: 5,
                archived_at_ms: 9,
            }],
        };
        m.write(dir.path()).expect("write");
        assert_eq!(Manifest::read(dir.path()).expect("read"), m);
        assert_eq!(m.through(), 40);
        std::fs::write(dir.path().join(MANIFEST), b"{\"tab").expect("damage");
        let err = Manifest::read(dir.path()).expect_err("damaged").to_string();
        assert!(err.contains("archive.json is unreadable"), "{err}");
    }

    #[test]
    fn the_checksum_is_the_framed_records_hash() {
        let a = checksum([(1u64, b"{\"t\":1}".as_slice()), (2, b"{\"t\":2}".as_slice())].into_iter());
        let b = checksum([(1u64, b"{\"t\":1}".as_slice()), (2, b"{\"t\":3}".as_slice())].into_iter());
        let c = checksum([(1u64, b"{\"t\":1}".as_slice()), (3, b"{\"t\":2}".as_slice())].into_iter());
        assert_ne!(a, b);
        assert_ne!(a, c, "the sequence numbers are part of what is checked");
        assert_eq!(a.len(), 16);
    }
}
