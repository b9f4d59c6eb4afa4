//! Lakes in an S3-compatible bucket (`s3://bucket/prefix`).
//!
//! delta-rs ships S3 support in its `deltalake-aws` crate, which pulls the AWS SDK (config,
//! STS, DynamoDB for its commit lock) into the build. keel-lake does without it: it builds the
//! S3 client of `object_store` (the storage layer delta-rs itself sits on, already compiled
//! with S3 support for delta-kernel) and hands it to delta-rs as the table's storage backend,
//! with delta-rs' default log store registered for the `s3` scheme.
//!
//! Commits stay atomic: the default log store creates `_delta_log/<version>.json` with
//! `PutMode::Create`, which this client sends as a conditional `PUT` with `If-None-Match: *`.
//! The bucket accepts at most one such write per key, so of two writers racing for the same
//! version exactly one wins and the other is told the version exists (delta-rs then re-reads
//! the log and retries at the next version, or reports the conflict). AWS S3 (since 2024),
//! MinIO, Cloudflare R2 and Ceph honour the header; a store that ignored it would let a second
//! writer overwrite a commit, so before its first write a lake checks once that the store
//! refuses a second create of the same key, and refuses to write otherwise.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use deltalake::DeltaResult;
use deltalake::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::error::{LakeError, Result};

/// Where the settings for an S3 lake come from, for error messages.
const SETTINGS_HINT: &str = "the endpoint and credentials come from AWS_ENDPOINT_URL (AWS_ALLOW_HTTP=true for an \
     http:// endpoint), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION";

/// Concurrent object downloads when a table's files are fetched to a local folder.
const DOWNLOADS: usize = 8;

/// An `s3://bucket/prefix` lake root: the bucket's client and the prefix tables live under.
pub(crate) struct S3Root {
    /// `s3://bucket/prefix/` (with a trailing slash, so table URLs join onto it).
    url: Url,
    /// The client, rooted at the bucket.
    store: Arc<dyn ObjectStore>,
    /// The prefix inside the bucket (empty for the bucket's root).
    prefix: ObjectPath,
    /// Set once the store has shown it refuses a second create of one key.
    commits_checked: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for S3Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug output may include credentials: show the location only.
        f.debug_struct("S3Root").field("url", &self.url.as_str()).finish()
    }
}

