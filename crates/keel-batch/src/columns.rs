//! From table columns to model inputs, and from model outputs to table columns.

use std::sync::Arc;

use keel_lake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use keel_lake::arrow::compute::cast;
use keel_lake::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use keel_runtime::{DataType, IoSpec, Model, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::BatchError;

/// Which columns feed which input, which are kept: decided once, before any row is scored.
/// Serialisable: an engine ships it to the processes that score (keel-cluster's executors).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    inputs: Vec<InputPlan>,
    keep: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InputPlan {
    name: String,
    datatype: DataType,
    /// The columns, in the order of the input's last dimension.
    columns: Vec<String>,
    /// `[N]` rather than `[N, k]`.
    flat: bool,
}

impl Plan {
    pub(crate) fn new(
        inputs: &[IoSpec],
        schema: &Schema,
        features: &[String],
        keep: &[String],
    ) -> Result<Plan, BatchError> {
        let has = |c: &str| schema.field_with_name(c).is_ok();
        let mut plans = Vec::new();
        for input in inputs {
            if !matches!(
                input.datatype,
                DataType::Fp32 | DataType::Fp64 | DataType::Int64 | DataType::Int32
            ) {
                return Err(BatchError::Invalid(format!(
                    "input {:?} of the model is {:?}: batch scoring feeds numeric inputs (FP32, FP64, INT32, INT64) from columns",
                    input.name, input.datatype
                )));
            }
            let width = input.shape.get(1).copied();
            let flat = input.shape.len() == 1;
            let columns: Vec<String> = if !features.is_empty() && inputs.len() == 1 {
                features.to_vec()
            } else {
                match (flat, width) {
                    (true, _) | (false, Some(1)) if has(&input.name) => vec![input.name.clone()],
                    (false, Some(k)) if k > 0 => (0..k).map(|j| format!("{}_{j}", input.name)).collect(),
                    _ => vec![input.name.clone()],
                }
            };
            if let Some(k) = width.filter(|k| *k > 0 && !flat)
                && columns.len() != k as usize
            {
                return Err(BatchError::Invalid(format!(
                    "input {:?} takes {k} values per row but {} columns were given (--features)",
                    input.name,
                    columns.len()
                )));
            }
            plans.push(InputPlan {
                name: input.name.clone(),
                datatype: input.datatype,
                columns,
                flat,
            });
        }
        let mut missing: Vec<&str> = plans
            .iter()
            .flat_map(|p| p.columns.iter())
            .chain(keep.iter())
            .map(String::as_str)
            .filter(|c| !has(c))
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            return Err(BatchError::Invalid(format!(
                "the table has no column {}; it has {}. Name the model's inputs' columns with --features a,b,c or rename them (an [N, k] input INPUT reads INPUT_0..INPUT_{{k-1}})",
                missing.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", "),
                column_names(schema)
            )));
        }
        for column in plans.iter().flat_map(|p| p.columns.iter()) {
            let Ok(field) = schema.field_with_name(column) else {
                continue;
            };
            if !field.data_type().is_numeric() && *field.data_type() != ArrowType::Boolean {
                return Err(BatchError::Invalid(format!(
                    "column {column:?} is {} but feeds a numeric model input; cast it when you ingest the table",
                    field.data_type()
                )));
            }
        }
        Ok(Plan {
            inputs: plans,
            keep: keep.to_vec(),
        })
    }

    /// Every column the job reads: the inputs' then the kept ones.
    pub(crate) fn columns(&self) -> Vec<String> {
        let mut all: Vec<String> = self.inputs.iter().flat_map(|p| p.columns.iter().cloned()).collect();
        for k in &self.keep {
            if !all.contains(k) {
                all.push(k.clone());
            }
        }
        all
    }

    /// The columns feeding the model's inputs, input by input (no kept column).
    pub(crate) fn input_columns(&self) -> Vec<String> {
        self.inputs.iter().flat_map(|p| p.columns.iter().cloned()).collect()
    }

    /// The kept columns.
    pub(crate) fn keep(&self) -> &[String] {
        &self.keep
    }

    /// The same plan without kept columns.
    pub(crate) fn without_keep(&self) -> Plan {
        Plan {
            inputs: self.inputs.clone(),
            keep: Vec::new(),
        }
    }

    /// The model's outputs for one chunk of rows.
    pub(crate) fn score(&self, model: &Model, chunk: &RecordBatch) -> Result<Vec<(String, Tensor)>, BatchError> {
        let mut tensors = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            tensors.push((input.name.as_str(), tensor(input, chunk)?));
        }
        let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        Ok(model.run(&named, None)?)
    }

    /// The kept columns of `chunk` beside the outputs, one column per output value.
    pub(crate) fn output_batch(
        &self,
        chunk: &RecordBatch,
        outputs: Vec<(String, Tensor)>,
    ) -> Result<RecordBatch, BatchError> {
        let n = chunk.num_rows();
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for name in &self.keep {
            let index = chunk
                .schema()
                .index_of(name)
                .map_err(|e| BatchError::Internal(e.to_string()))?;
            fields.push(chunk.schema().field(index).clone());
            columns.push(chunk.column(index).clone());
        }
        for (name, tensor) in outputs {
            let width = match tensor.shape.as_slice() {
                [rows] if *rows as usize == n => 1,
                [rows, k] if *rows as usize == n => (*k).max(0) as usize,
                other => {
                    return Err(BatchError::Invalid(format!(
                        "output {name:?} has shape {other:?} for {n} rows; batch scoring writes outputs of shape [N] or [N, k]"
                    )));
                }
            };
            let flat = tensor.shape.len() == 1;
            for j in 0..width {
                let column = if flat { name.clone() } else { format!("{name}_{j}") };
                let array = column_of(&tensor.data, width, j).ok_or_else(|| {
                    BatchError::Invalid(format!(
                        "output {name:?} is {:?}, which a table column cannot hold",
                        tensor.data.datatype()
                    ))
                })?;
                fields.push(Field::new(column, array.data_type().clone(), false));
                columns.push(array);
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| BatchError::Internal(e.to_string()))
    }
}

