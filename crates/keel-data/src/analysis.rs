//! Analysing tables: drift between two tables or files, and a table's feasibility assessment.
//! Both resolve lake tables through a read pass (audited as `drift` or `assess`), then run
//! keel-monitor or keel-assess on a compute thread.

use std::path::{Path, PathBuf};

use keel_assess::{AssessOptions, Assessment};
use keel_catalog::Read;
use keel_lake::arrow::array::RecordBatch;
use keel_lake::{TableFiles, VersionOrTimestamp};
use keel_monitor::{DriftOptions, DriftReport};
use serde_json::json;

use crate::{Caller, DataError, Result, Workspace};

/// Where one side of a drift comparison comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftInput {
    /// A Parquet file, read as it is.
    File(PathBuf),
    /// A lake table (`TABLE` or `TABLE@vN`), read after a check.
    Table { table: String, version: Option<u64> },
}

impl DriftInput {
    /// `arg` as a file when it is one, has a path separator or a `.parquet`/`.pq` extension,
    /// else as a table when it is a valid table name (with an optional `@vN`), else as a file.
    pub fn parse(arg: &str) -> DriftInput {
        let path = Path::new(arg);
        // A version past u64 is left to the file branch (no such table version can exist).
        let (table, version) = keel_lake::split_version(arg).unwrap_or((arg, None));
        let looks_like_file = path.is_file() || arg.contains(std::path::MAIN_SEPARATOR) || is_parquet(path);
        if !looks_like_file && keel_lake::validate_table_name(table).is_ok() {
            DriftInput::Table {
                table: table.to_owned(),
                version,
            }
        } else {
            DriftInput::File(path.to_path_buf())
        }
    }
}

fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

impl std::fmt::Display for DriftInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriftInput::File(path) => write!(f, "{}", path.display()),
            DriftInput::Table { table, version: None } => f.write_str(table),
            DriftInput::Table {
                table,
                version: Some(v),
            } => write!(f, "{table}@v{v}"),
        }
    }
}

impl Workspace {
    /// Compares `current` with `reference`; a table is read (after a check audited as `drift`)
    /// at its version into a temporary Parquet file.
    pub async fn drift(
        &self,
        caller: &Caller,
        reference: &DriftInput,
        current: &DriftInput,
        options: DriftOptions,
    ) -> Result<DriftReport> {
        let reference = self.drift_side(caller, reference, "reference").await?;
        let current = self.drift_side(caller, current, "current").await?;
        let (reference, current) = match (reference, current) {
            // Two tables: drift on the batches already read, no temporary files.
            (Side::Rows(reference), Side::Rows(current)) => {
                let report =
                    tokio::task::spawn_blocking(move || keel_monitor::drift_batches(&reference, &current, &options))
                        .await
                        .map_err(|e| DataError::Task {
                            what: "drift",
                            message: e.to_string(),
                        })??;
                return Ok(report);
            }
            sides => sides,
        };
        // A file on one side: it is read a column at a time, so the table side joins it as a
        // Parquet file.
        let scratch = tempfile::tempdir().map_err(|source| DataError::Io {
            what: "cannot create a temporary folder".into(),
            source,
        })?;
        let reference = reference.into_file(scratch.path(), "reference")?;
        let current = current.into_file(scratch.path(), "current")?;
        drift_files(reference, current, options).await
    }

    async fn drift_side(&self, caller: &Caller, input: &DriftInput, side: &'static str) -> Result<Side> {
        let (table, version) = match input {
            DriftInput::File(path) => return Ok(Side::File(path.clone())),
            DriftInput::Table { table, version } => (table, *version),
        };
        let details = json!({ "side": side, "version": version });
        let pass = self.check::<Read>(caller, table, "drift", details).await?;
        let batches = self.scan(&pass, version.map(VersionOrTimestamp::Version)).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Err(DataError::NothingToCompare {
                side,
                input: input.to_string(),
            });
        }
        Ok(Side::Rows(batches))
    }

    /// Assesses the lake table `table` at `version` (latest when `None`; read after a check
    /// audited as `assess`) for predicting `options.target`; the title defaults to the table and
    /// its version.
    pub async fn assess(
        &self,
        caller: &Caller,
        table: &str,
        version: Option<u64>,
        mut options: AssessOptions,
    ) -> Result<Assessment> {
        let details = json!({ "target": options.target, "version": version });
        let pass = self.check::<Read>(caller, table, "assess", details).await?;
        let files = self.files(&pass, version).await?;
        if let Some(v) = version {
            options.title.get_or_insert_with(|| format!("{table} (version {v})"));
        }
        assess_files(files, table, options).await
    }
}

