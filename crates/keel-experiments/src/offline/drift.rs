//! Drift of a deployment against a reference table, offline: the deployment's logged inputs over
//! the last window against the reference, and each serving model variant's logged scores over
//! the window against that model version's scores on (a sample of) the reference. When the
//! reference cannot be scored (it lacks inputs the model needs), the logged outputs of the window
//! are compared with the window before, and the report says why.
//!
//! Everything runs on the record batches read from the lake (no temporary files); the drift
//! tests run on a blocking thread.

use std::sync::Arc;

use keel_lake::Lake;
use keel_monitor::arrow::array::{Array, ArrayRef, Float64Array, RecordBatch};
use keel_monitor::arrow::compute::{CastOptions, cast_with_options};
use keel_monitor::arrow::datatypes::{DataType, Field, Schema};
use keel_monitor::{DriftOptions, DriftReport};
use keel_predlog::lake_sink::FIXED;
use serde::Serialize;

use super::{OfflineError, Result};
use crate::DeploymentSpec;

/// Reference rows scored at most.
const SCORED_ROWS: usize = 100_000;

/// What to compare: the deployment, its reference table and window, the columns and the test.
#[derive(Debug, Clone)]
pub struct DriftRequest {
    pub deployment: String,
    /// The lake table the deployment is compared with.
    pub reference: String,
    /// The window of logged predictions, ending now.
    pub window_seconds: u64,
    /// Columns to compare; empty compares every reference column not in `ignore`.
    pub columns: Vec<String>,
    pub ignore: Vec<String>,
    /// The drift test and threshold (`columns` of the options is not used).
    pub options: DriftOptions,
}

/// What the scores were compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionsBaseline {
    /// Each model's scores on the reference.
    Reference,
    /// The logged outputs of the window before.
    PreviousWindow,
}

impl PredictionsBaseline {
    /// The name used in reports (`reference`, `previous_window`).
    pub fn as_str(self) -> &'static str {
        match self {
            PredictionsBaseline::Reference => "reference",
            PredictionsBaseline::PreviousWindow => "previous_window",
        }
    }
}

/// The drift of a deployment's inputs and scores.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentDrift {
    /// The prediction-log tables read.
    pub tables: Vec<String>,
    /// Logged inputs in the window against the reference.
    pub features: DriftReport,
    /// Scores against `predictions_baseline`; `None` when there was nothing to compare with.
    pub predictions: Option<DriftReport>,
    pub predictions_baseline: PredictionsBaseline,
    /// Why the scores were not compared with the reference, when they were not.
    pub predictions_note: Option<String>,
}

/// The prediction-log tables in `lake` of the deployment's model variants (the tables a drift
/// report reads: the caller authorises them first). An error when there is none.
pub async fn logged_tables(lake: &Lake, deployment: &str, spec: &DeploymentSpec) -> Result<Vec<String>> {
    let in_lake = lake.tables().await?;
    let mut tables = Vec::new();
    for v in &spec.variants {
        if let Some(reference) = &v.model {
            let (model, _) = keel_registry::VersionSelector::split_reference(reference)?;
            let table = keel_predlog::predictions_table(&model);
            if in_lake.contains(&table) && !tables.contains(&table) {
                tables.push(table);
            }
        }
    }
    if tables.is_empty() {
        return Err(OfflineError::NoLoggedPredictions {
            deployment: deployment.to_string(),
        });
    }
    Ok(tables)
}

