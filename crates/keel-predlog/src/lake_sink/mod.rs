//! The lake sink: entries become Arrow record batches appended to Delta tables, partitioned by
//! date (UTC).
//!
//! Prediction tables have fixed columns (`ts`, `date`, `prediction_id`, `row`, `request_id`,
//! `model`, `version`, `deployment`, `variant`, `decision_id`, `shadow`, `latency_us`), then one
//! column per input feature and per output value, flattened from the tensors: a `[N, 4]` input
//! `x` gives `x_0` .. `x_3`, a `[N]` or `[N, 1]` input gives `x`; outputs get an `out_` prefix
//! (`out_label`, `out_probabilities_0`, ...). Numbers of every type are stored as float64 (so
//! a model version that changes an integer type to a float keeps its column), BYTES as strings,
//! BOOL as booleans. What does not flatten (more than [`MAX_WIDTH`] values per row, or a
//! column already used by another type) goes to the JSON column `extra`.
//!
//! A new model version with other inputs or outputs adds its columns to the table (older rows
//! read them as null; columns it lacks are null in its rows).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use keel_lake::Lake;
use keel_lake::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use keel_lake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

pub use crate::columns::{FIXED, MAX_WIDTH, input_columns};
use crate::columns::{base_name, flat_names};
use crate::encoded::{Kind, PredictionView, TensorView, Values, view_encoded};
use crate::record::{DecisionRecord, Entry, FeedbackRecord, LABELS_TABLE, LabelRecord};
use crate::writer::{Sink, TableBatch};
use crate::{PredlogError, Result};

/// Versions of a log table kept readable (for time travel) after compaction.
const COMPACT_KEEP_HOURS: u64 = 168;

/// The partition column of every log table.
pub const PARTITION: &str = "date";

/// Writes log entries into a lake, and applies retention.
pub struct LakeSink {
    lake: Lake,
    retention_days: Option<u32>,
    /// One open appender per table (the writer thread is the only caller).
    appenders: tokio::sync::Mutex<HashMap<String, keel_lake::Appender>>,
}

impl LakeSink {
    pub fn new(lake: Lake, retention_days: Option<u32>) -> LakeSink {
        LakeSink {
            lake,
            retention_days,
            appenders: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }
}

#[async_trait::async_trait]
impl Sink for LakeSink {
    async fn write(&self, share: &TableBatch<'_>) -> Result<()> {
        let batch = to_batch(share)?;
        self.append(share.table, batch).await
    }

    async fn write_labels(&self, labels: &[LabelRecord]) -> Result<()> {
        let batch = labels_batch(labels)?;
        self.append(LABELS_TABLE, batch).await
    }

