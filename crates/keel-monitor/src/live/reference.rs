//! The reference a live monitor compares with: a uniform sample of a table, profiled per column.

use std::sync::Arc;

use arrow::array::RecordBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{MonitorError, Result};
use crate::read::{self, CategoryCounts, NumericValues};
use crate::report::ColumnKind;

/// One column of the reference, ready to compare with.
#[derive(Debug, Clone)]
pub(super) enum RefColumn {
    Numeric {
        values: Arc<NumericValues>,
        min: f64,
        max: f64,
    },
    Categorical {
        counts: Arc<CategoryCounts>,
    },
}

/// The reference a deployment is compared with: a uniform sample of its training table.
#[derive(Debug, Clone)]
pub struct Reference {
    pub(super) names: Vec<String>,
    pub(super) columns: Vec<RefColumn>,
    pub(super) rows: u64,
    /// Rows of the table before sampling.
    table_rows: u64,
}

impl Reference {
    /// Builds the reference from record batches (every column of the batches), keeping a
    /// uniform sample of at most `max_rows` rows (`seed` makes the sample reproducible).
    pub fn from_batches(batches: &[RecordBatch], max_rows: usize, seed: u64) -> Result<Reference> {
        let Some(first) = batches.first() else {
            return Err(MonitorError::EmptyReference);
        };
        let schema = first.schema();
        let table_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if table_rows == 0 {
            return Err(MonitorError::EmptyReference);
        }
        let sampled = sample_batches(batches, max_rows, seed)?;
        let mut names = Vec::new();
        let mut columns = Vec::new();
        for (c, field) in schema.fields().iter().enumerate() {
            let kind = read::kind_of(field.data_type()).ok_or_else(|| MonitorError::UnsupportedType {
                column: field.name().clone(),
                data_type: field.data_type().to_string(),
            })?;
            let mut numeric = NumericValues::default();
            let mut categorical = CategoryCounts::default();
            for batch in &sampled {
                let part = batch.column(c);
                match kind {
                    ColumnKind::Numeric => read::push_numeric_array(&mut numeric, part.as_ref()),
                    ColumnKind::Categorical => read::push_categorical_array(&mut categorical, part.as_ref()),
                }
                .map_err(|e| MonitorError::Arrow {
                    column: field.name().clone(),
                    message: e.to_string(),
                })?;
            }
            let column = match kind {
                ColumnKind::Numeric => {
                    if numeric.values.is_empty() {
                        return Err(MonitorError::EmptyColumn {
                            column: field.name().clone(),
                            side: "reference",
                        });
                    }
                    keel_stats::sort_f64(&mut numeric.values);
                    let (min, max) = (numeric.values[0], numeric.values[numeric.values.len() - 1]);
                    RefColumn::Numeric {
                        values: Arc::new(numeric),
                        min,
                        max,
                    }
                }
                ColumnKind::Categorical => RefColumn::Categorical {
                    counts: Arc::new(categorical),
                },
            };
            names.push(field.name().clone());
            columns.push(column);
        }
        Ok(Reference {
            names,
            rows: sampled.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
            table_rows: table_rows as u64,
            columns,
        })
    }

    /// Column names, in the order [`LiveMonitor::observe_row`] expects values.
    pub fn columns(&self) -> &[String] {
        &self.names
    }

    /// Rows kept (the sample).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows of the table the sample was drawn from.
    pub fn table_rows(&self) -> u64 {
        self.table_rows
    }
}

/// A uniform sample of at most `max_rows` rows of `batches`, in table order (`seed` makes it
/// reproducible); the batches themselves when they hold no more than that.
pub fn sample_batches(batches: &[RecordBatch], max_rows: usize, seed: u64) -> Result<Vec<RecordBatch>> {
    let table_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let max_rows = max_rows.max(1);
    if table_rows <= max_rows {
        return Ok(batches.to_vec());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = rand::seq::index::sample(&mut rng, table_rows, max_rows).into_vec();
    keep.sort_unstable();
    let mut out = Vec::with_capacity(batches.len());
    let (mut offset, mut next) = (0usize, 0usize);
    for batch in batches {
        let n = batch.num_rows();
        let start = next;
        while next < keep.len() && keep[next] < offset + n {
            next += 1;
        }
        if next > start {
            let local: arrow::array::UInt32Array = keep[start..next].iter().map(|i| (i - offset) as u32).collect();
            let taken = arrow::compute::take_record_batch(batch, &local).map_err(|e| MonitorError::Arrow {
                column: "(sampling the reference)".into(),
                message: e.to_string(),
            })?;
            out.push(taken);
        }
        offset += n;
    }
    Ok(out)
}
