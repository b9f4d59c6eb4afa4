//! Lake tables in Delta Lake format.
//!
//! keel-lake owns keel's tabular data: it ingests CSV, Parquet and JSON lines files into
//! [Delta Lake](https://delta.io) tables under one root (`root/<table>`: a local directory, or
//! an `s3://bucket/prefix` in S3 or an S3-compatible store, see [`Lake::open_location`]), keeps every
//! write as a new table version (history and time travel by version or timestamp), and answers
//! SQL over all tables through DataFusion. The on-disk format is plain Delta, so other Delta
//! clients (Spark, the `deltalake` Python package, ...) read keel tables unchanged.
//!
//! Crash safety comes from the Delta commit protocol: data files are written first and become
//! visible only when the commit file `_delta_log/<version>.json` is created atomically (in a
//! bucket: a conditional `PUT` with `If-None-Match: *`, see the `s3` module). A killed or
//! failed ingest therefore leaves the table at its last good version (orphaned data files are not
//! referenced and can be removed by a vacuum).
//!
//! This crate is a domain crate: it must never depend on the serving stack (HTTP or gRPC servers,
//! `keel-api`, `keel-serving`); the CLI and API call into it, never the other way round. Arrow,
//! Parquet and DataFusion are used only through `deltalake`'s re-exports so that one Arrow
//! version is built.

mod appender;
mod error;
mod read;
mod s3;
mod source;
mod stream_append;
mod types;
mod write;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use url::Url;

pub use appender::Appender;
pub use deltalake::arrow;
pub use deltalake::datafusion;
pub use deltalake::parquet;
pub use error::{LakeError, Result};
pub use read::{json_rows, pretty};
pub use source::{Format, parse_schema};
pub use stream_append::StreamAppend;
pub use types::{
    CompactReport, IngestOptions, IngestReport, TableFiles, VersionInfo, VersionOrTimestamp, WriteMode, split_version,
    validate_table_name,
};

/// Default rows per batch when streaming an input file.
pub const DEFAULT_BATCH_SIZE: usize = 65_536;
/// Directory of the Delta transaction log inside a table.
const DELTA_LOG: &str = "_delta_log";

/// Where a lake keeps its tables: a local folder or an S3-compatible bucket.
#[derive(Debug, Clone)]
enum Root {
    /// A local directory (canonical path).
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3(Arc<s3::S3Root>),
}

/// A set of Delta tables under one root: a local directory or an `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Root,
}

