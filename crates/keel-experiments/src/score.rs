//! Scoring table rows with a model: the inverse of the prediction log's flattening. A table
//! whose columns are named as the log names inputs (`input_0 .. input_29` for an input
//! `input` of 30 values a row) is read back into the model's input tensors, the model runs,
//! and each row's score is taken the way a served answer's is. A live monitor scores its
//! reference sample this way, so that served scores are compared with what the model said on
//! the reference, not with whatever the first hour of traffic happened to look like. Served
//! answers are scored by [`output_scores`] too.

use keel_monitor::arrow::array::{Array, AsArray, RecordBatch};
use keel_monitor::arrow::compute::cast;
use keel_monitor::arrow::datatypes::{DataType as ArrowType, Float64Type, Int64Type};
use keel_runtime::{DataType, IoSpec, Model, Tensor, TensorData};

/// Rows handed to the model at a time: bounds the memory of one run.
const CHUNK_ROWS: usize = 4096;

/// The model's input tensors for the rows of `batch`. Fails, naming them, when columns are
/// missing or hold what the input cannot take.
pub fn input_tensors(inputs: &[IoSpec], batch: &RecordBatch) -> Result<Vec<(String, Tensor)>, String> {
    let rows = batch.num_rows();
    let schema = batch.schema();
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(inputs.len());
    for io in inputs {
        let width = match io.shape.as_slice() {
            [_] => 1,
            [_, w] if *w > 0 => *w as usize,
            shape => {
                return Err(format!(
                    "input {} has shape {shape:?}: only [batch] and [batch, width] inputs are read from a table",
                    io.name
                ));
            }
        };
        let names = keel_predlog::columns::input_columns(&io.name, width);
        if names.is_empty() {
            return Err(format!(
                "input {} is {width} values a row, wider than the log's {} columns",
                io.name,
                keel_predlog::columns::MAX_WIDTH
            ));
        }
        let columns: Vec<&dyn Array> = names
            .iter()
            .filter_map(|n| match schema.index_of(n) {
                Ok(i) => Some(batch.column(i).as_ref()),
                Err(_) => {
                    missing.push(n.clone());
                    None
                }
            })
            .collect();
        if columns.len() < names.len() {
            continue;
        }
        let data = interleave(io, &names, &columns, rows)?;
        let shape = if io.shape.len() == 1 {
            vec![rows as i64]
        } else {
            vec![rows as i64, width as i64]
        };
        out.push((io.name.clone(), Tensor { shape, data }));
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(8).map(String::as_str).collect();
        return Err(format!(
            "the table lacks {} input column(s) of the model: {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > shown.len() { ", ..." } else { "" }
        ));
    }
    Ok(out)
}

