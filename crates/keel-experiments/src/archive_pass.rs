//! One archiving pass over a deployment's file log (see [`crate::archive`] for what is archived,
//! when, and how it is read back): the closed segments that are due, oldest first, each
//! appended to the archive store, recorded in the manifest, then removed.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use crate::archive::{ArchiveDone, ArchiveRow, ArchiveStore, Archived, Manifest, TABLE, checksum};
use crate::engine::Deployment;
use crate::files::sync_dir;
use crate::framing::{Decoded, decode, json_of};
use crate::logfile::{read_err, segments};
use crate::{DeploymentError, Result};

/// Every record of a closed segment as a row of the archive (its JSON exactly as written),
/// checked on the way (checksums, sequence numbers running on); any damage is an error naming
/// the file and offset (a closed segment has no torn tail). Each event is decoded only for its
/// sequence number, time, kind and decision, and dropped: memory holds the rows.
fn read_rows(path: &Path) -> Result<Vec<ArchiveRow>> {
    let file = File::open(path).map_err(|e| read_err(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut line, mut out, mut offset) = (Vec::new(), Vec::<ArchiveRow>::new(), 0u64);
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
        if let Some(prev) = out.last().map(|r| r.seq)
            && event.seq() != prev + 1
        {
            return Err(bad(format!("record {} follows record {prev}", event.seq())));
        }
        offset += n as u64;
        out.push(ArchiveRow {
            seq: event.seq(),
            ts_ms: event.ts(),
            kind: event.kind(),
            decision_id: event.decision_id().map(|id| id.to_string()),
            record: String::from_utf8_lossy(json_of(&line)).into_owned(),
        });
    }
}

impl Deployment {
    /// Archives the closed segments that are due (see the module docs) to `store`, oldest
    /// first, stopping at the first that is not; for a log in PostgreSQL, the ranges that are
    /// due ([`crate::pglog::archive`]).
    pub async fn archive(&self, store: &Arc<dyn ArchiveStore>, now_ms: i64) -> Result<ArchiveDone> {
        let mut done = ArchiveDone::default();
        let window = self.with_inner(|i| i.window_ms())?;
        if let Some(pg) = self.wal.pg() {
            let range_bytes = self.options.segment_bytes.max(1);
            let pass = crate::pglog::archive::Pass {
                pool: pg.pool(),
                deployment: &self.name,
                store,
                window_ms: window,
                range_bytes,
                now_ms,
            };
            return pass.run().await;
        }
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
            let rows = tokio::task::spawn_blocking(move || read_rows(&read_path))
                .await
                .map_err(|e| DeploymentError::Log(format!("reading a segment stopped: {e}")))??;
            let (Some(head), Some(tail)) = (rows.first(), rows.last()) else {
                break;
            };
            let (first_seq, last_seq) = (head.seq, tail.seq);
            let newest = rows.iter().map(|r| r.ts_ms).max().unwrap_or(i64::MAX);
            if first_seq != manifest.through() + 1 || last_seq > covered || newest.saturating_add(window) >= now_ms {
                break;
            }
            let n = rows.len() as u64;
            let xxh3 = checksum(rows.iter().map(|r| (r.seq, r.record.as_bytes())));
            let found = store
                .count(&self.name, first_seq, last_seq)
                .await
                .map_err(|e| DeploymentError::Log(format!("counting archived records of '{}': {e}", self.name)))?;
            let lake_version = match found {
                0 => {
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
