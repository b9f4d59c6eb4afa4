//! `keel plan`, `keel apply`, `keel export`: changes as code.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The folder of declared files (deployments/, schedules/, aliases.json, grants.json)
    pub dir: PathBuf,
    /// Also delete aliases, schedules and grants that are live but not in the folder
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The folder of declared files
    pub dir: PathBuf,
    /// Also delete aliases, schedules and grants that are live but not in the folder
    #[arg(long)]
    pub prune: bool,
    /// Apply without asking (scripts, CI)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StateExportArgs {
    /// Where to write the declared files of what runs now
    pub dir: PathBuf,
    /// Overwrite declared files already there
    #[arg(long)]
    pub force: bool,
}