/// Double-quotes a SQL identifier.
fn quote(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// The drift of `request.deployment` read as `caller`: its spec from the store, a read check
/// (audited) on the reference (`drift_reference`) and on every prediction-log table
/// (`drift_current`) before any row is read, then [`deployment_drift`]. What `keel monitor
/// drift` runs.
pub async fn of_deployment(
    ws: &keel_data::Workspace,
    caller: &keel_data::Caller,
    repository: &keel_serving::ModelRepository,
    request: &DriftRequest,
    now_us: i64,
) -> Result<DeploymentDrift> {
    crate::validate_name(&request.deployment)?;
    let details = serde_json::json!({ "deployment": request.deployment, "window_seconds": request.window_seconds });
    ws.check::<keel_data::Read>(caller, &request.reference, "drift_reference", details.clone())
        .await?;
    let deployment = ws
        .catalog()
        .store()
        .get_deployment(&request.deployment)
        .await
        .map_err(crate::DeploymentError::from)?;
    let spec = DeploymentSpec::from_json(&deployment.spec)?;
    let tables = logged_tables(ws.lake(), &request.deployment, &spec).await?;
    for table in &tables {
        ws.check::<keel_data::Read>(caller, table, "drift_current", details.clone())
            .await?;
    }
    deployment_drift(ws.lake(), repository, &spec, &tables, request, now_us).await
}

/// The drift of `request.deployment` (whose prediction log is in `tables`, from
/// [`logged_tables`]) against `request.reference`, as of `now_us` (microseconds since the epoch).
/// Models are loaded from `repository` to score the reference.
pub async fn deployment_drift(
    lake: &Lake,
    repository: &keel_serving::ModelRepository,
    spec: &DeploymentSpec,
    tables: &[String],
    request: &DriftRequest,
    now_us: i64,
) -> Result<DeploymentDrift> {
    let Some(first) = tables.first() else {
        return Err(OfflineError::NoLoggedPredictions {
            deployment: request.deployment.clone(),
        });
    };
    let logged: Vec<(String, String)> = lake.columns(first).await?;
    let is_input = |c: &str| !FIXED.contains(&c) && !c.starts_with("out_");
    let inputs: Vec<String> = logged.iter().map(|(c, _)| c.clone()).filter(|c| is_input(c)).collect();
    let outputs: Vec<String> = logged
        .iter()
        .map(|(c, _)| c.clone())
        .filter(|c| c.starts_with("out_") && c != "out_json")
        .collect();
    let reference_columns: Vec<String> = lake
        .columns(&request.reference)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let wanted = compared_columns(&inputs, &reference_columns, request)?;
    let options = DriftOptions {
        columns: None,
        ..request.options.clone()
    };
    let window_us = (request.window_seconds as i64).saturating_mul(1_000_000);
    let window = Window {
        deployment: &request.deployment,
        tables,
        now_us,
        window_us,
    };
    let all_tables: Vec<String> = tables.iter().cloned().chain([request.reference.clone()]).collect();
    let current = lake
        .sql_on(&window.inputs_sql(now_us - window_us, now_us + 1, &wanted), &all_tables)
        .await?;
    if rows(&current) == 0 {
        return Err(OfflineError::EmptyWindow {
            deployment: request.deployment.clone(),
            window_seconds: request.window_seconds,
        });
    }
    // Read once: the drift tests take the wanted columns as doubles, the models score (a sample
    // of) whole rows.
    let reference_rows = lake
        .sql_on(&format!("SELECT * FROM {}", quote(&request.reference)), &all_tables)
        .await?;
    let reference = as_doubles(&reference_rows, &wanted, &request.reference)?;
    let features = drift_on_pool(reference, current, &options).await?;
    let scored = score_reference(
        lake,
        repository,
        spec,
        &request.reference,
        &reference_rows,
        &all_tables,
        &window,
        &options,
    )
    .await?;
    let (predictions, predictions_baseline, predictions_note) = match scored {
        Scored::Report(report) => (Some(report), PredictionsBaseline::Reference, None),
        Scored::Unscorable(why) => (
            previous_window(lake, &outputs, &window, &all_tables, &options).await?,
            PredictionsBaseline::PreviousWindow,
            Some(why),
        ),
    };
    Ok(DeploymentDrift {
        tables: tables.to_vec(),
        features,
        predictions,
        predictions_baseline,
        predictions_note,
    })
}

/// The columns to compare: `request.columns`, or every reference column not ignored; each must
/// be a logged input and a reference column.
fn compared_columns(inputs: &[String], reference_columns: &[String], request: &DriftRequest) -> Result<Vec<String>> {
    let wanted: Vec<String> = if request.columns.is_empty() {
        reference_columns
            .iter()
            .filter(|c| !request.ignore.contains(c))
            .cloned()
            .collect()
    } else {
        request.columns.clone()
    };
    let missing: Vec<&String> = wanted.iter().filter(|c| !inputs.contains(c)).collect();
    let absent: Vec<&String> = wanted.iter().filter(|c| !reference_columns.contains(c)).collect();
    if !missing.is_empty() || !absent.is_empty() || wanted.is_empty() {
        let mut detail = String::new();
        if !missing.is_empty() {
            detail.push_str(&format!("reference columns the model does not have: {missing:?}; "));
        }
        if !absent.is_empty() {
            detail.push_str(&format!("columns not in the reference: {absent:?}; "));
        }
        return Err(OfflineError::ColumnsDoNotLineUp {
            detail,
            inputs: inputs.to_vec(),
            reference: request.reference.clone(),
            reference_columns: reference_columns.to_vec(),
        });
    }
    Ok(wanted)
}

/// The SQL of the deployment's logged rows in a time window.
struct Window<'a> {
    deployment: &'a str,
    tables: &'a [String],
    now_us: i64,
    window_us: i64,
}