/// Parses `s3://bucket[/prefix]` into the root URL (trailing slash) and the prefix.
fn parse(location: &str) -> Result<(Url, String, ObjectPath)> {
    let bad = |reason: &str| LakeError::UnsupportedRoot {
        root: location.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(location).map_err(|e| bad(&format!("not a URL ({e}): use s3://bucket/prefix")))?;
    if url.scheme() != "s3" {
        return Err(bad("only s3:// URLs and local folders are supported"));
    }
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(bad("no bucket name: use s3://bucket/prefix"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.port().is_some() {
        return Err(bad(
            "use s3://bucket/prefix; the endpoint and credentials go in AWS_* variables, not the URL",
        ));
    }
    let prefix = url.path().trim_matches('/').to_string();
    let prefix_path = ObjectPath::parse(&prefix).map_err(|e| bad(&format!("invalid prefix: {e}")))?;
    let root = if prefix.is_empty() {
        format!("s3://{bucket}/")
    } else {
        format!("s3://{bucket}/{prefix_path}/")
    };
    let root = Url::parse(&root).map_err(|e| bad(&e.to_string()))?;
    Ok((root, bucket, prefix_path))
}

/// The S3 client for `bucket`: settings from the `AWS_*` environment, then `config` on top;
/// conditional puts always on (they are what keeps commits atomic).
fn client(bucket: &str, config: &[(&str, &str)], retry: Option<RetryConfig>) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in config {
        let key: AmazonS3ConfigKey = key.parse().map_err(|e| LakeError::UnsupportedRoot {
            root: format!("s3://{bucket}"),
            reason: format!("unknown S3 setting {key:?}: {e}"),
        })?;
        builder = builder.with_config(key, *value);
    }
    builder = builder.with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(retry) = retry {
        builder = builder.with_retry(retry);
    }
    let store = builder.build().map_err(|e| LakeError::UnsupportedRoot {
        root: format!("s3://{bucket}"),
        reason: format!("{e}; {SETTINGS_HINT}"),
    })?;
    Ok(Arc::new(store))
}

/// Turns a storage error on `location` into a message that says what to fix.
pub(crate) fn storage_error(location: &str, e: &object_store::Error) -> LakeError {
    let text = e.to_string();
    let hint = match e {
        object_store::Error::NotFound { .. } => {
            "the bucket (or the endpoint's path) does not exist: create the bucket or fix the URL and AWS_ENDPOINT_URL"
        }
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            "the store refused the credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) \
             and the bucket's policy"
        }
        _ if text.contains("NoSuchBucket") => "the bucket does not exist: create it or fix the URL",
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied")
            || text.contains("403 Forbidden") =>
        {
            "the store refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and \
             AWS_SESSION_TOKEN) and the bucket's policy"
        }
        _ if text.contains("credentials") || text.contains("instance metadata") => {
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (without them the client asks the \
             instance or container metadata service)"
        }
        _ if text.contains("error sending request") || text.contains("connect") || text.contains("dns") => {
            "cannot connect to the endpoint: check AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for http://) and that the \
             server is up"
        }
        _ => SETTINGS_HINT,
    };
    LakeError::Storage {
        location: location.to_string(),
        message: format!("{hint} ({text})"),
    }
}

/// Registers delta-rs' default log store (commits by `PutMode::Create`) for `s3://` tables,
/// once per process. The object store itself is always passed with the table, never looked up.
fn register_log_store() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            let factories = deltalake::logstore::logstore_factories();
            if !factories.contains_key(&scheme) {
                factories.insert(scheme, Arc::new(ConditionalPutLogStoreFactory));
            }
        }
    });
}

/// delta-rs' default log store over an object store whose `PutMode::Create` is atomic.
struct ConditionalPutLogStoreFactory;

impl LogStoreFactory for ConditionalPutLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

impl S3Root {
    /// Connects to `s3://bucket/prefix` and lists the prefix once, so a wrong bucket, endpoint
    /// or credentials is reported here, with what to fix.
    pub(crate) async fn open(location: &str, config: &[(&str, &str)]) -> Result<S3Root> {
        let (url, bucket, prefix) = parse(location)?;
        register_log_store();
        // The check fails fast: one retry, not the client's default of ten over minutes.
        let quick = RetryConfig {
            max_retries: 1,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        };
        let probe = client(&bucket, config, Some(quick))?;
        let listed = probe.list_with_delimiter(Some(&prefix)).await;
        listed.map_err(|e| storage_error(location, &e))?;
        let store = client(&bucket, config, None)?;
        Ok(S3Root {
            url,
            store,
            prefix,
            commits_checked: tokio::sync::OnceCell::new(),
        })
    }

    /// The root URL, `s3://bucket/prefix/`.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// The client, rooted at the bucket.
    pub(crate) fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    fn child(&self, parts: &[&str]) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in parts {
            path = path.join(*part);
        }
        path
    }

    fn error(&self, e: &object_store::Error) -> LakeError {
        storage_error(self.url.as_str(), e)
    }

    /// Whether `table` has a transaction log.
    pub(crate) async fn exists(&self, table: &str) -> Result<bool> {
        let log = self.child(&[table, crate::DELTA_LOG]);
        match self.store.list(Some(&log)).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.error(&e)),
        }
    }

    /// The names directly under the prefix that are tables (have a transaction log).
    pub(crate) async fn tables(&self) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.error(&e))?;
        let candidates: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|name| crate::validate_table_name(name).is_ok())
            .collect();
        let checks = futures::stream::iter(candidates)
            .map(|name| async move { Ok::<_, LakeError>(self.exists(&name).await?.then_some(name)) })
            .buffered(DOWNLOADS)
            .try_collect::<Vec<_>>()
            .await?;
        let mut names: Vec<String> = checks.into_iter().flatten().collect();
        names.sort();
        Ok(names)
    }

    /// Checks once per lake that the store refuses a second create of one key (`If-None-Match`):
    /// without that, two writers could both commit the same version.
    pub(crate) async fn check_commits(&self) -> Result<()> {
        self.commits_checked
            .get_or_try_init(|| async {
                let key = self.child(&[".keel", &format!("commit-check-{}", uuid::Uuid::new_v4())]);
                let create = || PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                self.store
                    .put_opts(&key, "1".into(), create())
                    .await
                    .map_err(|e| self.error(&e))?;
                let second = self.store.put_opts(&key, "2".into(), create()).await;
                let _ = self.store.delete(&key).await;
                match second {
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                    Err(e) => Err(self.error(&e)),
                    Ok(_) => Err(LakeError::UnsupportedRoot {
                        root: self.url.to_string(),
                        reason: "the store ignored a conditional write (PUT with If-None-Match: *), so two writers \
                                 could commit the same table version: use a store that supports conditional writes \
                                 (AWS S3, MinIO, Cloudflare R2, Ceph RGW...)"
                            .into(),
                    }),
                }
            })
            .await
            .map(|_| ())
    }
}