/// Drift between two Parquet files, on a compute thread.
pub async fn drift_files(reference: PathBuf, current: PathBuf, options: DriftOptions) -> Result<DriftReport> {
    let report = tokio::task::spawn_blocking(move || keel_monitor::drift_files(&reference, &current, &options))
        .await
        .map_err(|e| DataError::Task {
            what: "drift",
            message: e.to_string(),
        })??;
    Ok(report)
}

/// Assesses `files` (the data of `input`, which is the default title) on a compute thread.
pub async fn assess_files(files: TableFiles, input: &str, mut options: AssessOptions) -> Result<Assessment> {
    options.title.get_or_insert_with(|| input.to_owned());
    let assessed = tokio::task::spawn_blocking(move || keel_assess::assess(&files, &options))
        .await
        .map_err(|e| DataError::Task {
            what: "assessment",
            message: e.to_string(),
        })?;
    assessed.map_err(|source| DataError::Assess {
        input: input.to_owned(),
        source,
    })
}

/// `arg` as a Parquet file to assess, `None` when it names a table; another existing file, or
/// a version for a file, is refused.
pub fn parquet_file(arg: &str, version: Option<u64>) -> Result<Option<PathBuf>> {
    let path = Path::new(arg);
    if !is_parquet(path) && !path.is_file() {
        return Ok(None);
    }
    if !is_parquet(path) {
        return Err(DataError::Invalid(format!(
            "{arg} is not a Parquet file: ingest it into a lake table first (keel data ingest {arg} --table NAME) \
             and assess the table"
        )));
    }
    if version.is_some() {
        return Err(DataError::Invalid(
            "--version applies to lake tables, not to a Parquet file".into(),
        ));
    }
    Ok(Some(path.to_path_buf()))
}

/// Writes record batches to one Parquet file.
/// One side of a drift comparison: a Parquet file, or a table's rows read through a pass.
enum Side {
    File(PathBuf),
    Rows(Vec<RecordBatch>),
}

impl Side {
    fn into_file(self, scratch: &Path, side: &str) -> Result<PathBuf> {
        match self {
            Side::File(path) => Ok(path),
            Side::Rows(batches) => {
                let file = scratch.join(format!("{side}.parquet"));
                write_parquet(&file, &batches)?;
                Ok(file)
            }
        }
    }
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let io = |source| DataError::Io {
        what: format!("cannot create {}", path.display()),
        source,
    };
    let Some(first) = batches.first() else {
        return Err(DataError::Invalid(format!("nothing to write to {}", path.display())));
    };
    let parquet = |e: keel_lake::parquet::errors::ParquetError| DataError::Io {
        what: format!("cannot write {}", path.display()),
        source: std::io::Error::other(e),
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut writer = keel_lake::parquet::arrow::ArrowWriter::try_new(file, first.schema(), None).map_err(parquet)?;
    for b in batches {
        writer.write(b).map_err(parquet)?;
    }
    writer.close().map_err(parquet)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_inputs_are_files_or_tables() {
        let table = |t: &str, version| DriftInput::Table {
            table: t.into(),
            version,
        };
        assert_eq!(DriftInput::parse("orders"), table("orders", None));
        assert_eq!(DriftInput::parse("orders@v3"), table("orders", Some(3)));
        assert_eq!(
            DriftInput::parse("orders.parquet"),
            DriftInput::File("orders.parquet".into())
        );
        assert_eq!(DriftInput::parse("a/orders"), DriftInput::File("a/orders".into()));
        assert_eq!(DriftInput::parse("orders@vx"), DriftInput::File("orders@vx".into()));
        assert_eq!(DriftInput::parse("orders@v3").to_string(), "orders@v3");
    }

    #[test]
    fn only_parquet_files_are_assessed_as_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("rows.csv");
        std::fs::write(&csv, "a\n1\n").expect("csv");
        let csv = csv.to_str().expect("utf-8");
        assert_eq!(parquet_file("orders", None).expect("table"), None);
        assert_eq!(parquet_file("x.PQ", None).expect("file"), Some(PathBuf::from("x.PQ")));
        let not_parquet = parquet_file(csv, None).expect_err("csv");
        assert!(
            not_parquet.to_string().contains("is not a Parquet file"),
            "{not_parquet}"
        );
        let versioned = parquet_file("x.parquet", Some(1)).expect_err("version");
        assert_eq!(versioned.kind(), keel_types::ErrorKind::InvalidArgument);
    }
}