/// Rows of `batches` in chunks of at most `rows`.
pub(crate) fn chunks(batches: &[RecordBatch], rows: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = rows.min(batch.num_rows() - offset);
            out.push(batch.slice(offset, len));
            offset += len;
        }
    }
    out
}

/// One input's tensor from its columns: row-major `[n, k]` (or `[n]`).
fn tensor(input: &InputPlan, chunk: &RecordBatch) -> Result<Tensor, BatchError> {
    let n = chunk.num_rows();
    let k = input.columns.len();
    let target = match input.datatype {
        DataType::Fp32 => ArrowType::Float32,
        DataType::Fp64 => ArrowType::Float64,
        DataType::Int32 => ArrowType::Int32,
        _ => ArrowType::Int64,
    };
    let mut cast_columns = Vec::with_capacity(k);
    for name in &input.columns {
        let column = chunk
            .column_by_name(name)
            .ok_or_else(|| BatchError::Invalid(format!("the table has no column {name:?}")))?;
        if column.null_count() > 0 {
            return Err(BatchError::Invalid(format!(
                "column {name:?} has {} missing values; fill or filter them before scoring",
                column.null_count()
            )));
        }
        cast_columns.push(cast(column, &target).map_err(|e| BatchError::Invalid(format!("column {name:?}: {e}")))?);
    }
    macro_rules! gather {
        ($array:ty, $variant:ident) => {{
            let typed: Vec<&[_]> = cast_columns
                .iter()
                .map(|c| {
                    c.as_any()
                        .downcast_ref::<$array>()
                        .expect("cast to the target type")
                        .values()
                        .as_ref()
                })
                .collect();
            TensorData::$variant(row_major(&typed, n))
        }};
    }
    let data = match input.datatype {
        DataType::Fp32 => gather!(Float32Array, Fp32),
        DataType::Fp64 => gather!(Float64Array, Fp64),
        DataType::Int32 => gather!(Int32Array, Int32),
        _ => gather!(Int64Array, Int64),
    };
    let shape = if input.flat {
        vec![n as i64]
    } else {
        vec![n as i64, k as i64]
    };
    Ok(Tensor { shape, data })
}

/// Rows of this many values at a time when interleaving columns: a block's reads (one run per
/// column) and writes stay in the first cache levels.
const BLOCK_ROWS: usize = 256;

/// `columns` (each at least `n` long) interleaved into a row-major `[n, columns.len()]` buffer.
/// By blocks of rows, column by column inside a block: each column is read sequentially and the
/// block being written stays in cache, instead of striding across every column per row.
fn row_major<T: Copy + Default>(columns: &[&[T]], n: usize) -> Vec<T> {
    let k = columns.len();
    let mut data = vec![T::default(); n * k];
    if k == 0 {
        return data;
    }
    for (block, out) in data.chunks_mut(BLOCK_ROWS * k).enumerate() {
        let start = block * BLOCK_ROWS;
        let rows = out.len() / k;
        for (j, column) in columns.iter().enumerate() {
            let values = &column[start..start + rows];
            for (row, value) in out.chunks_exact_mut(k).zip(values) {
                row[j] = *value;
            }
        }
    }
    data
}

