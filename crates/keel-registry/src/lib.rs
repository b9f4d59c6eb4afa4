//! The model registry.
//!
//! Owns the life of a model version: validating and hashing the artifact, reading its
//! signature from the ONNX graph, storing the bytes in an object store (a local folder by
//! default, an S3-compatible bucket by `s3://` URL), recording the immutable version in the
//! metadata store, and moving aliases (`@staging`, `@production`, any name) with history.
//!
//! It depends on the store and on the object store; it must never depend on HTTP, gRPC or
//! the inference runtime: pushing a model does not need ONNX Runtime.

mod compact;
mod error;
mod names;
pub mod onnx;
mod push;
mod upload;

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

pub use compact::read_signature_from;
pub use error::{RegistryError, Result};
pub use keel_store::{Alias, AliasEvent, ChangeEvent, ModelSummary, ModelVersion, Store};
pub use names::{VersionSelector, validate_alias, validate_model_name};
pub use onnx::{Signature, SignatureError, TensorSignature, read_signature};
pub use push::{alias_names, content_hash, parse_metrics};
pub use upload::{UploadCheck, parse_sha256};

/// The alias `keel serve` prefers when it picks the version of a model to serve.
pub const PRODUCTION_ALIAS: &str = "production";

/// What `push` takes besides the bytes.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    pub name: String,
    pub author: String,
    pub description: Option<String>,
    /// Free-form metrics, a JSON object (e.g. `{"auc": 0.97}`).
    pub metrics: serde_json::Value,
    /// A reference to the training data (a lake table, a path, a query).
    pub training_data: Option<String>,
}

/// The registry: the metadata store plus the artifact store.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    objects: Arc<dyn ObjectStore>,
    location: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("artifacts", &self.location).finish()
    }
}

impl Registry {
    /// Opens a registry over a store and an artifact location: a local folder path
    /// (created if missing), a `file://` URL or an `s3://bucket/prefix` URL (credentials and
    /// endpoint from the usual `AWS_*` environment variables).
    pub fn open(store: Store, artifacts: &str) -> Result<Registry> {
        Registry::open_with(store, artifacts, &[])
    }