impl Window<'_> {
    /// `columns` as doubles of every logged row in [from, to) (microseconds), over every table.
    fn inputs_sql(&self, from: i64, to: i64, columns: &[String]) -> String {
        let select = columns
            .iter()
            .map(|c| format!("CAST({} AS DOUBLE) AS {}", quote(c), quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        self.tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT {select} FROM {} WHERE deployment = '{}' AND ts >= to_timestamp_micros({from}) AND ts < to_timestamp_micros({to})",
                    quote(t),
                    self.deployment
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    /// One variant's served (not shadow) scores of one model version over the window.
    fn scores_sql(&self, table: &str, column: &str, variant: &str, version: i64) -> String {
        format!(
            "SELECT CAST({} AS DOUBLE) AS prediction FROM {} WHERE deployment = '{}' AND variant = '{}' AND version = {version} AND NOT shadow AND ts >= to_timestamp_micros({}) AND ts < to_timestamp_micros({})",
            quote(column),
            quote(table),
            self.deployment,
            variant.replace('\'', "''"),
            self.now_us - self.window_us,
            self.now_us + 1
        )
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Runs the drift tests on a blocking thread.
async fn drift_on_pool(
    reference: Vec<RecordBatch>,
    current: Vec<RecordBatch>,
    options: &DriftOptions,
) -> Result<DriftReport> {
    let options = options.clone();
    Ok(
        tokio::task::spawn_blocking(move || keel_monitor::drift_batches(&reference, &current, &options))
            .await
            .map_err(|_| OfflineError::Task("drift"))??,
    )
}

/// Each serving model variant's scores on (a sample of) the reference against the scores it
/// logged in the window, one column per variant (`prediction`, or `prediction[VARIANT]` when
/// several variants are models), or why the reference cannot be scored.
#[allow(clippy::too_many_arguments)]
async fn score_reference(
    lake: &Lake,
    repository: &keel_serving::ModelRepository,
    spec: &DeploymentSpec,
    reference: &str,
    reference_rows: &[RecordBatch],
    all_tables: &[String],
    window: &Window<'_>,
    options: &DriftOptions,
) -> Result<Scored> {
    let variants: Vec<(&str, &str)> = spec
        .variants
        .iter()
        .filter(|v| !v.shadow)
        .filter_map(|v| Some((v.name.as_str(), v.model.as_deref()?)))
        .collect();
    let sample = keel_monitor::live::sample_batches(reference_rows, SCORED_ROWS, 1)?;
    let mut scored_reference = Vec::new();
    let mut logged = Vec::new();
    for (variant, model_ref) in &variants {
        let (name, selector) = keel_registry::VersionSelector::split_reference(model_ref)?;
        let model = repository.load_pinned(&name, &selector).await?;
        let (rows_to_score, m) = (sample.clone(), model.clone());
        let scores = tokio::task::spawn_blocking(move || crate::score::score_batches(&m.model, &rows_to_score, None))
            .await
            .map_err(|_| OfflineError::Task("scoring"))?;
        let scores = match scores {
            Ok(s) => s,
            Err(e) => {
                return Ok(Scored::Unscorable(format!(
                    "model {}:{} cannot score {reference}: {e}",
                    model.name, model.version
                )));
            }
        };
        let Some(column) = scores.log_column() else {
            return Ok(Scored::Unscorable(format!(
                "model {}:{}'s output {} is too wide to be logged",
                model.name, model.version, scores.output
            )));
        };
        let table = keel_predlog::predictions_table(&name);
        let in_window = if all_tables.contains(&table) && lake.columns(&table).await?.iter().any(|(c, _)| *c == column)
        {
            lake.sql_on(&window.scores_sql(&table, &column, variant, model.version), all_tables)
                .await?
        } else {
            Vec::new()
        };
        let column = if variants.len() == 1 {
            keel_monitor::live::PREDICTION.to_string()
        } else {
            format!("{}[{variant}]", keel_monitor::live::PREDICTION)
        };
        if rows(&in_window) > 0 {
            scored_reference.push((column.clone(), scores.scores));
            logged.push((column, in_window));
        }
    }
    if scored_reference.is_empty() {
        return Ok(Scored::Unscorable(
            "no serving model variant logged scores in the window".into(),
        ));
    }
    let reference_side = side(
        scored_reference
            .into_iter()
            .map(|(c, v)| (c, v.into_iter().map(Some).collect()))
            .collect(),
    )?;
    let current_side = side(
        logged
            .into_iter()
            .map(|(c, batches)| {
                let values = batches
                    .iter()
                    .flat_map(|b| {
                        let a = b.column(0).as_any().downcast_ref::<Float64Array>();
                        a.map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default()
                    })
                    .collect();
                (c, values)
            })
            .collect(),
    )?;
    Ok(Scored::Report(
        drift_on_pool(vec![reference_side], vec![current_side], options).await?,
    ))
}

/// The scores' comparison with the reference, or why there is none.
enum Scored {
    Report(DriftReport),
    /// Why the reference could not be scored (the report's note).
    Unscorable(String),
}

/// One table per side, a column per variant (padded with nulls: the tests skip them).
fn side(columns: Vec<(String, Vec<Option<f64>>)>) -> Result<RecordBatch> {
    let n = columns.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let arrays: Vec<(String, ArrayRef)> = columns
        .into_iter()
        .map(|(c, mut v)| {
            v.resize(n, None);
            (c, Arc::new(Float64Array::from(v)) as ArrayRef)
        })
        .collect();
    RecordBatch::try_from_iter(arrays).map_err(|e| {
        OfflineError::from(keel_monitor::MonitorError::Arrow {
            column: "prediction".into(),
            message: e.to_string(),
        })
    })
}

/// The logged outputs of the window against the window before (`None` before there is one).
async fn previous_window(
    lake: &Lake,
    outputs: &[String],
    window: &Window<'_>,
    all_tables: &[String],
    options: &DriftOptions,
) -> Result<Option<DriftReport>> {
    if outputs.is_empty() {
        return Ok(None);
    }
    let (now_us, window_us) = (window.now_us, window.window_us);
    let before = lake
        .sql_on(
            &window.inputs_sql(now_us - 2 * window_us, now_us - window_us, outputs),
            all_tables,
        )
        .await?;
    let after = lake
        .sql_on(&window.inputs_sql(now_us - window_us, now_us + 1, outputs), all_tables)
        .await?;
    if rows(&before) == 0 {
        return Ok(None);
    }
    Ok(Some(drift_on_pool(before, after, options).await?))
}

/// `columns` of `batches` as nullable doubles, in that order (as SQL's `CAST(.. AS DOUBLE)`:
/// a value that is not a number is an error naming its column, not a null).
fn as_doubles(batches: &[RecordBatch], columns: &[String], reference: &str) -> Result<Vec<RecordBatch>> {
    let not_numeric = |message: String| OfflineError::NotNumeric {
        reference: reference.to_string(),
        message,
    };
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c, DataType::Float64, true))
            .collect::<Vec<_>>(),
    ));
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    batches
        .iter()
        .map(|b| {
            let arrays = columns
                .iter()
                .map(|c| {
                    let column = b
                        .column_by_name(c)
                        .ok_or_else(|| not_numeric(format!("column {c:?} is missing")))?;
                    cast_with_options(column, &DataType::Float64, &strict)
                        .map_err(|e| not_numeric(format!("column {c:?} ({}) as a double: {e}", column.data_type())))
                })
                .collect::<Result<Vec<_>>>()?;
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| not_numeric(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_monitor::arrow::array::{Int64Array, StringArray};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).expect("batch")
    }

    #[test]
    fn reference_columns_become_doubles_in_the_order_asked() {
        let b = batch(vec![
            ("label", Arc::new(StringArray::from(vec!["yes", "no"])) as ArrayRef),
            ("b", Arc::new(Int64Array::from(vec![Some(3), None])) as ArrayRef),
            ("a", Arc::new(StringArray::from(vec!["1.5", "-2"])) as ArrayRef),
        ]);
        let out = as_doubles(&[b], &["a".to_string(), "b".to_string()], "t").expect("numeric");
        assert_eq!(out.len(), 1);
        let schema = out[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let col = |i: usize| {
            out[0]
                .column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("f64")
                .clone()
        };
        assert_eq!(col(0), Float64Array::from(vec![1.5, -2.0]));
        assert_eq!(col(1), Float64Array::from(vec![Some(3.0), None]));
    }

    #[test]
    fn a_text_value_is_an_error_naming_its_column_not_a_null() {
        let b = batch(vec![("x", Arc::new(StringArray::from(vec!["1", "many"])) as ArrayRef)]);
        let e = as_doubles(std::slice::from_ref(&b), &["x".to_string()], "t").expect_err("not numeric");
        assert!(e.to_string().contains("column \"x\" (Utf8) as a double"), "{e}");
        assert_eq!(e.code(), "offline.not_numeric");
        let e = as_doubles(&[b], &["y".to_string()], "t").expect_err("absent");
        assert!(e.to_string().contains("column \"y\" is missing"), "{e}");
    }

    fn request(columns: &[&str], ignore: &[&str]) -> DriftRequest {
        DriftRequest {
            deployment: "d".into(),
            reference: "train".into(),
            window_seconds: 60,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            ignore: ignore.iter().map(|c| c.to_string()).collect(),
            options: DriftOptions::default(),
        }
    }

    #[test]
    fn compared_columns_line_up_or_say_which_do_not() {
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let (inputs, reference) = (s(&["a", "b"]), s(&["a", "b", "label"]));
        assert_eq!(
            compared_columns(&inputs, &reference, &request(&[], &["label"])).expect("lined up"),
            ["a", "b"]
        );
        assert_eq!(
            compared_columns(&inputs, &reference, &request(&["b"], &[])).expect("lined up"),
            ["b"]
        );
        let e = compared_columns(&inputs, &reference, &request(&[], &[])).expect_err("label is no input");
        assert!(e.to_string().contains("the model does not have: [\"label\"]"), "{e}");
        assert_eq!(e.code(), "offline.columns_do_not_line_up");
        let e = compared_columns(&inputs, &reference, &request(&["z"], &[])).expect_err("z nowhere");
        assert!(e.to_string().contains("columns not in the reference: [\"z\"]"), "{e}");
    }

    #[test]
    fn the_window_sql_quotes_and_unions_every_table() {
        let tables = ["p_a".to_string(), "p\"b".to_string()];
        let w = Window {
            deployment: "d",
            tables: &tables,
            now_us: 10,
            window_us: 5,
        };
        let sql = w.inputs_sql(5, 11, &["x".to_string()]);
        assert_eq!(
            sql,
            "SELECT CAST(\"x\" AS DOUBLE) AS \"x\" FROM \"p_a\" WHERE deployment = 'd' AND ts >= to_timestamp_micros(5) AND ts < to_timestamp_micros(11) \
             UNION ALL SELECT CAST(\"x\" AS DOUBLE) AS \"x\" FROM \"p\"\"b\" WHERE deployment = 'd' AND ts >= to_timestamp_micros(5) AND ts < to_timestamp_micros(11)"
        );
        assert!(
            w.scores_sql("p_a", "out_y", "it's", 3)
                .contains("variant = 'it''s' AND version = 3")
        );
    }
}