/// Downloads a table's data files into `dir`: `files` are `(key in the table's store, path
/// below the table)` pairs such as `region=eu/part-....parquet`, kept as they are under `dir`.
pub(crate) async fn download(
    location: &str,
    table_store: Arc<dyn ObjectStore>,
    files: Vec<(ObjectPath, String)>,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let jobs = files.into_iter().map(|(key, relative)| {
        let store = table_store.clone();
        async move {
            let mut local = dir.to_path_buf();
            for part in relative.split('/').filter(|p| !p.is_empty() && *p != ".." && *p != ".") {
                local.push(part);
            }
            let io = |source| LakeError::Io {
                path: local.clone(),
                source,
            };
            if let Some(parent) = local.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            let mut body = store
                .get(&key)
                .await
                .map_err(|e| storage_error(location, &e))?
                .into_stream();
            let mut file = tokio::fs::File::create(&local).await.map_err(io)?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| storage_error(location, &e))?;
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.flush().await.map_err(io)?;
            Ok::<_, LakeError>(local)
        }
    });
    futures::stream::iter(jobs).buffered(DOWNLOADS).try_collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let (url, bucket, prefix) = parse("s3://b/team/lake/").unwrap();
        assert_eq!(
            (url.as_str(), bucket.as_str(), prefix.as_ref()),
            ("s3://b/team/lake/", "b", "team/lake")
        );
        let (url, _, prefix) = parse("s3://b").unwrap();
        assert_eq!((url.as_str(), prefix.as_ref()), ("s3://b/", ""));
        assert_eq!(url.join("t/").unwrap().as_str(), "s3://b/t/");
        for bad in [
            "s3://",
            "s3:///x",
            "gs://b/x",
            "s3://key:secret@b/x",
            "s3://b/x?endpoint=y",
            "not a url",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_errors_say_what_to_fix() {
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        let cases = [
            ("404 Not Found: <Code>NoSuchBucket</Code>", "the bucket does not exist"),
            ("403 Forbidden: <Code>InvalidAccessKeyId</Code>", "AWS_ACCESS_KEY_ID"),
            (
                "403 Forbidden: <Code>SignatureDoesNotMatch</Code>",
                "AWS_SECRET_ACCESS_KEY",
            ),
            ("Error getting credentials from instance metadata", "no credentials"),
            ("HTTP error: error sending request", "AWS_ENDPOINT_URL"),
            ("something else", "AWS_ENDPOINT_URL"),
        ];
        for (text, hint) in cases {
            let err = storage_error("s3://b/lake", &generic(text));
            assert_eq!(err.code(), "storage_error");
            let msg = err.to_string();
            assert!(
                msg.contains("s3://b/lake") && msg.contains(hint) && msg.contains(text),
                "{msg}"
            );
        }
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "denied".to_string().into(),
        };
        assert!(
            storage_error("s3://b", &denied)
                .to_string()
                .contains("refused the credentials")
        );
    }
}