    /// Like [`open`](Registry::open), with S3 settings given explicitly (e.g.
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("aws_allow_http", "true")`) on top of the
    /// `AWS_*` environment.
    pub fn open_with(store: Store, artifacts: &str, s3_config: &[(&str, &str)]) -> Result<Registry> {
        let objects: Arc<dyn ObjectStore> = if let Some(rest) = artifacts.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, value) in s3_config {
                let key: object_store::aws::AmazonS3ConfigKey = key
                    .parse()
                    .map_err(|e| RegistryError::Config(format!("unknown S3 setting '{key}': {e}")))?;
                builder = builder.with_config(key, *value);
            }
            let s3 = builder
                .build()
                .map_err(|e| RegistryError::Config(format!("cannot use {artifacts}: {e}")))?;
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            }
        } else {
            let path = artifacts.strip_prefix("file://").unwrap_or(artifacts);
            std::fs::create_dir_all(path)
                .map_err(|e| RegistryError::Config(format!("cannot create the artifact folder {path}: {e}")))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| RegistryError::Config(format!("cannot use the artifact folder {path}: {e}")))?;
            Arc::new(local)
        };
        Ok(Registry {
            store,
            objects,
            location: artifacts.to_string(),
        })
    }

    /// The metadata store behind the registry.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where artifacts are kept, as configured.
    pub fn artifact_location(&self) -> &str {
        &self.location
    }

    /// Stores a new immutable version. The bytes are checked to be an ONNX model and their
    /// signature read before anything is written; on any failure the registry is unchanged.
    pub async fn push(&self, request: PushRequest, bytes: Bytes) -> Result<ModelVersion> {
        let metrics = self.validate_push(&request)?;
        let signature = read_signature(&bytes).map_err(|reason| RegistryError::InvalidArtifact { reason })?;
        let hex = hex::encode(Sha256::digest(&bytes));
        let key = format!("models/{}/{}.onnx", request.name, hex);
        let path = ObjectPath::from(key.as_str());
        let existed = self.objects.head(&path).await.is_ok();
        if !existed {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .objects
                .put_opts(&path, PutPayload::from(bytes.clone()), opts)
                .await
            {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(RegistryError::Artifact(format!("cannot write {key}: {e}"))),
            }
        }
        let size = bytes.len() as i64;
        self.record(request, metrics, signature, format!("sha256:{hex}"), key, size, existed)
            .await
    }

    /// Checks a push's name, author and metrics (before any byte is read or written); returns
    /// the metrics as the object recorded.
    fn validate_push(&self, request: &PushRequest) -> Result<serde_json::Value> {
        validate_model_name(&request.name)?;
        if request.author.trim().is_empty() {
            return Err(RegistryError::Invalid("the author must not be empty".into()));
        }
        match &request.metrics {
            serde_json::Value::Null => Ok(serde_json::json!({})),
            serde_json::Value::Object(m) => Ok(serde_json::Value::Object(m.clone())),
            _ => Err(RegistryError::Invalid(
                "metrics must be a JSON object such as {\"auc\": 0.97}".into(),
            )),
        }
    }

    /// Records a version whose artifact is at `key` (written by this push unless `existed`);
    /// when the store refuses, an artifact this push wrote is removed again.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        request: PushRequest,
        metrics: serde_json::Value,
        signature: Signature,
        content_hash: String,
        key: String,
        size_bytes: i64,
        existed: bool,
    ) -> Result<ModelVersion> {
        let path = ObjectPath::from(key.as_str());
        let new = keel_store::NewModelVersion {
            model: request.name,
            content_hash,
            artifact_key: key,
            size_bytes,
            format: "onnx".to_string(),
            author: request.author,
            description: request.description,
            metrics,
            training_data: request.training_data,
            signature: serde_json::to_value(&signature)
                .map_err(|e| RegistryError::Invalid(format!("signature not serializable: {e}")))?,
        };
        match self.store.create_model_version(new).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if !existed {
                    // Leave the artifact store as it was: the version was not recorded.
                    let _ = self.objects.delete(&path).await;
                }
                Err(e.into())
            }
        }
    }

    /// Resolves a selector (`latest`, a number, `@alias`) to a version.
    pub async fn resolve(&self, name: &str, selector: &VersionSelector) -> Result<ModelVersion> {
        validate_model_name(name)?;
        Ok(match selector {
            VersionSelector::Latest => self.store.latest_model_version(name).await?,
            VersionSelector::Number(n) => self.store.get_model_version(name, *n).await?,
            VersionSelector::Alias(a) => {
                let alias = self.store.get_alias(name, a).await?;
                self.store.get_model_version(name, alias.version).await?
            }
        })
    }

    /// The version `keel serve` serves: the one `@production` points to, else the newest.
    pub async fn serving_version(&self, name: &str) -> Result<ModelVersion> {
        match self.store.get_alias(name, PRODUCTION_ALIAS).await {
            Ok(alias) => Ok(self.store.get_model_version(name, alias.version).await?),
            Err(keel_store::StoreError::NotFound { .. }) => Ok(self.store.latest_model_version(name).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// The artifact bytes of a version, checked against the recorded content hash.
    pub async fn fetch(&self, version: &ModelVersion) -> Result<Bytes> {
        let path = ObjectPath::from(version.artifact_key.as_str());
        let bytes = self
            .objects
            .get(&path)
            .await
            .map_err(|e| RegistryError::Artifact(format!("cannot read {}: {e}", version.artifact_key)))?
            .bytes()
            .await
            .map_err(|e| RegistryError::Artifact(format!("cannot read {}: {e}", version.artifact_key)))?;
        let hex = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if hex != version.content_hash {
            return Err(RegistryError::Artifact(format!(
                "artifact {} does not match its recorded hash {} (found {hex}); the artifact store was changed outside keel",
                version.artifact_key, version.content_hash
            )));
        }
        Ok(bytes)
    }

    /// The signature recorded for a version.
    pub fn signature(version: &ModelVersion) -> Result<Signature> {
        serde_json::from_value(version.signature.clone())
            .map_err(|e| RegistryError::Invalid(format!("stored signature unreadable: {e}")))
    }

    pub async fn list_models(&self) -> Result<Vec<ModelSummary>> {
        Ok(self.store.list_models().await?)
    }

    pub async fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        validate_model_name(name)?;
        Ok(self.store.list_model_versions(name).await?)
    }

    /// Points an alias at a version (the move is recorded with who and why).
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        selector: &VersionSelector,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Alias> {
        validate_alias(alias)?;
        let version = self.resolve(name, selector).await?;
        Ok(self.store.set_alias(name, alias, version.version, by, reason).await?)
    }

    pub async fn delete_alias(&self, name: &str, alias: &str, by: &str, reason: Option<&str>) -> Result<()> {
        validate_model_name(name)?;
        validate_alias(alias)?;
        Ok(self.store.delete_alias(name, alias, by, reason).await?)
    }

    pub async fn list_aliases(&self, name: &str) -> Result<Vec<Alias>> {
        validate_model_name(name)?;
        Ok(self.store.list_aliases(name).await?)
    }

    pub async fn alias_history(&self, name: &str, alias: Option<&str>) -> Result<Vec<AliasEvent>> {
        validate_model_name(name)?;
        Ok(self.store.alias_history(name, alias).await?)
    }
}
