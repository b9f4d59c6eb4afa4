//! Opening the store and registry the global options point at.

use anyhow::Context as _;
use keel_registry::Registry;
use keel_store::Store;

use crate::cli::Global;

pub struct Context {
    pub registry: Registry,
    /// The workspace folder (decision logs live under `experiments/`).
    pub home: std::path::PathBuf,
    /// `--lake`/$KEEL_LAKE: where the lake tables are when not in `--home/lake`.
    #[cfg_attr(not(feature = "lake"), allow(dead_code))]
    pub lake: Option<String>,
}

impl Context {
    pub async fn open(global: &Global) -> anyhow::Result<Context> {
        let store_url = match &global.store {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&global.home)
                    .with_context(|| format!("cannot create the keel home folder {}", global.home.display()))?;
                let path = std::path::absolute(global.home.join("keel.db"))
                    .with_context(|| format!("cannot resolve {}", global.home.display()))?;
                format!("sqlite://{}", path.display())
            }
        };
        let artifacts = match &global.artifacts {
            Some(a) => a.clone(),
            None => global.home.join("artifacts").display().to_string(),
        };
        let store = Store::open(&store_url)
            .await
            .with_context(|| "cannot open the metadata store".to_string())?;
        let registry = Registry::open(store, &artifacts)?;
        // Reading a deployment's log reads what was archived to the lake from there (the lake
        // is opened only then).
        #[cfg(feature = "lake")]
        keel_experiments::archive::register(
            &global.home.join("experiments"),
            std::sync::Arc::new(keel_experiments::archive_lake::LakeArchive::at(lake_location(global))),
        );
        Ok(Context {
            registry,
            home: global.home.clone(),
            lake: lake_option(global),
        })
    }

    /// Opens the lake (`--lake`, else `--home/lake`).
    #[cfg(feature = "lake")]
    pub async fn open_lake(&self) -> anyhow::Result<keel_lake::Lake> {
        open_lake_at(&self.home, self.lake.as_deref()).await
    }
}

/// Where the lake tables are: `--lake`/$KEEL_LAKE (a folder, file:// or s3:// URL), else the
/// `lake` folder of the workspace.
pub fn lake_location(global: &Global) -> String {
    match lake_option(global) {
        Some(location) => location,
        None => global.home.join("lake").display().to_string(),
    }
}

fn lake_option(global: &Global) -> Option<String> {
    global
        .lake
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(feature = "lake")]
async fn open_lake_at(home: &std::path::Path, lake: Option<&str>) -> anyhow::Result<keel_lake::Lake> {
    Ok(match lake {
        Some(location) => keel_lake::Lake::open_location(location).await?,
        None => keel_lake::Lake::open(&home.join("lake"))?,
    })
}

impl Context {
    /// The catalog's rules over this workspace's store.
    pub fn catalog(&self) -> keel_catalog::Catalog {
        keel_catalog::Catalog::new(self.registry.store().clone())
    }
}

/// The principal acting on the command line: `--user`/$KEEL_USER, else $KEEL_AUTHOR, else $USER.
pub fn principal(global: &Global) -> String {
    global
        .user
        .clone()
        .or_else(|| std::env::var(crate::cli::env::AUTHOR).ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| author(&None))
}

/// Who is acting: the flag, else $KEEL_AUTHOR (via clap), else $USER, else "unknown".
pub fn author(flag: &Option<String>) -> String {
    flag.clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
