//! A deployment's log folder as a whole: `keel deployment verify` (every segment from the
//! first record, every snapshot) and `keel deployment repair` across files (the damaged file is
//! cut, later files and snapshots beyond the cut are moved aside, the repair is recorded).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::logfile::{Damage, LogCheck, Repair, active_path, read_log, repair, segments};
use crate::{DeploymentError, Result};

/// What `keel deployment verify` reports: every file of the log and every snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Verify {
    /// Valid records in the whole log, before any damage.
    pub records: u64,
    pub last_seq: Option<u64>,
    /// The first damage, in which file.
    pub damage: Option<FileDamage>,
    /// A torn tail of the active file (dropped at start, never acknowledged).
    pub torn_tail: Option<Damage>,
    /// Each file read, oldest first (closed segments, then the active file).
    pub files: Vec<LogCheck>,
    pub snapshots: Vec<crate::snapshot::SnapshotCheck>,
    /// The segments archived to the lake (`archive.json`), oldest first.
    pub archived: Vec<crate::archive::Archived>,
    /// Whether they were read back from the lake and checked (counts, sequence numbers,
    /// checksums): only where this process has the lake.
    pub archived_checked: bool,
}

/// Damage and the file it is in.
#[derive(Debug, Clone, Serialize)]
pub struct FileDamage {
    pub file: PathBuf,
    #[serde(flatten)]
    pub damage: Damage,
}

impl Verify {
    pub fn is_ok(&self) -> bool {
        self.damage.is_none()
    }
}

/// Checks a deployment's whole log (every segment, from the first record, every record
/// decoded) and its snapshots, without changing anything.
pub fn verify(deployment_dir: &Path) -> Result<Verify> {
    let manifest = crate::archive::Manifest::read(deployment_dir)?;
    let checked = manifest.segments.is_empty() || crate::archive::store_for(deployment_dir).is_some();
    let from = if checked { 0 } else { manifest.through() };
    let log = read_log(deployment_dir, from, |_| Ok(()))?;
    let archived_records: u64 = manifest.segments.iter().map(|s| s.records).sum();
    Ok(Verify {
        records: log.files.iter().map(|f| f.records).sum::<u64>() + archived_records,
        archived: manifest.segments,
        archived_checked: checked,
        last_seq: log.last_seq,
        damage: log.damage().map(|(file, d)| FileDamage {
            file: file.to_path_buf(),
            damage: d.clone(),
        }),
        torn_tail: log.active().and_then(|a| a.torn_tail.clone()),
        files: log.files,
        snapshots: crate::snapshot::check_all(deployment_dir)?,
    })
}

/// `keel deployment repair`: moves the bytes of deployment `name`'s log (under `dir`, the
/// experiments folder) from `from` onward aside (see [`repair`]) and records in the change log
/// who did it and what was moved where.
pub async fn repair_deployment_log(
    store: &keel_store::Store,
    dir: &Path,
    name: &str,
    from: u64,
    by: &str,
) -> Result<Repair> {
    crate::validate_name(name)?;
    let deployment_dir = dir.join(name);
    let active = active_path(&deployment_dir);
    if !active.exists() && segments(&deployment_dir)?.is_empty() {
        return Err(DeploymentError::InvalidRequest(format!(
            "deployment '{name}' has no decision log at {}",
            active.display()
        )));
    }
    let task_dir = deployment_dir.clone();
    let (done, later, snapshots) = tokio::task::spawn_blocking(move || repair_dir(&task_dir, from))
        .await
        .map_err(|e| DeploymentError::Log(format!("repair of {} stopped: {e}", active.display())))??;
    let details = serde_json::json!({
        "log": done.path.display().to_string(),
        "from_offset": done.from_offset,
        "moved_bytes": done.moved_bytes,
        "moved_to": done.moved_to.display().to_string(),
        "records_kept": done.after.records,
        "last_seq_kept": done.after.last_seq,
        "later_files_moved": later.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "snapshots_moved": snapshots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    store
        .record_change(by, "deployment.log_repaired", &format!("deployment/{name}"), &details)
        .await?;
    tracing::warn!(deployment = name, by, %details, "decision log repaired");
    Ok(done)
}

/// Repairs a deployment's log at `from` in the file where `verify` finds damage (the active
/// file when there is none): that file is cut there (see [`repair`]); every later file of the
/// log (later segments, the active file) and every snapshot beyond the last record kept are
/// moved aside, never deleted.
fn repair_dir(deployment_dir: &Path, from: u64) -> Result<(Repair, Vec<PathBuf>, Vec<PathBuf>)> {
    let found = verify(deployment_dir)?;
    let target = found
        .damage
        .map(|d| d.file)
        .unwrap_or_else(|| active_path(deployment_dir));
    let done = repair(&target, from)?;
    let mut later = Vec::new();
    if target != active_path(deployment_dir) {
        let _lock = crate::logfile::lock(deployment_dir)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let mut files: Vec<PathBuf> = segments(deployment_dir)?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p > &target)
            .collect();
        files.push(active_path(deployment_dir));
        for file in files.into_iter().filter(|p| p.exists()) {
            let name = file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().to_string());
            let aside = file.with_file_name(format!("{name}.moved-{stamp}-after-repair"));
            std::fs::rename(&file, &aside)
                .map_err(|e| DeploymentError::Log(format!("cannot move {} aside: {e}", file.display())))?;
            later.push(aside);
        }
    }
    let archived = crate::archive::Manifest::read(deployment_dir)?.through();
    let last_kept = read_log(deployment_dir, archived, |_| Ok(()))?.last_seq.unwrap_or(0);
    let snapshots = crate::snapshot::set_aside_after(deployment_dir, last_kept)?;
    Ok((done, later, snapshots))
}