    async fn maintain(&self) -> Result<()> {
        if let Some(days) = self.retention_days {
            crate::retention::apply(&self.lake, days, chrono::Utc::now()).await?;
        }
        // One file per table per flush adds up: compact what this writer wrote, keeping a
        // week of versions readable.
        let mut appenders = self.appenders.lock().await;
        for (table, appender) in appenders.iter_mut() {
            match self.lake.compact(table, None, Some(COMPACT_KEEP_HOURS)).await {
                Ok(r) if r.changed => tracing::info!(
                    table,
                    files_removed = r.files_removed,
                    files_added = r.files_added,
                    "log table compacted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(table, error = %e, "log table not compacted"),
            }
            // Retention and compaction wrote new versions: start from them.
            appender.reopen();
        }
        Ok(())
    }
}

impl LakeSink {
    async fn append(&self, table: &str, batch: RecordBatch) -> Result<()> {
        let mut appenders = self.appenders.lock().await;
        let appender = appenders
            .entry(table.to_owned())
            .or_insert_with(|| self.lake.appender(table, &[PARTITION]));
        appender.append(vec![batch]).await?;
        Ok(())
    }
}

fn date_of(ts_us: i64) -> i32 {
    let days = ts_us.div_euclid(86_400_000_000);
    i32::try_from(days).unwrap_or(0)
}

/// Days since 1970-01-01 of a calendar date (the Arrow Date32 encoding).
pub fn date32(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - 719_163
}

fn ts_field() -> Field {
    Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| PredlogError::Sink(format!("building a log batch: {e}")))
}

fn labels_batch(labels: &[LabelRecord]) -> Result<RecordBatch> {
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut date = Date32Builder::new();
    let mut id = StringBuilder::new();
    let mut row = Int64Builder::new();
    let mut label = Float64Builder::new();
    for l in labels {
        ts.append_value(l.ts_us);
        date.append_value(date_of(l.ts_us));
        id.append_value(&l.prediction_id);
        row.append_value(l.row);
        label.append_value(l.label);
    }
    batch(
        vec![
            ts_field(),
            Field::new("date", DataType::Date32, false),
            Field::new("prediction_id", DataType::Utf8, false),
            Field::new("row", DataType::Int64, false),
            Field::new("label", DataType::Float64, false),
        ],
        vec![
            Arc::new(ts.finish()),
            Arc::new(date.finish()),
            Arc::new(id.finish()),
            Arc::new(row.finish()),
            Arc::new(label.finish()),
        ],
    )
}

/// One record batch for one table's share: all decisions, all feedback, or all predictions
/// (records and encoded).
pub fn to_batch(share: &TableBatch<'_>) -> Result<RecordBatch> {
    let entries = share.entries;
    if !share.encoded.is_empty() {
        let records = entries.iter().filter_map(|e| e.prediction().map(Ok));
        let encoded = share.encoded.iter().map(|r| view_encoded(r));
        return predictions_batch(records.chain(encoded), share.rows);
    }
    match entries.first() {
        Some(Entry::Decision(_)) => decisions_batch(entries.iter().filter_map(|e| match e {
            Entry::Decision(d) => Some(d),
            _ => None,
        })),
        Some(Entry::Feedback(_)) => feedback_batch(entries.iter().filter_map(|e| match e {
            Entry::Feedback(f) => Some(f),
            _ => None,
        })),
        Some(Entry::Prediction(_)) | None => {
            predictions_batch(entries.iter().filter_map(|e| e.prediction().map(Ok)), share.rows)
        }
    }
}

fn decisions_batch<'a>(items: impl Iterator<Item = &'a DecisionRecord>) -> Result<RecordBatch> {
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut date = Date32Builder::new();
    let (mut id, mut dep, mut var, mut unit) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut p = Float64Builder::new();
    let (mut pv, mut rev) = (Int64Builder::new(), Int64Builder::new());
    let mut control = BooleanBuilder::new();
    for d in items {
        ts.append_value(d.ts_us);
        date.append_value(date_of(d.ts_us));
        id.append_value(&d.decision_id);
        dep.append_value(&d.deployment);
        var.append_value(&d.variant);
        unit.append_option(d.unit.as_deref());
        p.append_value(d.propensity);
        pv.append_value(d.policy_version);
        rev.append_value(d.revision);
        control.append_value(d.control);
    }
    batch(
        vec![
            ts_field(),
            Field::new("date", DataType::Date32, false),
            Field::new("decision_id", DataType::Utf8, false),
            Field::new("deployment", DataType::Utf8, false),
            Field::new("variant", DataType::Utf8, false),
            Field::new("unit", DataType::Utf8, true),
            Field::new("propensity", DataType::Float64, false),
            Field::new("policy_version", DataType::Int64, false),
            Field::new("revision", DataType::Int64, false),
            Field::new("control", DataType::Boolean, false),
        ],
        vec![
            Arc::new(ts.finish()),
            Arc::new(date.finish()),
            Arc::new(id.finish()),
            Arc::new(dep.finish()),
            Arc::new(var.finish()),
            Arc::new(unit.finish()),
            Arc::new(p.finish()),
            Arc::new(pv.finish()),
            Arc::new(rev.finish()),
            Arc::new(control.finish()),
        ],
    )
}

