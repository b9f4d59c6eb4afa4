//! Opening the store and registry the global options point at.

use anyhow::Context as _;
use keel_registry::Registry;
use keel_store::Store;

use crate::cli::Global;

pub struct Context {
    pub registry: Registry,
    /// The workspace folder (decision logs live under `experiments/`).
    pub home: std::path::PathBuf,
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
        Ok(Context {
            registry,
            home: global.home.clone(),
        })
    }
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
