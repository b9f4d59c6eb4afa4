//! What is logged: one record per inference request, decision, reward and label.

use keel_types::Tensor;
use serde::{Deserialize, Serialize};

/// Prefix of the per-model prediction tables (`predictions_<model>`).
pub const PREDICTIONS_PREFIX: &str = "predictions_";
/// Decisions of experiment deployments.
pub const DECISIONS_TABLE: &str = "decisions";
/// Rewards (feedback) of experiment deployments.
pub const FEEDBACK_TABLE: &str = "feedback";
/// Labels (ground truth) sent for logged predictions.
pub const LABELS_TABLE: &str = "labels";

/// The prediction table of a model: `predictions_` + the name in lower case, characters a
/// table name cannot hold replaced by `_`.
pub fn predictions_table(model: &str) -> String {
    let mut out = String::with_capacity(PREDICTIONS_PREFIX.len() + model.len());
    out.push_str(PREDICTIONS_PREFIX);
    out.extend(model.chars().map(table_char));
    out
}

/// A model name's character as its prediction table's name has it.
fn table_char(c: char) -> char {
    let c = c.to_ascii_lowercase();
    if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
        c
    } else {
        '_'
    }
}

/// Where a prediction came from when it went through an experiment deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routing {
    pub deployment: String,
    pub variant: String,
    pub decision_id: String,
    /// A shadow variant's answer (logged, never returned to the caller).
    pub shadow: bool,
}

/// One inference request and its answer. Its inputs are moved out of the request (the request
/// is done with them), its outputs are a copy of the response's.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRecord {
    /// Microseconds since the Unix epoch (UTC) when the answer was ready.
    pub ts_us: i64,
    /// Unique per request; with `row`, unique per logged row. Returned to the client.
    pub prediction_id: String,
    /// The client's own request id, if it sent one.
    pub request_id: Option<String>,
    pub model: String,
    pub version: i64,
    pub routing: Option<Routing>,
    /// Time from the request reaching the serving operation to the answer.
    pub latency_us: i64,
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

impl PredictionRecord {
    /// Rows of the request: the first dimension of its first input (1 for scalars).
    pub fn rows(&self) -> usize {
        self.inputs
            .first()
            .and_then(|(_, t)| t.shape.first())
            .map_or(1, |d| (*d).max(0) as usize)
            .max(1)
    }
}

/// A decision of an experiment deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub ts_us: i64,
    pub decision_id: String,
    pub deployment: String,
    pub variant: String,
    pub unit: Option<String>,
    pub propensity: f64,
    pub policy_version: i64,
    pub revision: i64,
    pub control: bool,
}

/// A reward sent for a decision (counted by the deployment).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRecord {
    pub ts_us: i64,
    pub decision_id: String,
    pub deployment: String,
    pub reward: f64,
}

/// A label (ground truth, outcome) for one row of a logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelIn {
    pub prediction_id: String,
    /// Row of the request the label is for (default 0).
    #[serde(default)]
    pub row: i64,
    /// The outcome: a number (0/1 for a binary outcome) or true/false.
    pub label: serde_json::Value,
    /// When the outcome happened (RFC 3339); default: when the label is received.
    #[serde(default)]
    pub ts: Option<String>,
}

/// A validated label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRecord {
    pub ts_us: i64,
    pub prediction_id: String,
    pub row: i64,
    pub label: f64,
}

/// Reads a file of labels: a JSON array, or JSON lines (one label per non-empty line). The
/// error names the line that is not a label.
pub fn parse_labels(text: &str) -> crate::Result<Vec<LabelIn>> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text)
            .map_err(|e| crate::PredlogError::Invalid(format!("not a JSON array of labels: {e}")));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| crate::PredlogError::Invalid(format!("line {}: not a label: {e}", i + 1)))
        })
        .collect()
}

/// Validates labels, reporting every bad item at once.
pub fn validate_labels(items: &[LabelIn], now_us: i64) -> crate::Result<Vec<LabelRecord>> {
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = item.prediction_id.trim();
        if id.is_empty() || id.len() > 128 {
            problems.push(format!(
                "item {i}: prediction_id must be the 1-128 character id a prediction returned"
            ));
            continue;
        }
        if item.row < 0 {
            problems.push(format!("item {i}: row must be 0 or more, got {}", item.row));
            continue;
        }
        let label = match &item.label {
            serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(v) if v.is_finite() => v,
                _ => {
                    problems.push(format!("item {i}: label {n} is not a finite number"));
                    continue;
                }
            },
            other => {
                problems.push(format!(
                    "item {i}: label must be a number (0 or 1 for a binary outcome) or true/false, got {other}"
                ));
                continue;
            }
        };
        let ts_us = match &item.ts {
            None => now_us,
            Some(s) => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => t.timestamp_micros(),
                Err(e) => {
                    problems.push(format!("item {i}: ts {s:?} is not an RFC 3339 time ({e})"));
                    continue;
                }
            },
        };
        out.push(LabelRecord {
            ts_us,
            prediction_id: id.to_string(),
            row: item.row,
            label,
        });
    }
    if !problems.is_empty() {
        return Err(crate::PredlogError::Invalid(format!(
            "{} of {} labels refused, nothing stored: {}",
            problems.len(),
            items.len(),
            problems.join("; ")
        )));
    }
    if out.is_empty() {
        return Err(crate::PredlogError::Invalid(
            "no labels given: send [{\"prediction_id\": ..., \"label\": 0 or 1}]".into(),
        ));
    }
    Ok(out)
}

/// Whether `table` is `model`'s prediction table (no allocation: the writer asks this per
/// logged prediction).
pub fn is_predictions_table(table: &str, model: &str) -> bool {
    table
        .strip_prefix(PREDICTIONS_PREFIX)
        .is_some_and(|rest| rest.chars().eq(model.chars().map(table_char)))
}

