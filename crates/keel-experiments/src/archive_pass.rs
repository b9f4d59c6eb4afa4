//! One archiving pass over a deployment's file log (see [`crate::archive`] for what is archived,
//! when, and how it is read back): the closed segments that are due, oldest first, each
//! appended to the archive store, recorded in the manifest, then removed.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use crate::archive::{ArchiveDone, ArchiveRow, ArchiveStore, Archived, Manifest, TABLE, checksum, sync_dir};
use crate::engine::Deployment;
use crate::event::Event;
use crate::framing::{Decoded, decode};
use crate::logfile::{read_err, segments};
use crate::{DeploymentError, Result};

/// One record of a closed segment as written: its event and its JSON bytes exactly.
struct RawRecord {
    event: Event,
    json: Vec<u8>,
}

/// Every record of a closed segment, checked (checksums, sequence numbers running on); any
/// damage is an error naming the file and offset (a closed segment has no torn tail).
fn read_raw(path: &Path) -> Result<Vec<RawRecord>> {
    let file = File::open(path).map_err(|e| read_err(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut line, mut out, mut offset) = (Vec::new(), Vec::<RawRecord>::new(), 0u64);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| read_err(path, e))?;
        if n == 0 {
            return Ok(out);
        }
        let bad = |why: String| {
            DeploymentError::Log(format!(
                "{} is damaged at byte {offset}: {why}; `keel deployment verify` shows it",
                path.display()
            ))
        };
        let event = match decode(&line).map_err(bad)? {
            Decoded::Framed(e) | Decoded::Legacy(e) => e,
        };
        let body = &line[..line.len() - 1];
        // A framed record is `<seq> <hash> <len> <json>`; a legacy one is the JSON alone.
        let json = if body.first() == Some(&b'{') {
            body.to_vec()
        } else {
            body.splitn(4, |b| *b == b' ')
                .nth(3)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        };
        if let Some(prev) = out.last().map(|r| r.event.seq())
            && event.seq() != prev + 1
        {
            return Err(bad(format!("record {} follows record {prev}", event.seq())));
        }
        offset += n as u64;
        out.push(RawRecord { event, json });
    }
}

impl Deployment {
    /// Archives the closed segments that are due (see the module docs) to `store`, oldest
    /// first, stopping at the first that is not; a log in PostgreSQL has no segments.
    pub async fn archive(&self, store: &Arc<dyn ArchiveStore>, now_ms: i64) -> Result<ArchiveDone> {
        let mut done = ArchiveDone::default();
        if self.wal.pg().is_some() {
            return Ok(done);
        }
        let window = self.with_inner(|i| i.window_ms())?;
        let dir = self.dir.clone();
        let covered = crate::snapshot::oldest_kept(&dir)?.unwrap_or(0);
        let mut manifest = Manifest::read(&dir)?;
        manifest.table = TABLE.to_string();
        done.through_seq = manifest.through();
        for (first, path) in segments(&dir)? {
            if first <= manifest.through() {
                // Archived by a pass that stopped before removing it.
                remove_segment(&path)?;
                continue;
            }
            let read_path = path.clone();
            let records = tokio::task::spawn_blocking(move || read_raw(&read_path))
                .await
                .map_err(|e| DeploymentError::Log(format!("reading a segment stopped: {e}")))??;
            let (Some(head), Some(tail)) = (records.first(), records.last()) else {
                break;
            };
            let (first_seq, last_seq) = (head.event.seq(), tail.event.seq());
            let newest = records.iter().map(|r| r.event.ts()).max().unwrap_or(i64::MAX);
            if first_seq != manifest.through() + 1 || last_seq > covered || newest.saturating_add(window) >= now_ms {
                break;
            }
            let n = records.len() as u64;
            let xxh3 = checksum(records.iter().map(|r| (r.event.seq(), r.json.as_slice())));
            let found = store
                .count(&self.name, first_seq, last_seq)
                .await
                .map_err(|e| DeploymentError::Log(format!("counting archived records of '{}': {e}", self.name)))?;
            let lake_version = match found {
                0 => {
                    let rows = records
                        .into_iter()
                        .map(|r| ArchiveRow {
                            seq: r.event.seq(),
                            ts_ms: r.event.ts(),
                            kind: r.event.kind(),
                            decision_id: r.event.decision_id().map(|id| id.to_string()),
                            record: String::from_utf8_lossy(&r.json).into_owned(),
                        })
                        .collect();
                    let version = store
                        .append(&self.name, rows)
                        .await
                        .map_err(|e| DeploymentError::Log(format!("archiving {} to the lake: {e}", path.display())))?;
                    Some(version)
                }
                n_found if n_found == n => None,
                other => {
                    return Err(DeploymentError::Log(format!(
                        "the lake table {TABLE} holds {other} of the {n} records {first_seq}..={last_seq} of deployment '{}' \
                         ({}) without a manifest entry; archiving stops and nothing local is removed: compare them by hand",
                        self.name,
                        path.display()
                    )));
                }
            };
            manifest.segments.push(Archived {
                first_seq,
                last_seq,
                records: n,
                xxh3,
                lake_version,
                newest_ts_ms: newest,
                archived_at_ms: now_ms,
            });
            manifest.write(&dir)?;
            remove_segment(&path)?;
            tracing::info!(deployment = %self.name, first_seq, last_seq, records = n, ?lake_version, "closed segment archived to the lake");
            metrics::counter!("keel_deployment_log_archived_records_total").increment(n);
            done.segments += 1;
            done.records += n;
            done.through_seq = last_seq;
        }
        Ok(done)
    }
}

fn remove_segment(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DeploymentError::Log(format!("cannot remove {}: {e}", path.display()))),
    }
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}