impl Lake {
    /// Opens (creating if needed) the lake rooted at the local directory `root`.
    ///
    /// URLs are refused here: open a lake in a bucket (`s3://...`) with [`Lake::open_location`].
    pub fn open(root: &Path) -> Result<Lake> {
        let text = root.to_string_lossy();
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(LakeError::UnsupportedRoot {
                root: text.to_string(),
                reason: format!("{scheme}:// is not a local folder: open it with Lake::open_location"),
            });
        }
        std::fs::create_dir_all(root).map_err(|source| LakeError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| LakeError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Lake {
            root: Root::Local(root),
        })
    }

    /// Opens the lake at `location`: an `s3://bucket/prefix` URL (S3 or an S3-compatible store;
    /// endpoint and credentials from the usual `AWS_*` environment variables), a `file://` URL
    /// or a local folder path (created if needed).
    ///
    /// A bucket is checked on open (one listing), so a wrong bucket, endpoint or credentials
    /// fails here with [`LakeError::Storage`] saying what to fix.
    pub async fn open_location(location: &str) -> Result<Lake> {
        Lake::open_location_with(location, &[]).await
    }

    /// Like [`open_location`](Lake::open_location), with S3 settings given explicitly (e.g.
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("aws_allow_http", "true")`) on top of the
    /// `AWS_*` environment. Ignored for local lakes.
    pub async fn open_location_with(location: &str, s3_config: &[(&str, &str)]) -> Result<Lake> {
        if location.starts_with("s3://") {
            let root = s3::S3Root::open(location, s3_config).await?;
            return Ok(Lake {
                root: Root::S3(Arc::new(root)),
            });
        }
        if let Some(rest) = location.strip_prefix("file://") {
            let url = Url::parse(location).map_err(|e| LakeError::UnsupportedRoot {
                root: location.to_string(),
                reason: e.to_string(),
            })?;
            let path = url.to_file_path().map_err(|()| LakeError::UnsupportedRoot {
                root: location.to_string(),
                reason: format!("{rest} is not an absolute local path"),
            })?;
            return Lake::open(&path);
        }
        if let Some((scheme, _)) = location.split_once("://") {
            return Err(LakeError::UnsupportedRoot {
                root: location.to_string(),
                reason: format!("{scheme}:// is not supported: use a local folder or s3://bucket/prefix"),
            });
        }
        Lake::open(Path::new(location))
    }

    /// The lake's root directory, for a local lake.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.root {
            Root::Local(path) => Some(path),
            Root::S3(_) => None,
        }
    }

    /// Where the lake is, for messages: its folder, or its `s3://bucket/prefix/` URL.
    pub fn location(&self) -> String {
        match &self.root {
            Root::Local(path) => path.display().to_string(),
            Root::S3(s3) => s3.url().to_string(),
        }
    }

    /// Names of the tables in the lake, sorted.
    pub async fn tables(&self) -> Result<Vec<String>> {
        let root = match &self.root {
            Root::Local(root) => root,
            Root::S3(s3) => return s3.tables().await,
        };
        let entries = std::fs::read_dir(root).map_err(|source| LakeError::Io {
            path: root.clone(),
            source,
        })?;
        let mut names = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| LakeError::Io {
                path: root.clone(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_table_name(&name).is_ok() && entry.path().join(DELTA_LOG).is_dir() {
                names.insert(name);
            }
        }
        Ok(names.into_iter().collect())
    }

    pub(crate) fn table_url(&self, table: &str) -> Result<Url> {
        validate_table_name(table)?;
        match &self.root {
            Root::Local(root) => {
                let path = root.join(table);
                Url::from_directory_path(&path).map_err(|()| LakeError::UnsupportedRoot {
                    root: path.display().to_string(),
                    reason: "not an absolute path".into(),
                })
            }
            Root::S3(s3) => s3
                .url()
                .join(&format!("{table}/"))
                .map_err(|e| LakeError::UnsupportedRoot {
                    root: s3.url().to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    /// A delta-rs table handle for `table` (not loaded), on the lake's storage.
    pub(crate) fn builder(&self, table: &str) -> Result<DeltaTable> {
        let url = self.table_url(table)?;
        Ok(match &self.root {
            Root::Local(_) => DeltaTableBuilder::from_url(url)?.build()?,
            Root::S3(s3) => DeltaTableBuilder::from_url(url.clone())?
                .with_storage_backend(s3.store(), url)
                .build()?,
        })
    }

    /// Whether `table` is a table of this lake (it has a Delta log). A name that cannot be a
    /// table is an error, not `false`.
    pub async fn exists(&self, table: &str) -> Result<bool> {
        validate_table_name(table)?;
        match &self.root {
            Root::Local(root) => Ok(root.join(table).join(DELTA_LOG).is_dir()),
            Root::S3(s3) => s3.exists(table).await,
        }
    }

    /// Before a write: makes a new table's folder (local lakes), or checks once that the bucket
    /// makes commits atomic (lakes in a bucket).
    pub(crate) async fn prepare_write(&self, table: &str, new: bool) -> Result<()> {
        match &self.root {
            Root::Local(root) if new => std::fs::create_dir_all(root.join(table)).map_err(|source| LakeError::Io {
                path: root.join(table),
                source,
            }),
            Root::Local(_) => Ok(()),
            Root::S3(s3) => s3.check_commits().await,
        }
    }

    /// The underlying delta-rs table at its latest version, for what keel-lake does not wrap
    /// (its log store, operations...).
    pub async fn delta_table(&self, table: &str) -> Result<DeltaTable> {
        self.load(table, None).await
    }

    /// Loads an existing table at its latest version, or at `at`.
    pub(crate) async fn load(&self, table: &str, at: Option<VersionOrTimestamp>) -> Result<DeltaTable> {
        let mut delta = self.builder(table)?;
        if !self.exists(table).await? {
            return Err(LakeError::TableNotFound {
                table: table.to_string(),
            });
        }
        let not_found = |at: VersionOrTimestamp| LakeError::VersionNotFound {
            table: table.to_string(),
            at: at.to_string(),
        };
        match at {
            None => delta.load().await?,
            Some(at @ VersionOrTimestamp::Version(v)) => {
                if v > delta.get_latest_version().await? {
                    return Err(not_found(at));
                }
                delta.load_version(v).await.map_err(|e| match e {
                    DeltaTableError::InvalidVersion(_) => not_found(at),
                    other => LakeError::Delta(other),
                })?
            }
            Some(at @ VersionOrTimestamp::Timestamp(t)) => {
                delta.load_with_datetime(t).await.map_err(|e| match e {
                    DeltaTableError::InvalidVersion(_) | DeltaTableError::InvalidDateTimeString { .. } => not_found(at),
                    other => LakeError::Delta(other),
                })?;
                // deltalake answers version 0 for a time before the table existed: refuse that.
                if delta.version() == Some(0) {
                    let commits: Vec<_> = delta.history(None).try_collect().await?;
                    let created = commits.iter().filter_map(|c| c.timestamp).min();
                    if created.is_some_and(|ms| ms > t.timestamp_millis()) {
                        return Err(not_found(at));
                    }
                }
            }
        }
        Ok(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appender::text_values_repeat;
    use crate::read::versions_referenced;

    #[test]
    fn dictionaries_only_for_text_that_repeats() {
        use deltalake::arrow::array::{Float64Array, StringArray};
        let ids: Vec<String> = (0..100).map(|i| format!("0199-{i:04}")).collect();
        let unique = StringArray::from_iter_values(&ids);
        let names = StringArray::from_iter_values((0..100).map(|i| ["bc-lr", "bc-rf"][i % 2]));
        let nulls = StringArray::from(vec![None::<&str>; 10]);
        let numbers = Float64Array::from(vec![1.0; 10]);
        assert!(!text_values_repeat(&unique));
        assert!(text_values_repeat(&names));
        assert!(text_values_repeat(&nulls));
        assert!(!text_values_repeat(&numbers));
    }

    #[test]
    fn table_names() {
        for ok in ["events", "a", "_x", "0a", "a.b-c_d"] {
            assert!(validate_table_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "A", ".x", "-x", "a b", "a\\b", &"a".repeat(129)] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_table_reference_splits_into_the_table_and_its_version() {
        assert_eq!(split_version("orders").expect("plain"), ("orders", None));
        assert_eq!(split_version("orders@v3").expect("v3"), ("orders", Some(3)));
        assert_eq!(split_version("a@v1@v20").expect("last"), ("a@v1", Some(20)));
        // Not a version: part of the name (which validation then refuses).
        for name in ["orders@v", "orders@vx", "orders@v-1", "orders@3"] {
            assert_eq!(split_version(name).expect("name"), (name, None));
        }
        let past = split_version("orders@v99999999999999999999").expect_err("past u64");
        assert!(past.to_string().contains("no version 99999999999999999999"), "{past}");
    }

    #[test]
    fn version_references() {
        let q = r#"SELECT * FROM "events@v3" JOIN "events@v12" ON 1=1 JOIN "xevents@v5" ON 1=1"#;
        assert_eq!(
            versions_referenced(q, "events").into_iter().collect::<Vec<_>>(),
            vec![3, 12]
        );
    }

    #[test]
    fn schema_strings() {
        let s = parse_schema("a:int, b:string,c:double").unwrap();
        assert_eq!(s.fields().len(), 3);
        assert!(parse_schema("a:blob").is_err());
        assert!(parse_schema("a").is_err());
    }
}