/// Row-major values of one input from its columns (column `j` is value `j` of each row).
fn interleave(io: &IoSpec, names: &[String], columns: &[&dyn Array], rows: usize) -> Result<TensorData, String> {
    let width = columns.len();
    let refuse = |name: &str, what: &str| {
        format!(
            "column {name} cannot feed input {} ({}): {what}",
            io.name,
            io.datatype.as_str()
        )
    };
    let cast_to = |name: &str, array: &dyn Array, to: &ArrowType| {
        cast(array, to).map_err(|e| refuse(name, &format!("not convertible ({e})")))
    };
    Ok(match io.datatype {
        DataType::Fp32 | DataType::Fp64 => {
            let mut v = vec![0f64; rows * width];
            for (j, (name, array)) in names.iter().zip(columns).enumerate() {
                let a = cast_to(name, *array, &ArrowType::Float64)?;
                let a = a.as_primitive::<Float64Type>();
                for i in 0..rows {
                    v[i * width + j] = if a.is_null(i) { f64::NAN } else { a.value(i) };
                }
            }
            if io.datatype == DataType::Fp32 {
                TensorData::Fp32(v.into_iter().map(|x| x as f32).collect())
            } else {
                TensorData::Fp64(v)
            }
        }
        DataType::Int64 | DataType::Int32 => {
            let mut v = vec![0i64; rows * width];
            for (j, (name, array)) in names.iter().zip(columns).enumerate() {
                let a = cast_to(name, *array, &ArrowType::Int64)?;
                if a.null_count() > 0 {
                    return Err(refuse(
                        name,
                        "it has missing values, which an integer input cannot take",
                    ));
                }
                let a = a.as_primitive::<Int64Type>();
                for i in 0..rows {
                    v[i * width + j] = a.value(i);
                }
            }
            if io.datatype == DataType::Int32 {
                let narrowed: Result<Vec<i32>, _> = v.into_iter().map(i32::try_from).collect();
                TensorData::Int32(narrowed.map_err(|_| refuse(&names[0], "values outside INT32"))?)
            } else {
                TensorData::Int64(v)
            }
        }
        DataType::Bytes => {
            let mut v = vec![Vec::new(); rows * width];
            for (j, (name, array)) in names.iter().zip(columns).enumerate() {
                let a = cast_to(name, *array, &ArrowType::Utf8)?;
                let a = a.as_string::<i32>();
                for i in 0..rows {
                    if a.is_null(i) {
                        return Err(refuse(name, "it has missing values, which a string input cannot take"));
                    }
                    v[i * width + j] = a.value(i).as_bytes().to_vec();
                }
            }
            TensorData::Bytes(v)
        }
        other => {
            return Err(format!(
                "input {} is {}, which keel does not read from a table (FP32, FP64, INT64, INT32 and BYTES are)",
                io.name,
                other.as_str()
            ));
        }
    })
}

/// The scores of one answer: every value of the scored output (for bounds and NaN checks) and,
/// per row, its last value (the positive class's probability for a classifier).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// The output scored, and its values per row.
    pub output: String,
    pub width: usize,
    pub values: Vec<f64>,
    pub rows: Vec<f64>,
}

/// A table's rows scored by a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TableScores {
    /// The output scored, and its values per row.
    pub output: String,
    pub width: usize,
    /// One per row, in table order.
    pub scores: Vec<f64>,
}

impl TableScores {
    /// The prediction log's column holding the same score of served rows.
    pub fn log_column(&self) -> Option<String> {
        keel_predlog::columns::output_columns(&self.output, self.width).pop()
    }
}

/// The scores of a model's answer: the output named `output`, or the first floating-point one
/// (in the model's output order). `None` when there is none. Served answers, output guardrails
/// and reference scoring all read scores here, so they agree.
pub fn output_scores<'a>(
    outputs: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    output: Option<&str>,
) -> Option<Scores> {
    let mut outputs = outputs.into_iter();
    let (name, tensor) = match output {
        Some(name) => outputs.find(|(n, _)| *n == name)?,
        None => {
            outputs.find(|(_, t)| matches!(t.data, TensorData::Fp32(_) | TensorData::Fp64(_)) && !t.data.is_empty())?
        }
    };
    let values: Vec<f64> = (0..tensor.data.len())
        .map(|i| tensor.data.value_f64(i).unwrap_or(f64::NAN))
        .collect();
    let width = match tensor.shape.as_slice() {
        [_, .., w] if *w > 0 => *w as usize,
        _ => 1,
    };
    let rows = values.chunks(width).filter_map(|row| row.last().copied()).collect();
    Some(Scores {
        output: name.to_owned(),
        width,
        values,
        rows,
    })
}

