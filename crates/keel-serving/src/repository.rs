//! The live set of served models, swapped atomically.
//!
//! Readers take a snapshot with one atomic load (no lock on the request path); a load or
//! unload builds the new model first, then publishes a new map. A request that started on the
//! old version keeps its `Arc` to it and finishes there: swapping drops no request.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use keel_registry::{ModelVersion, Registry, Signature, VersionSelector};
use keel_runtime::{Model, ModelOptions, Runtime};

use crate::{Result, ServingError};

/// A model version loaded and ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    pub name: String,
    pub version: i64,
    pub version_str: String,
    pub record: ModelVersion,
    pub signature: Signature,
    pub model: Model,
    pub loaded_at: std::time::SystemTime,
    pub(crate) metrics: crate::metrics::ModelMetrics,
}

type ModelMap = BTreeMap<String, Arc<LoadedModel>>;
type PinnedMap = BTreeMap<(String, i64), Arc<LoadedModel>>;

/// Models being served, by name.
pub struct ModelRepository {
    registry: Registry,
    options: ModelOptions,
    models: ArcSwap<ModelMap>,
    /// Versions loaded for deployments (A/B, shadow, canary between versions), beside the
    /// version each name serves by default.
    pinned: ArcSwap<PinnedMap>,
    /// Serialises loads and unloads so two changes never race to publish.
    changes: tokio::sync::Mutex<()>,
}

impl ModelRepository {
    pub fn new(registry: Registry, options: ModelOptions) -> ModelRepository {
        ModelRepository {
            registry,
            options,
            models: ArcSwap::from_pointee(BTreeMap::new()),
            pinned: ArcSwap::from_pointee(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The loaded version of a model, if any (lock-free).
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.models.load().get(name).cloned()
    }

    /// Every loaded model.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.models.load().values().cloned().collect()
    }

    /// Loads a version of a model (the serving version, `@production` else newest, when the
    /// selector is `None`) and publishes it in place of the one being served.
    pub async fn load(&self, name: &str, selector: Option<&VersionSelector>) -> Result<Arc<LoadedModel>> {
        let record = match selector {
            Some(sel) => self.registry.resolve(name, sel).await?,
            None => self.registry.serving_version(name).await?,
        };
        let _guard = self.changes.lock().await;
        if let Some(current) = self.get(name)
            && current.version == record.version
        {
            return Ok(current);
        }
        let loaded = self.build(name, record).await?;
        let mut next = ModelMap::clone(&self.models.load());
        next.insert(name.to_string(), loaded.clone());
        self.models.store(Arc::new(next));
        tracing::info!(model = name, version = loaded.version, "model loaded");
        Ok(loaded)
    }

    async fn build(&self, name: &str, record: ModelVersion) -> Result<Arc<LoadedModel>> {
        let bytes = self.registry.fetch(&record).await?;
        let signature = Registry::signature(&record)?;
        let options = self.options.clone();
        let model =
            tokio::task::spawn_blocking(move || Runtime::global().and_then(|rt| rt.load_model(&bytes, &options)))
                .await
                .map_err(|e| ServingError::Internal(format!("model loading task failed: {e}")))??;
        Ok(Arc::new(LoadedModel {
            name: name.to_string(),
            version: record.version,
            version_str: record.version.to_string(),
            metrics: crate::metrics::ModelMetrics::new(name, record.version),
            record,
            signature,
            model,
            loaded_at: std::time::SystemTime::now(),
        }))
    }

    /// A specific version, loaded beside the default one if needed (for deployments whose
    /// variants are versions of the same model).
    pub async fn load_pinned(&self, name: &str, selector: &VersionSelector) -> Result<Arc<LoadedModel>> {
        let record = self.registry.resolve(name, selector).await?;
        if let Some(current) = self.get(name)
            && current.version == record.version
        {
            return Ok(current);
        }
        let key = (name.to_string(), record.version);
        if let Some(found) = self.pinned.load().get(&key) {
            return Ok(found.clone());
        }
        let _guard = self.changes.lock().await;
        if let Some(found) = self.pinned.load().get(&key) {
            return Ok(found.clone());
        }
        let loaded = self.build(name, record).await?;
        let mut next = PinnedMap::clone(&self.pinned.load());
        next.insert(key, loaded.clone());
        self.pinned.store(Arc::new(next));
        tracing::info!(
            model = name,
            version = loaded.version,
            "model version pinned for a deployment"
        );
        Ok(loaded)
    }

    /// Stops serving a model; requests in flight on it finish. Returns whether it was loaded.
    pub async fn unload(&self, name: &str) -> bool {
        let _guard = self.changes.lock().await;
        let mut next = ModelMap::clone(&self.models.load());
        let was = next.remove(name).is_some();
        if was {
            self.models.store(Arc::new(next));
            tracing::info!(model = name, "model unloaded");
        }
        was
    }
}