/// Something the writer batches through its queue. Serving's predictions take another road,
/// the writer's per-thread lanes ([`crate::PredictionLog::log_prediction`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Prediction(Box<PredictionRecord>),
    Decision(DecisionRecord),
    Feedback(FeedbackRecord),
}

impl Entry {
    /// Table rows this entry becomes.
    pub fn rows(&self) -> usize {
        match self {
            Entry::Prediction(p) => p.rows(),
            Entry::Decision(_) | Entry::Feedback(_) => 1,
        }
    }

    /// The table this entry goes to.
    pub fn table(&self) -> String {
        match self {
            Entry::Prediction(p) => predictions_table(&p.model),
            Entry::Decision(_) => DECISIONS_TABLE.to_string(),
            Entry::Feedback(_) => FEEDBACK_TABLE.to_string(),
        }
    }

    /// Whether this entry goes to `table` (no allocation: the writer asks this per entry).
    pub fn is_for(&self, table: &str) -> bool {
        match self {
            Entry::Prediction(p) => is_predictions_table(table, &p.model),
            Entry::Decision(_) => table == DECISIONS_TABLE,
            Entry::Feedback(_) => table == FEEDBACK_TABLE,
        }
    }
}

/// A new prediction id: a UUIDv7 (time-ordered: milliseconds since the epoch first) whose
/// random part is a per-process random seed mixed with a counter, so making one costs no
/// system call (serving makes one per request) and ids never repeat within a process.
pub fn new_prediction_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u128> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & (u64::MAX >> 2);
    // 80 random bits: 16 from the seed, then 64 whose top 2 the UUID variant overwrites, so
    // the seed's top 2 are cleared and the counter stays below 2^62 (xor: a bijection).
    let low = (seed as u64 & (u64::MAX >> 2)) ^ n;
    let mut random = [0u8; 10];
    random[..2].copy_from_slice(&((seed >> 64) as u16).to_be_bytes());
    random[2..].copy_from_slice(&low.to_be_bytes());
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    uuid::Builder::from_unix_timestamp_millis(ms, &random)
        .into_uuid()
        .to_string()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_from_an_array_or_json_lines_and_name_the_bad_line() {
        let array = parse_labels(r#"[{"prediction_id": "p1", "label": 1}]"#).unwrap();
        assert_eq!(array.len(), 1);
        let lines =
            parse_labels("{\"prediction_id\": \"p1\", \"label\": 1}\n\n{\"prediction_id\": \"p2\", \"label\": 0}\n")
                .unwrap();
        assert_eq!(lines.len(), 2);
        let bad = parse_labels("{\"prediction_id\": \"p1\", \"label\": 1}\nnot json\n").unwrap_err();
        assert!(bad.to_string().contains("line 2: not a label"), "{bad}");
        assert!(parse_labels("[1, 2").is_err());
    }

    #[test]
    fn prediction_ids_are_distinct_v7_uuids() {
        let ids: std::collections::BTreeSet<String> = (0..10_000).map(|_| new_prediction_id()).collect();
        assert_eq!(ids.len(), 10_000);
        let first = uuid::Uuid::parse_str(ids.iter().next().expect("one")).expect("uuid");
        assert_eq!(first.get_version_num(), 7);
    }

    #[test]
    fn table_names_are_valid_and_lowercase() {
        assert_eq!(predictions_table("bc-lr"), "predictions_bc-lr");
        assert_eq!(predictions_table("My Model"), "predictions_my_model");
    }

    #[test]
    fn entries_know_their_table_without_building_its_name() {
        let p = |model: &str| {
            Entry::Prediction(Box::new(PredictionRecord {
                ts_us: 0,
                prediction_id: "p".into(),
                request_id: None,
                model: model.into(),
                version: 1,
                routing: None,
                latency_us: 0,
                inputs: Vec::new(),
                outputs: Vec::new(),
            }))
        };
        for model in ["bc-lr", "My Model", "x.y_z"] {
            let e = p(model);
            assert!(e.is_for(&e.table()), "{model}");
            assert!(!e.is_for("predictions_other"), "{model}");
            assert!(!e.is_for(DECISIONS_TABLE), "{model}");
        }
        assert_eq!(p("My Model").table(), "predictions_my_model");
        assert!(is_predictions_table("predictions_my_model", "My Model"));
        assert!(!is_predictions_table("predictions_my_model2", "My Model"));
        assert!(!is_predictions_table("predictions_my_model", "My Model2"));
    }

    #[test]
    fn labels_are_validated_all_at_once() {
        let items: Vec<LabelIn> = serde_json::from_value(serde_json::json!([
            {"prediction_id": "a", "label": 1},
            {"prediction_id": "b", "label": true, "row": 2, "ts": "2024-05-01T00:00:00Z"},
        ]))
        .expect("json");
        let ok = validate_labels(&items, 7).expect("valid");
        assert_eq!(ok[0].label, 1.0);
        assert_eq!(ok[0].ts_us, 7);
        assert_eq!(ok[1].row, 2);
        assert_eq!(ok[1].ts_us, 1_714_521_600_000_000);
        let bad: Vec<LabelIn> = serde_json::from_value(serde_json::json!([
            {"prediction_id": "", "label": 1},
            {"prediction_id": "b", "label": "yes"},
            {"prediction_id": "c", "label": 0, "ts": "yesterday"},
        ]))
        .expect("json");
        let err = validate_labels(&bad, 0).expect_err("refused").to_string();
        assert!(err.contains("3 of 3 labels refused"), "{err}");
        assert!(err.contains("item 1: label must be a number"), "{err}");
        assert!(err.contains("item 2: ts \"yesterday\""), "{err}");
    }
}
