//! Where a scoring run's rows are scored: in this process (the default, [`crate::score`]) or by
//! a [`ScoreEngine`] that runs the same scoring elsewhere, e.g. a DataFusion Ballista cluster
//! (keel-cluster). Either way the outputs come back here and are written by the same code: one
//! commit, the same run id, the same lineage.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use keel_lake::arrow::array::{ArrayRef, Float64Array, RecordBatch};
use keel_lake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use keel_runtime::Model;
use serde::{Deserialize, Serialize};

use crate::BatchError;
use crate::columns::Plan;

/// Rows scored by an engine: the kept columns, then the model's output columns.
pub type ScoredBatches = BoxStream<'static, Result<RecordBatch, BatchError>>;

/// Runs the scoring of a run somewhere else than in this process.
pub trait ScoreEngine: Send + Sync {
    /// What to call it in reports: `ballista://127.0.0.1:50050`.
    fn name(&self) -> String;

    /// Scores every row of the Parquet `files` (the data files of the input table's version)
    /// as `spec` says, streaming the kept columns then [`ScoreSpec::output_schema`]'s columns.
    fn score<'a>(
        &'a self,
        spec: &'a ScoreSpec,
        files: &'a [PathBuf],
    ) -> BoxFuture<'a, Result<ScoredBatches, BatchError>>;
}

/// What scoring a run means, serialisable so that an engine can ship it to the processes that
/// score: the model version (loaded there from the registry by name and version), which
/// columns feed which input, which are kept, and the output columns the model writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreSpec {
    pub model: String,
    pub model_version: i64,
    plan: Plan,
    outputs: Vec<(String, OutputType)>,
}

/// The Arrow types an output column can have (what [`Plan::output_batch`] writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum OutputType {
    Float32,
    Float64,
    Int64,
    Int32,
    Boolean,
    Utf8,
}

impl OutputType {
    fn of(t: &ArrowType) -> Option<OutputType> {
        Some(match t {
            ArrowType::Float32 => OutputType::Float32,
            ArrowType::Float64 => OutputType::Float64,
            ArrowType::Int64 => OutputType::Int64,
            ArrowType::Int32 => OutputType::Int32,
            ArrowType::Boolean => OutputType::Boolean,
            ArrowType::Utf8 => OutputType::Utf8,
            _ => return None,
        })
    }

    fn arrow(self) -> ArrowType {
        match self {
            OutputType::Float32 => ArrowType::Float32,
            OutputType::Float64 => ArrowType::Float64,
            OutputType::Int64 => ArrowType::Int64,
            OutputType::Int32 => ArrowType::Int32,
            OutputType::Boolean => ArrowType::Boolean,
            OutputType::Utf8 => ArrowType::Utf8,
        }
    }
}

impl ScoreSpec {
    /// The spec of `plan` with `model`: its output columns found by scoring one row of zeros
    /// (free output dimensions are only known from an answer).
    pub(crate) fn probe(
        model_name: &str,
        model_version: i64,
        model: &Model,
        plan: &Plan,
    ) -> Result<ScoreSpec, BatchError> {
        let inputs = plan.input_columns();
        let fields: Vec<Field> = inputs
            .iter()
            .map(|c| Field::new(c, ArrowType::Float64, false))
            .collect();
        let columns: Vec<ArrayRef> = inputs
            .iter()
            .map(|_| Arc::new(Float64Array::from(vec![0.0])) as ArrayRef)
            .collect();
        let row = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| BatchError::Internal(e.to_string()))?;
        let bare = plan.without_keep();
        let scored = bare.output_batch(&row, bare.score(model, &row)?)?;
        let mut outputs = Vec::new();
        for field in scored.schema().fields() {
            let t = OutputType::of(field.data_type()).ok_or_else(|| {
                BatchError::Invalid(format!(
                    "output column {:?} is {}, which the cluster engine does not carry; score in process",
                    field.name(),
                    field.data_type()
                ))
            })?;
            outputs.push((field.name().clone(), t));
        }
        Ok(ScoreSpec {
            model: model_name.to_owned(),
            model_version,
            plan: plan.clone(),
            outputs,
        })
    }

    /// The columns feeding the model, in the order [`ScoreSpec::score`] expects them.
    pub fn input_columns(&self) -> Vec<String> {
        self.plan.input_columns()
    }

    /// The input columns copied to the output.
    pub fn keep(&self) -> &[String] {
        self.plan.keep()
    }

    /// The model's output columns, in order.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.outputs
                .iter()
                .map(|(name, t)| Field::new(name, t.arrow(), false))
                .collect::<Vec<_>>(),
        ))
    }

    /// Scores `inputs` (holding [`ScoreSpec::input_columns`]) with `model`: the output columns
    /// only. Refused if the model answers other columns than the spec names.
    pub fn score(&self, model: &Model, inputs: &RecordBatch) -> Result<RecordBatch, BatchError> {
        let bare = self.plan.without_keep();
        let scored = bare.output_batch(inputs, bare.score(model, inputs)?)?;
        let expected = self.output_schema();
        let same = scored.num_columns() == expected.fields().len()
            && scored
                .schema()
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Err(BatchError::Invalid(format!(
                "model {} version {} answered columns {:?}, not the {:?} the run was planned with",
                self.model,
                self.model_version,
                scored.schema().fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
                expected.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            )));
        }
        RecordBatch::try_new(expected, scored.columns().to_vec()).map_err(|e| BatchError::Internal(e.to_string()))
    }
}