/// Scores every row of `batches` with `model` (in chunks), the way served answers are scored.
pub fn score_batches(model: &Model, batches: &[RecordBatch], output: Option<&str>) -> Result<TableScores, String> {
    let mut out = TableScores {
        output: String::new(),
        width: 1,
        scores: Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum()),
    };
    for batch in batches {
        let mut at = 0;
        while at < batch.num_rows() {
            let chunk = batch.slice(at, CHUNK_ROWS.min(batch.num_rows() - at));
            at += chunk.num_rows();
            let tensors = input_tensors(model.inputs(), &chunk)?;
            let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
            let outputs = model.run(&named, None).map_err(|e| format!("the model failed: {e}"))?;
            let scored =
                output_scores(outputs.iter().map(|(n, t)| (n.as_str(), t)), output).ok_or_else(|| match output {
                    Some(name) => format!("the model has no output {name}"),
                    None => "the model has no floating-point output to take a score from".to_string(),
                })?;
            if scored.rows.len() != chunk.num_rows() {
                return Err(format!(
                    "the model answered {} scores for {} rows: its scores are not one a row",
                    scored.rows.len(),
                    chunk.num_rows()
                ));
            }
            (out.output, out.width) = (scored.output, scored.width);
            out.scores.extend(scored.rows);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_monitor::arrow::array::{Float64Array, Int64Array, StringArray};
    use keel_monitor::arrow::datatypes::{Field, Schema};
    use keel_runtime::IoKind;

    use super::*;

    fn io(name: &str, datatype: DataType, shape: &[i64]) -> IoSpec {
        IoSpec {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
            kind: IoKind::Tensor,
        }
    }

    #[test]
    fn scores_take_the_first_float_output_and_the_last_column_per_row() {
        let label = Tensor {
            shape: vec![2],
            data: TensorData::Int64(vec![1, 0]),
        };
        let probabilities = Tensor {
            shape: vec![2, 2],
            data: TensorData::Fp32(vec![0.25, 0.75, 0.9, 0.1]),
        };
        let outputs = [("label", &label), ("probabilities", &probabilities)];
        let s = output_scores(outputs, None).expect("scores");
        assert_eq!(s.values, vec![0.25, 0.75, 0.9f32 as f64, 0.1f32 as f64]);
        assert_eq!(s.rows, vec![0.75, 0.1f32 as f64]);
        assert!(output_scores(outputs, Some("nope")).is_none());
        assert_eq!(
            output_scores(outputs, Some("label")).expect("named").rows,
            vec![1.0, 0.0]
        );
        let nan = Tensor {
            shape: vec![1, 1],
            data: TensorData::Fp64(vec![f64::NAN]),
        };
        assert!(output_scores([("variable", &nan)], None).expect("scores").values[0].is_nan());
        assert!(output_scores([("label", &label)], None).is_none(), "no float output");
    }

    #[test]
    fn table_columns_become_row_major_input_tensors() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x_1", ArrowType::Float64, true),
            Field::new("x_0", ArrowType::Int64, false),
            Field::new("city", ArrowType::Utf8, false),
            Field::new("n", ArrowType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(0.5), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["paris", "lyon"])),
                Arc::new(Float64Array::from(vec![3.0, 4.0])),
            ],
        )
        .expect("batch");
        let inputs = [
            io("x", DataType::Fp32, &[-1, 2]),
            io("city", DataType::Bytes, &[-1, 1]),
            io("n", DataType::Int64, &[-1]),
        ];
        let t = input_tensors(&inputs, &batch).expect("tensors");
        assert_eq!(t[0].0, "x");
        assert_eq!(t[0].1.shape, vec![2, 2]);
        let TensorData::Fp32(x) = &t[0].1.data else {
            panic!("fp32")
        };
        assert_eq!(x[..3], [1.0, 0.5, 2.0]);
        assert!(x[3].is_nan(), "a null is a missing value");
        assert_eq!(
            t[1].1.data,
            TensorData::Bytes(vec![b"paris".to_vec(), b"lyon".to_vec()])
        );
        assert_eq!(
            t[2].1,
            Tensor {
                shape: vec![2],
                data: TensorData::Int64(vec![3, 4])
            }
        );

        let err = input_tensors(&[io("y", DataType::Fp32, &[-1, 3])], &batch).expect_err("missing");
        assert!(
            err.contains("lacks 3 input column(s)") && err.contains("y_0, y_1, y_2"),
            "{err}"
        );
        let err = input_tensors(&[io("x", DataType::Int64, &[-1, 2])], &batch).expect_err("null int");
        assert!(err.contains("x_1") && err.contains("missing values"), "{err}");
        let err = input_tensors(&[io("x", DataType::Fp32, &[-1, 2, 2])], &batch).expect_err("3-d");
        assert!(err.contains("only [batch] and [batch, width]"), "{err}");
    }
}
