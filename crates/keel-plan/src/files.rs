//! Reading and writing the folder.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Grants, PlanError, Result};

/// A declared schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDecl {
    pub cron: String,
    /// The command after `keel`.
    pub command: Vec<String>,
    #[serde(default)]
    pub notify: Option<String>,
}

/// The state a folder declares (or the live state in the same terms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    pub deployments: BTreeMap<String, Value>,
    /// model -> alias -> version.
    pub aliases: BTreeMap<String, BTreeMap<String, i64>>,
    pub schedules: BTreeMap<String, ScheduleDecl>,
    pub grants: Grants,
    /// `policy.json`'s approvals policy, if the folder has one.
    pub policy: Option<crate::approvals::Policy>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantDecl {
    table: String,
    team: String,
    permission: String,
}

fn bad(file: &Path, problem: impl Into<String>) -> PlanError {
    PlanError::File {
        file: file.display().to_string(),
        problem: problem.into(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T> {
    let text = std::fs::read_to_string(file).map_err(|e| bad(file, format!("cannot read it: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad(file, format!("not what this file holds: {e}")))
}

/// The `*.json` files of a subfolder, as (name without extension, path), sorted; a missing
/// folder has none.
fn named_files(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(dir, format!("cannot read the folder: {e}"))),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad(dir, e.to_string()))?;
        let path = entry.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {}
            _ if path.is_dir() => {
                return Err(bad(
                    &path,
                    "a folder where declared files go; only NAME.json files belong here",
                ));
            }
            _ => continue,
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| bad(&path, "the file name is not UTF-8"))?
            .to_string();
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

/// Reads a folder of declared state; every file must parse (the error names the file).
pub fn read_dir(dir: &Path) -> Result<Declared> {
    if !dir.is_dir() {
        return Err(bad(
            dir,
            "not a folder; give the folder `keel export` writes (or an empty one)",
        ));
    }
    let mut out = Declared::default();
    for (name, path) in named_files(&dir.join("deployments"))? {
        let spec: Value = read_json(&path)?;
        if !spec.is_object() {
            return Err(bad(&path, "a deployment spec is a JSON object"));
        }
        out.deployments.insert(name, spec);
    }
    for (name, path) in named_files(&dir.join("schedules"))? {
        out.schedules.insert(name, read_json(&path)?);
    }
    let aliases = dir.join("aliases.json");
    if aliases.exists() {
        out.aliases = read_json(&aliases)?;
        for (model, a) in &out.aliases {
            if let Some((alias, v)) = a.iter().find(|(_, v)| **v < 1) {
                return Err(bad(&aliases, format!("{model}@{alias} -> {v}: versions start at 1")));
            }
        }
    }
    let grants = dir.join("grants.json");
    if grants.exists() {
        let list: Vec<GrantDecl> = read_json(&grants)?;
        out.grants = list.into_iter().map(|g| (g.table, g.team, g.permission)).collect();
    }
    let policy = dir.join("policy.json");
    if policy.exists() {
        let file: crate::approvals::PolicyFile = read_json(&policy)?;
        out.policy = Some(file.approvals);
    }
    Ok(out)
}

fn write(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| bad(path, e.to_string()))?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| bad(path, format!("cannot write it: {e}")))
}

/// Writes `state` as a folder of declared files. Refuses a folder that already holds declared
/// files unless `force` (then they are overwritten and files of objects no longer live are
/// removed, so the folder equals the live state).
pub fn export(state: &Declared, dir: &Path, force: bool) -> Result<Vec<String>> {
    let existing = read_dir(dir).ok();
    if let Some(e) = &existing
        && *e != Declared::default()
        && !force
    {
        return Err(PlanError::Refused(format!(
            "{} already holds declared files; `keel plan {}` compares them with the live state, or export with --force to overwrite",
            dir.display(),
            dir.display()
        )));
    }
    let mut written = Vec::new();
    for (sub, names) in [
        ("deployments", state.deployments.keys().cloned().collect::<Vec<_>>()),
        ("schedules", state.schedules.keys().cloned().collect()),
    ] {
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder).map_err(|e| bad(&folder, format!("cannot create it: {e}")))?;
        for (name, path) in named_files(&folder)? {
            if !names.contains(&name) {
                std::fs::remove_file(&path).map_err(|e| bad(&path, format!("cannot remove it: {e}")))?;
            }
        }
    }
    for (name, spec) in &state.deployments {
        let path = dir.join("deployments").join(format!("{name}.json"));
        write(&path, spec)?;
        written.push(format!("deployments/{name}.json"));
    }
    for (name, s) in &state.schedules {
        let path = dir.join("schedules").join(format!("{name}.json"));
        write(&path, s)?;
        written.push(format!("schedules/{name}.json"));
    }
    write(&dir.join("aliases.json"), &state.aliases)?;
    written.push("aliases.json".into());
    let grants: Vec<GrantDecl> = state
        .grants
        .iter()
        .map(|(table, team, permission)| GrantDecl {
            table: table.clone(),
            team: team.clone(),
            permission: permission.clone(),
        })
        .collect();
    write(&dir.join("grants.json"), &grants)?;
    written.push("grants.json".into());
    let policy = dir.join("policy.json");
    match &state.policy {
        Some(p) => {
            write(&policy, &crate::approvals::PolicyFile { approvals: p.clone() })?;
            written.push("policy.json".into());
        }
        None if policy.exists() => {
            std::fs::remove_file(&policy).map_err(|e| bad(&policy, format!("cannot remove it: {e}")))?;
        }
        None => {}
    }
    Ok(written)
}
