//! Durable writes of small whole files (snapshots, the archive manifest): a temporary file
//! beside the target, written and synced, renamed over it, then the folder synced, so a crash
//! leaves either the old file or the new one, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{DeploymentError, Result};

pub(crate) fn io_err(what: &str, path: &Path, e: std::io::Error) -> DeploymentError {
    DeploymentError::Log(format!("cannot {what} {}: {e}", path.display()))
}

/// Makes the entries of folder `dir` (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync", dir, e))
}

/// Writes `bytes` to `path` atomically and durably (see the module docs); a failed write
/// removes its temporary file and leaves `path` as it was.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(DeploymentError::Log(format!("{} is not a file path", path.display())));
    };
    let tmp = dir.join(format!("{}.tmp", name.to_string_lossy()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err("write", &tmp, e));
    }
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io_err("rename", &tmp, e))?;
    sync_dir(dir)
}