fn feedback_batch<'a>(items: impl Iterator<Item = &'a FeedbackRecord>) -> Result<RecordBatch> {
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut date = Date32Builder::new();
    let (mut id, mut dep) = (StringBuilder::new(), StringBuilder::new());
    let mut r = Float64Builder::new();
    for f in items {
        ts.append_value(f.ts_us);
        date.append_value(date_of(f.ts_us));
        id.append_value(&f.decision_id);
        dep.append_value(&f.deployment);
        r.append_value(f.reward);
    }
    batch(
        vec![
            ts_field(),
            Field::new("date", DataType::Date32, false),
            Field::new("decision_id", DataType::Utf8, false),
            Field::new("deployment", DataType::Utf8, false),
            Field::new("reward", DataType::Float64, false),
        ],
        vec![
            Arc::new(ts.finish()),
            Arc::new(date.finish()),
            Arc::new(id.finish()),
            Arc::new(dep.finish()),
            Arc::new(r.finish()),
        ],
    )
}

/// A flattened feature or output column, filled row by row (nulls where a row has no value).
enum Col {
    Num(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl Col {
    fn len(&self) -> usize {
        match self {
            Col::Num(b) => b.len(),
            Col::Bool(b) => b.len(),
            Col::Str(b) => b.len(),
        }
    }

    fn pad_to(&mut self, n: usize) {
        let missing = n.saturating_sub(self.len());
        match self {
            Col::Num(b) => b.append_nulls(missing),
            Col::Bool(b) => b.append_nulls(missing),
            Col::Str(b) => b.append_nulls(missing),
        }
    }

    /// A column sized for `rows` rows (text: 16 bytes a value to start).
    fn new(kind: Kind, rows: usize) -> Col {
        match kind {
            Kind::Bool => Col::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Text => Col::Str(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::Number => Col::Num(Float64Builder::with_capacity(rows)),
        }
    }

    fn same_kind(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Col::Num(_), Kind::Number) | (Col::Bool(_), Kind::Bool) | (Col::Str(_), Kind::Text)
        )
    }

    /// Appends value `i` (the caller checked the kind).
    fn push(&mut self, values: &Values<'_>, i: usize) {
        match self {
            Col::Num(b) => b.append_option(values.f64_at(i)),
            Col::Bool(b) => b.append_option(values.bool_at(i)),
            Col::Str(b) => b.append_option(values.bytes_at(i).map(String::from_utf8_lossy)),
        }
    }

    fn finish(self) -> (DataType, ArrayRef) {
        match self {
            Col::Num(mut b) => (DataType::Float64, Arc::new(b.finish())),
            Col::Bool(mut b) => (DataType::Boolean, Arc::new(b.finish())),
            Col::Str(mut b) => (DataType::Utf8, Arc::new(b.finish())),
        }
    }
}

fn json_value(values: &Values<'_>, i: usize) -> serde_json::Value {
    match values.kind() {
        Kind::Bool => values.bool_at(i).map_or(serde_json::Value::Null, Into::into),
        Kind::Text => values
            .bytes_at(i)
            .map_or(serde_json::Value::Null, |b| String::from_utf8_lossy(b).into()),
        Kind::Number => values
            .f64_at(i)
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
    }
}

struct Flattener {
    /// Rows in the batch being built: new columns are sized for it.
    rows: usize,
    names: Vec<String>,
    cols: Vec<Col>,
    index: HashMap<String, usize>,
}

impl Flattener {
    /// The column for `name` and `kind`, created if new; `None` if the name is taken by
    /// another kind.
    fn column(&mut self, name: String, kind: Kind, rows_so_far: usize) -> Option<usize> {
        let at = match self.index.get(&name) {
            Some(&i) => i,
            None => {
                let i = self.cols.len();
                let mut col = Col::new(kind, self.rows);
                col.pad_to(rows_so_far);
                self.cols.push(col);
                self.index.insert(name.clone(), i);
                self.names.push(name);
                i
            }
        };
        self.cols[at].same_kind(kind).then_some(at)
    }
}

/// Where one tensor of a record goes.
struct Slot<'a> {
    is_output: bool,
    name: &'a str,
    kind: Kind,
    /// Values per row.
    width: usize,
    /// Per value of a row: its column, or (the column name being taken by another kind) the
    /// key it gets in `extra`. Empty: the whole row of this tensor goes to `extra`.
    cols: Vec<std::result::Result<usize, String>>,
    /// Numbers that all have a column: those columns, for the fast path.
    numeric: Option<Vec<usize>>,
}

