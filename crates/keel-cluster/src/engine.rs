//! The client side: a scoring run as a DataFusion plan on a Ballista cluster. The plan reads
//! the input version's Parquet files, projects the kept columns beside `keel_score(inputs...)`,
//! and streams the result back; each struct of outputs is unpacked into the output columns the
//! in-process run writes.

use std::path::PathBuf;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use futures::StreamExt;
use futures::future::BoxFuture;
use keel_batch::{BatchError, ScoreEngine, ScoreSpec, ScoredBatches};
use keel_lake::arrow::array::{Array, ArrayRef, RecordBatch, StructArray};
use keel_lake::arrow::datatypes::{Field, Schema};
use keel_lake::datafusion::execution::SessionStateBuilder;
use keel_lake::datafusion::prelude::{Expr, ParquetReadOptions, SessionConfig, SessionContext, ident};

use crate::ClusterError;
use crate::codec::{LogicalCodec, PhysicalCodec};
use crate::udf::KeelScore;

/// The output column holding the struct of scores, unpacked before the rows leave the engine.
const SCORED: &str = "__keel_scored";

/// A Ballista cluster reached through its scheduler (`ballista://HOST:PORT`).
#[derive(Debug, Clone)]
pub struct BallistaEngine {
    host: String,
    port: u16,
    batch_rows: usize,
}

impl BallistaEngine {
    /// The cluster at `ballista://HOST:PORT`, scoring in batches of `batch_rows` rows.
    pub fn parse(engine: &str, batch_rows: usize) -> Result<BallistaEngine, ClusterError> {
        let bad = |why: &str| {
            ClusterError::Invalid(format!(
                "--engine {engine:?}: {why}; name a Ballista scheduler as ballista://HOST:PORT (started with `keel cluster scheduler`)"
            ))
        };
        let url = url::Url::parse(engine).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "ballista" {
            return Err(bad("the scheme must be ballista://"));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let port = url.port().ok_or_else(|| bad("no port"))?;
        if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
            return Err(bad("only a host and a port"));
        }
        Ok(BallistaEngine {
            host: host.to_owned(),
            port,
            batch_rows: batch_rows.max(1),
        })
    }

    fn failed(&self, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::Cluster {
            at: self.name(),
            message: e.to_string(),
        }
    }

    async fn run(&self, spec: &ScoreSpec, files: &[PathBuf]) -> Result<ScoredBatches, ClusterError> {
        if files.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let config = SessionConfig::new_with_ballista()
            .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::new(None)))
            .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::new(None)))
            .with_batch_size(self.batch_rows);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let ctx = SessionContext::remote_with_state(&format!("df://{}:{}", self.host, self.port), state)
            .await
            .map_err(|e| self.failed(e))?;
        let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let input = ctx
            .read_parquet(paths, ParquetReadOptions::default())
            .await
            .map_err(|e| self.failed(format!("cannot plan the read of the input files: {e}")))?;
        let score = KeelScore::new(spec.clone(), None)?.udf();
        let mut columns: Vec<Expr> = spec.keep().iter().map(ident).collect();
        columns.push(
            score
                .call(spec.input_columns().into_iter().map(ident).collect())
                .alias(SCORED),
        );
        let stream = input
            .select(columns)
            .map_err(|e| self.failed(format!("cannot plan the scoring: {e}")))?
            .execute_stream()
            .await
            .map_err(|e| self.failed(e))?;
        let keep = spec.keep().len();
        let at = self.name();
        Ok(stream
            .map(move |batch| {
                let batch = batch.map_err(|e| BatchError::Engine(format!("the Ballista cluster at {at}: {e}")))?;
                unpack(&batch, keep).map_err(|e| BatchError::Internal(e.to_string()))
            })
            .boxed())
    }
}

/// The kept columns, then the fields of the struct of scores as columns of their own.
fn unpack(batch: &RecordBatch, keep: usize) -> Result<RecordBatch, ClusterError> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().take(keep).map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batch.columns().iter().take(keep).cloned().collect();
    let scored = batch
        .column(keep)
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| ClusterError::Internal("keel_score did not answer a struct".into()))?;
    if scored.null_count() > 0 {
        return Err(ClusterError::Internal("keel_score answered a missing row".into()));
    }
    fields.extend(scored.fields().iter().map(|f| f.as_ref().clone()));
    columns.extend(scored.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| ClusterError::Internal(e.to_string()))
}

impl ScoreEngine for BallistaEngine {
    fn name(&self) -> String {
        format!("ballista://{}:{}", self.host, self.port)
    }

    fn score<'a>(
        &'a self,
        spec: &'a ScoreSpec,
        files: &'a [PathBuf],
    ) -> BoxFuture<'a, Result<ScoredBatches, BatchError>> {
        Box::pin(async move {
            self.run(spec, files).await.map_err(|e| match e {
                ClusterError::Invalid(m) => BatchError::Invalid(m),
                other => BatchError::Engine(other.to_string()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_is_a_ballista_scheduler_address() {
        let e = BallistaEngine::parse("ballista://127.0.0.1:50050", 4096).expect("parse");
        assert_eq!(e.name(), "ballista://127.0.0.1:50050");
        for bad in [
            "127.0.0.1:50050",
            "http://127.0.0.1:50050",
            "ballista://127.0.0.1",
            "ballista://:50050",
            "ballista://h:1/x",
        ] {
            let err = BallistaEngine::parse(bad, 1).expect_err(bad);
            assert!(err.to_string().contains("ballista://HOST:PORT"), "{bad}: {err}");
            assert_eq!(err.code(), "invalid");
        }
    }
}