/// Column `j` of a row-major `[n, width]` tensor.
fn column_of(data: &TensorData, width: usize, j: usize) -> Option<ArrayRef> {
    fn pick<T: Copy>(v: &[T], width: usize, j: usize) -> Vec<T> {
        v.iter().skip(j).step_by(width.max(1)).copied().collect()
    }
    Some(match data {
        TensorData::Fp32(v) => Arc::new(Float32Array::from(pick(v, width, j))),
        TensorData::Fp64(v) => Arc::new(Float64Array::from(pick(v, width, j))),
        TensorData::Int64(v) => Arc::new(Int64Array::from(pick(v, width, j))),
        TensorData::Int32(v) => Arc::new(Int32Array::from(pick(v, width, j))),
        TensorData::Bool(v) => Arc::new(BooleanArray::from(pick(v, width, j))),
        TensorData::Bytes(v) => Arc::new(StringArray::from(
            v.iter()
                .skip(j)
                .step_by(width.max(1))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>(),
        )),
        _ => return None,
    })
}

/// A run id safe to name in SQL and paths: letters, digits, `-`, `_`, `.`.
pub(crate) fn checked_run_id(id: &str) -> Result<String, BatchError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(BatchError::Invalid(format!(
            "run id {id:?}: use letters, digits, '-', '_' and '.' (at most 200)"
        )))
    }
}

/// The names of a table's columns, for an error that says what the table has.
pub(crate) fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Column `name` of `batch` cast to `to`, as the array type `A` (`what` the values are, for
/// the error).
fn cast_column<A: Array + Clone + 'static>(
    batch: &RecordBatch,
    name: &str,
    to: &ArrowType,
    what: &str,
) -> Result<A, BatchError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| BatchError::Internal(format!("column {name:?} vanished from the input")))?;
    let cast = cast(column, to).map_err(|e| BatchError::Invalid(format!("column {name:?}: {e}")))?;
    cast.as_any()
        .downcast_ref::<A>()
        .cloned()
        .ok_or_else(|| BatchError::Internal(format!("column {name:?} did not cast to {what}")))
}

/// A column of `batch` as strings (integers are written in decimal).
pub(crate) fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray, BatchError> {
    cast_column(batch, name, &ArrowType::Utf8, "strings")
}

/// Whether a column of this type holds text (plain or dictionary-encoded strings), as unit and
/// decision-id columns must (or integers).
pub(crate) fn is_text(dt: &ArrowType) -> bool {
    match dt {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => true,
        ArrowType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// A column of `batch` as float64.
pub(crate) fn float_column(batch: &RecordBatch, name: &str) -> Result<Float64Array, BatchError> {
    cast_column(batch, name, &ArrowType::Float64, "numbers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_interleave_into_rows_across_block_edges() {
        for n in [0, 1, BLOCK_ROWS - 1, BLOCK_ROWS, 2 * BLOCK_ROWS + 3] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let b: Vec<f32> = (0..n).map(|i| -(i as f32)).collect();
            let c: Vec<f32> = (0..n).map(|i| i as f32 * 10.0).collect();
            let data = row_major(&[a.as_slice(), b.as_slice(), c.as_slice()], n);
            assert_eq!(data.len(), 3 * n);
            for row in 0..n {
                assert_eq!(
                    &data[3 * row..3 * row + 3],
                    &[a[row], b[row], c[row]],
                    "row {row} of {n}"
                );
            }
        }
        assert!(row_major::<f64>(&[], 5).is_empty());
    }

    #[test]
    fn a_sliced_chunk_reads_its_own_rows() {
        let column: ArrayRef = Arc::new(Float32Array::from((0..1000).map(|i| i as f32).collect::<Vec<_>>()));
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x_0", ArrowType::Float32, false)])),
            vec![column],
        )
        .expect("batch");
        let chunk = &chunks(&[batch], 300)[2];
        let input = InputPlan {
            name: "x".into(),
            datatype: DataType::Fp32,
            columns: vec!["x_0".into()],
            flat: false,
        };
        let t = tensor(&input, chunk).expect("tensor");
        assert_eq!(t.shape, vec![300, 1]);
        match t.data {
            TensorData::Fp32(v) => assert_eq!((v[0], v[299]), (600.0, 899.0)),
            other => panic!("not FP32: {other:?}"),
        }
    }
}