impl<'a> Slot<'a> {
    /// `claimed`: the columns earlier tensors of the same record fill (a column takes one
    /// value a row: a second tensor whose flattened name collides goes to `extra`).
    fn new(flat: &mut Flattener, claimed: &mut Vec<bool>, tensor: &TensorView<'a>, rows: usize, n: usize) -> Slot<'a> {
        let (is_output, name) = (tensor.is_output, tensor.name);
        let len = tensor.values.len();
        let width = len.checked_div(rows).unwrap_or(0);
        let kind = tensor.values.kind();
        let base = base_name(name, is_output);
        let names = if width == 1 || (width <= MAX_WIDTH && width * rows == len) {
            flat_names(&base, width)
        } else {
            Vec::new()
        };
        let cols = names
            .into_iter()
            .map(|col_name| match flat.column(col_name.clone(), kind, n) {
                Some(c) if !claimed.get(c).copied().unwrap_or(false) => {
                    claimed.resize(flat.cols.len(), false);
                    claimed[c] = true;
                    Ok(c)
                }
                _ => Err(col_name),
            })
            .collect::<Vec<_>>();
        let numeric = (kind == Kind::Number && width > 0 && cols.len() == width)
            .then(|| {
                cols.iter()
                    .map(|c| c.as_ref().ok().copied())
                    .collect::<Option<Vec<usize>>>()
            })
            .flatten();
        Slot {
            is_output,
            name,
            kind,
            width,
            cols,
            numeric,
        }
    }
}

/// `rows`: the rows the items hold, so that every builder is allocated once, at its size (a
/// batch is tens of thousands of rows: growing 50 columns by doubling copies each several times).
fn predictions_batch<'a>(items: impl Iterator<Item = Result<PredictionView<'a>>>, rows: usize) -> Result<RecordBatch> {
    let text = |bytes_per_value: usize| StringBuilder::with_capacity(rows, rows * bytes_per_value);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
    let mut date = Date32Builder::with_capacity(rows);
    let (mut pid, mut row, mut rid, mut model, mut version) = (
        text(36),
        Int64Builder::with_capacity(rows),
        StringBuilder::new(),
        text(16),
        Int64Builder::with_capacity(rows),
    );
    let (mut dep, mut var, mut did, mut shadow, mut latency, mut extra) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        BooleanBuilder::with_capacity(rows),
        Int64Builder::with_capacity(rows),
        StringBuilder::new(),
    );
    let mut flat = Flattener {
        rows,
        names: Vec::new(),
        cols: Vec::new(),
        index: HashMap::new(),
    };
    let mut n = 0usize;
    // Where each tensor's values go, worked out once and reused while consecutive records
    // have the same tensors (names, widths, kinds): no per-row or per-value name building.
    let mut plan: Vec<Slot<'a>> = Vec::new();
    // Whether the plan fills every column there is, so no row needs padding with nulls.
    let mut fills_all = false;
    for p in items {
        let p = p?;
        let rows = p.rows();
        let same = plan.len() == p.tensors.len()
            && plan.iter().zip(&p.tensors).all(|(slot, t)| {
                slot.is_output == t.is_output
                    && slot.name == t.name
                    && slot.kind == t.values.kind()
                    && slot.width == t.values.len().checked_div(rows).unwrap_or(0)
            });
        if !same {
            let mut claimed = Vec::new();
            plan = p
                .tensors
                .iter()
                .map(|t| Slot::new(&mut flat, &mut claimed, t, rows, n))
                .collect();
            let filled: usize = plan.iter().map(|s| s.cols.iter().filter(|c| c.is_ok()).count()).sum();
            fills_all = filled == flat.cols.len();
        }
        let routing = p.routing.as_ref();
        for r in 0..rows {
            ts.append_value(p.ts_us);
            date.append_value(date_of(p.ts_us));
            pid.append_value(p.prediction_id);
            row.append_value(r as i64);
            rid.append_option(p.request_id);
            model.append_value(p.model);
            version.append_value(p.version);
            dep.append_option(routing.map(|x| x.deployment));
            var.append_option(routing.map(|x| x.variant));
            did.append_option(routing.map(|x| x.decision_id));
            shadow.append_value(routing.is_some_and(|x| x.shadow));
            latency.append_value(p.latency_us);
            let mut leftovers = serde_json::Map::new();
            for (slot, tensor) in plan.iter().zip(&p.tensors) {
                let width = slot.width;
                if let Some(numeric) = &slot.numeric {
                    let cols = &mut flat.cols;
                    let fast = tensor.values.numbers(r * width, width, |j, v| {
                        if let Col::Num(b) = &mut cols[numeric[j]] {
                            b.append_value(v);
                        }
                    });
                    if fast {
                        continue;
                    }
                }
                if slot.cols.is_empty() {
                    let values: Vec<serde_json::Value> = (r * width..(r + 1) * width)
                        .map(|i| json_value(&tensor.values, i))
                        .collect();
                    leftovers.insert(slot.name.to_string(), values.into());
                    continue;
                }
                for (j, col) in slot.cols.iter().enumerate() {
                    let i = r * width + j;
                    match col {
                        Ok(c) => flat.cols[*c].push(&tensor.values, i),
                        Err(taken) => {
                            leftovers.insert(taken.clone(), json_value(&tensor.values, i));
                        }
                    }
                }
            }
            if leftovers.is_empty() {
                extra.append_null();
            } else {
                extra.append_value(serde_json::Value::Object(leftovers).to_string());
            }
            n += 1;
            if !fills_all {
                for col in &mut flat.cols {
                    col.pad_to(n);
                }
            }
        }
    }
    let mut fields = vec![
        ts_field(),
        Field::new("date", DataType::Date32, false),
        Field::new("prediction_id", DataType::Utf8, false),
        Field::new("row", DataType::Int64, false),
        Field::new("request_id", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("deployment", DataType::Utf8, true),
        Field::new("variant", DataType::Utf8, true),
        Field::new("decision_id", DataType::Utf8, true),
        Field::new("shadow", DataType::Boolean, false),
        Field::new("latency_us", DataType::Int64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(ts.finish()),
        Arc::new(date.finish()),
        Arc::new(pid.finish()),
        Arc::new(row.finish()),
        Arc::new(rid.finish()),
        Arc::new(model.finish()),
        Arc::new(version.finish()),
        Arc::new(dep.finish()),
        Arc::new(var.finish()),
        Arc::new(did.finish()),
        Arc::new(shadow.finish()),
        Arc::new(latency.finish()),
    ];
    for (name, col) in flat.names.into_iter().zip(flat.cols) {
        let (dt, array) = col.finish();
        fields.push(Field::new(name, dt, true));
        columns.push(array);
    }
    fields.push(Field::new("extra", DataType::Utf8, true));
    columns.push(Arc::new(extra.finish()));
    batch(fields, columns)
}

#[cfg(test)]
mod tests;
