//! `keel monitor label` and `keel monitor performance`

use anyhow::Context as _;
use keel_lake::Lake;
use keel_predlog::performance::{PerformanceOptions, PerformanceReport, performance};
use keel_predlog::{LabelIn, Sink as _};

use crate::cli::{Global, MonitorCommand};
use crate::output;

pub async fn run(global: &Global, cmd: MonitorCommand) -> anyhow::Result<()> {
    let lake = crate::context::open_lake(global).await?;
    // Log tables are lake tables like any other: the same grants apply (uncatalogued ones are
    // for workspace admins), and every use is audited.
    let check = |table: String, needed: keel_catalog::Permission, action: &'static str| async move {
        let ctx = crate::context::Context::open(global).await?;
        let catalog = ctx.catalog();
        let actor = catalog.actor(&crate::context::principal(global)).await?;
        catalog
            .authorize(
                &actor,
                &table,
                needed,
                action,
                keel_catalog::Via::Cli,
                serde_json::json!({}),
            )
            .await?;
        anyhow::Ok(())
    };
    match &cmd {
        MonitorCommand::Label { .. } => {
            check(
                keel_predlog::record::LABELS_TABLE.to_string(),
                keel_catalog::Permission::Write,
                "write",
            )
            .await?;
        }
        MonitorCommand::Performance { model, .. } => {
            check(
                keel_predlog::predictions_table(model),
                keel_catalog::Permission::Read,
                "performance",
            )
            .await?;
        }
        MonitorCommand::Retention { .. } => {
            for table in lake.tables().await? {
                if keel_predlog::retention::is_log_table(&table) {
                    check(table, keel_catalog::Permission::Write, "retention").await?;
                }
            }
        }
        MonitorCommand::Drift(_) => {}
    }
    match cmd {
        MonitorCommand::Drift(args) => return drift(global, &lake, args).await,
        MonitorCommand::Retention { days } => {
            let removed = keel_predlog::retention::apply(&lake, days, chrono::Utc::now()).await?;
            if global.json {
                return output::json(&removed);
            }
            if removed.is_empty() {
                println!("no prediction log tables in the lake");
            }
            for r in &removed {
                println!(
                    "{}: {} row(s) older than {days} day(s) deleted, {} file(s) removed",
                    r.table,
                    r.rows.map_or("?".to_string(), |n| n.to_string()),
                    r.files
                );
            }
        }
        MonitorCommand::Label { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let items: Vec<LabelIn> = if text.trim_start().starts_with('[') {
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JSON array of labels", file.display()))?
            } else {
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .map(|(i, l)| {
                        serde_json::from_str(l)
                            .with_context(|| format!("{} line {}: not a label", file.display(), i + 1))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let records = keel_predlog::validate_labels(&items, keel_predlog::now_us())?;
            let sink = keel_predlog::lake_sink::LakeSink::new(lake.clone(), None);
            sink.write_labels(&records).await?;
            let tables = lake.tables().await?;
            let (unmatched, examples) = keel_predlog::performance::unmatched(&lake, &tables).await?;
            if global.json {
                return output::json(&serde_json::json!({
                    "stored": records.len(), "unmatched_labels": unmatched, "unmatched_examples": examples,
                }));
            }
            println!("stored {} label(s)", records.len());
            if unmatched > 0 {
                println!(
                    "{unmatched} label(s) in the lake match no logged prediction (yet), e.g. {}",
                    examples.join(", ")
                );
            }
        }
        MonitorCommand::Performance {
            model,
            since,
            bucket,
            score,
        } => {
            let options = PerformanceOptions {
                since,
                bucket: bucket.parse()?,
                score,
                ..PerformanceOptions::default()
            };
            let report = performance(&lake, &model, &options).await?;
            if global.json {
                return output::json(&report);
            }
            print_report(&report);
        }
    }
    Ok(())
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.4}"))
}

fn print_report(r: &PerformanceReport) {
    println!("model {} (table {}, score {})", r.model, r.table, r.score_column);
    let rows = |groups: &[keel_predlog::performance::Group]| -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                vec![
                    g.version.to_string(),
                    g.bucket.clone().unwrap_or_else(|| "all".into()),
                    g.predictions.to_string(),
                    g.labelled.to_string(),
                    num(g.positive_rate),
                    num(g.mean_score),
                    num(g.auc),
                    num(g.log_loss),
                    num(g.ece),
                ]
            })
            .collect()
    };
    let headers = [
        "version",
        "bucket",
        "predictions",
        "labelled",
        "positive_rate",
        "mean_score",
        "auc",
        "log_loss",
        "ece",
    ];
    output::table(&headers, &rows(&r.versions));
    println!();
    output::table(&headers, &rows(&r.buckets));
    if r.unmatched_labels > 0 {
        println!(
            "\n{} label(s) match no logged prediction, e.g. {}",
            r.unmatched_labels,
            r.unmatched_examples.join(", ")
        );
    }
}

/// `keel monitor drift DEPLOYMENT --reference TABLE`: the deployment's logged inputs over the
/// last window against the reference table, and each serving model variant's logged scores over
/// the window against that model version's scores on the reference (a sample of it). When the
/// reference cannot be scored (it lacks inputs the model needs), the logged outputs of the
/// window are compared with the window before, and the report says why.
pub async fn drift(global: &Global, lake: &Lake, args: crate::cli::MonitorDriftArgs) -> anyhow::Result<()> {
    use keel_catalog::{Permission, Via};
    use keel_predlog::lake_sink::FIXED;

    keel_experiments::validate_name(&args.deployment)?;
    let ctx = crate::context::Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&crate::context::principal(global)).await?;
    let details = serde_json::json!({ "deployment": args.deployment, "window_seconds": args.window_seconds });
    catalog
        .authorize(
            &actor,
            &args.reference,
            Permission::Read,
            "drift_reference",
            Via::Cli,
            details.clone(),
        )
        .await?;
    let deployment = ctx
        .registry
        .store()
        .get_deployment(&args.deployment)
        .await
        .with_context(|| format!("no deployment {:?}: see `keel deployment ls`", args.deployment))?;
    let spec = keel_experiments::DeploymentSpec::from_json(&deployment.spec)?;
    let in_lake = lake.tables().await?;
    let mut tables = Vec::new();
    for v in &spec.variants {
        if let Some(reference) = &v.model {
            let (model, _) = keel_registry::VersionSelector::split_reference(reference)?;
            let table = keel_predlog::predictions_table(&model);
            if in_lake.contains(&table) && !tables.contains(&table) {
                catalog
                    .authorize(
                        &actor,
                        &table,
                        Permission::Read,
                        "drift_current",
                        Via::Cli,
                        details.clone(),
                    )
                    .await?;
                tables.push(table);
            }
        }
    }
    if tables.is_empty() {
        anyhow::bail!(
            "deployment {} has no logged predictions: its variants must be models served by `keel serve` with prediction logging on",
            args.deployment
        );
    }
    let logged: Vec<(String, String)> = lake.columns(&tables[0]).await?;
    let is_input = |c: &str| !FIXED.contains(&c) && !c.starts_with("out_");
    let inputs: Vec<&str> = logged.iter().map(|(c, _)| c.as_str()).filter(|c| is_input(c)).collect();
    let outputs: Vec<&str> = logged
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| c.starts_with("out_") && *c != "out_json")
        .collect();
    let reference_columns: Vec<String> = lake
        .columns(&args.reference)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let wanted: Vec<String> = if args.columns.is_empty() {
        reference_columns
            .iter()
            .filter(|c| !args.ignore.contains(c))
            .cloned()
            .collect()
    } else {
        args.columns.clone()
    };
    let missing: Vec<&String> = wanted.iter().filter(|c| !inputs.contains(&c.as_str())).collect();
    let absent: Vec<&String> = wanted.iter().filter(|c| !reference_columns.contains(c)).collect();
    if !missing.is_empty() || !absent.is_empty() || wanted.is_empty() {
        anyhow::bail!(
            "the reference and the logged inputs do not line up: {}{}the model logs inputs [{}]; \
             reference {} has [{}]; choose columns with --columns or leave some out with --ignore",
            if missing.is_empty() {
                String::new()
            } else {
                format!("reference columns the model does not have: {missing:?}; ")
            },
            if absent.is_empty() {
                String::new()
            } else {
                format!("columns not in the reference: {absent:?}; ")
            },
            inputs.join(", "),
            args.reference,
            reference_columns.join(", ")
        );
    }
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let select = |cols: &[String]| {
        cols.iter()
            .map(|c| format!("CAST({} AS DOUBLE) AS {}", quote(c), quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let now_us = keel_predlog::now_us();
    let window_us = (args.window_seconds as i64).saturating_mul(1_000_000);
    let window = |from: i64, to: i64, cols: &[String]| {
        tables
            .iter()
            .map(|t| {
                format!(
                    "SELECT {} FROM {} WHERE deployment = '{}' AND ts >= to_timestamp_micros({from}) AND ts < to_timestamp_micros({to})",
                    select(cols),
                    quote(t),
                    args.deployment
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    };
    let current_sql = window(now_us - window_us, now_us + 1, &wanted);
    let all_tables: Vec<String> = tables.iter().cloned().chain([args.reference.clone()]).collect();
    let current = lake.sql_on(&current_sql, &all_tables).await?;
    if current.iter().map(|b| b.num_rows()).sum::<usize>() == 0 {
        anyhow::bail!(
            "no predictions logged for deployment {} in the last {} s: the window is empty, nothing to compare",
            args.deployment,
            args.window_seconds
        );
    }
    // Read once: the drift tests take the wanted columns as doubles, the models score (a sample
    // of) whole rows.
    let reference_rows = lake
        .sql_on(&format!("SELECT * FROM {}", quote(&args.reference)), &all_tables)
        .await?;
    let reference = as_doubles(&reference_rows, &wanted)
        .with_context(|| format!("reference {}: a compared column is not numeric", args.reference))?;
    let method: keel_monitor::Method = args
        .method
        .parse()
        .map_err(|e| anyhow::anyhow!("--method {}: {e}", args.method))?;
    let options = keel_monitor::DriftOptions {
        method,
        threshold: args.threshold,
        ..Default::default()
    };
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let features = drift_batches(dir.path(), "features", &reference, &current, &options).await?;
    let window_sql = |table: &str, column: &str, variant: &str, version: i64| {
        format!(
            "SELECT CAST({} AS DOUBLE) AS prediction FROM {} WHERE deployment = '{}' AND variant = '{}' AND version = {version} AND NOT shadow AND ts >= to_timestamp_micros({}) AND ts < to_timestamp_micros({})",
            quote(column),
            quote(table),
            args.deployment,
            variant.replace('\'', "''"),
            now_us - window_us,
            now_us + 1
        )
    };
    let scored = score_reference(
        &ctx,
        lake,
        &spec,
        &args.reference,
        &reference_rows,
        &all_tables,
        &window_sql,
        dir.path(),
        &options,
    )
    .await?;
    let (predictions, baseline, note) = match scored {
        Ok(report) => (Some(report), "reference", None),
        Err(why) => (
            previous_window(
                lake,
                &outputs,
                &window,
                (now_us, window_us),
                &all_tables,
                dir.path(),
                &options,
            )
            .await?,
            "previous_window",
            Some(why),
        ),
    };
    if global.json {
        return output::json(&serde_json::json!({
            "deployment": args.deployment, "reference": args.reference, "tables": tables,
            "window_seconds": args.window_seconds, "features": features, "predictions": predictions,
            "predictions_baseline": baseline, "predictions_note": note,
        }));
    }
    println!(
        "inputs of {} (last {} s) against {}:",
        args.deployment, args.window_seconds, args.reference
    );
    super::data::print_drift(global, &features)?;
    match (&predictions, baseline) {
        (Some(p), "reference") => {
            println!(
                "\nscores (last {} s) against each model's scores on {}:",
                args.window_seconds, args.reference
            );
            super::data::print_drift(global, p)?;
        }
        (Some(p), _) => {
            println!(
                "\noutputs: last {} s against the {} s before ({}):",
                args.window_seconds,
                args.window_seconds,
                note.as_deref().unwrap_or("")
            );
            super::data::print_drift(global, p)?;
        }
        (None, _) => println!(
            "\npredictions: {}; no earlier window logged yet to compare with",
            note.as_deref().unwrap_or("")
        ),
    }
    Ok(())
}

/// Each serving model variant's scores on (a sample of) the reference against the scores it
/// logged in the window, one column per variant (`prediction`, or `prediction[VARIANT]` when
/// several variants are models). `Ok(Err(why))` when the reference cannot be scored.
#[allow(clippy::too_many_arguments)]
async fn score_reference(
    ctx: &crate::context::Context,
    lake: &Lake,
    spec: &keel_experiments::DeploymentSpec,
    reference: &str,
    reference_rows: &[keel_lake::arrow::array::RecordBatch],
    all_tables: &[String],
    window_sql: &dyn Fn(&str, &str, &str, i64) -> String,
    dir: &std::path::Path,
    options: &keel_monitor::DriftOptions,
) -> anyhow::Result<std::result::Result<keel_monitor::DriftReport, String>> {
    /// Reference rows scored at most.
    const SCORED_ROWS: usize = 100_000;
    let variants: Vec<(&str, &str)> = spec
        .variants
        .iter()
        .filter(|v| !v.shadow)
        .filter_map(|v| Some((v.name.as_str(), v.model.as_deref()?)))
        .collect();
    let repository = keel_serving::ModelRepository::new(ctx.registry.clone(), keel_runtime::ModelOptions::default());
    let rows = keel_monitor::live::sample_batches(reference_rows, SCORED_ROWS, 1)?;
    let mut scored_reference = Vec::new();
    let mut logged = Vec::new();
    for (variant, model_ref) in &variants {
        let (name, selector) = keel_registry::VersionSelector::split_reference(model_ref)?;
        let model = repository.load_pinned(&name, &selector).await?;
        let (rows, m) = (rows.clone(), model.clone());
        let scores = tokio::task::spawn_blocking(move || keel_experiments::score::score_batches(&m.model, &rows, None))
            .await
            .context("the scoring task failed")?;
        let scores = match scores {
            Ok(s) => s,
            Err(e) => {
                return Ok(Err(format!(
                    "model {}:{} cannot score {reference}: {e}",
                    model.name, model.version
                )));
            }
        };
        let Some(column) = scores.log_column() else {
            return Ok(Err(format!(
                "model {}:{}'s output {} is too wide to be logged",
                model.name, model.version, scores.output
            )));
        };
        let table = keel_predlog::predictions_table(&name);
        let window = if all_tables.contains(&table) && lake.columns(&table).await?.iter().any(|(c, _)| *c == column) {
            lake.sql_on(&window_sql(&table, &column, variant, model.version), all_tables)
                .await?
        } else {
            Vec::new()
        };
        let column = if variants.len() == 1 {
            keel_monitor::live::PREDICTION.to_string()
        } else {
            format!("{}[{variant}]", keel_monitor::live::PREDICTION)
        };
        if window.iter().map(|b| b.num_rows()).sum::<usize>() > 0 {
            scored_reference.push((column.clone(), scores.scores));
            logged.push((column, window));
        }
    }
    if scored_reference.is_empty() {
        return Ok(Err("no serving model variant logged scores in the window".into()));
    }
    // One table per side, a column per variant (padded with nulls: the tests skip them).
    let side = |columns: Vec<(String, Vec<Option<f64>>)>| -> anyhow::Result<keel_lake::arrow::array::RecordBatch> {
        use keel_lake::arrow::array::{ArrayRef, Float64Array};
        let n = columns.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        let arrays: Vec<(String, ArrayRef)> = columns
            .into_iter()
            .map(|(c, mut v)| {
                v.resize(n, None);
                (c, std::sync::Arc::new(Float64Array::from(v)) as ArrayRef)
            })
            .collect();
        Ok(keel_lake::arrow::array::RecordBatch::try_from_iter(arrays)?)
    };
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
                        let a = b
                            .column(0)
                            .as_any()
                            .downcast_ref::<keel_lake::arrow::array::Float64Array>();
                        a.map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default()
                    })
                    .collect();
                (c, values)
            })
            .collect(),
    )?;
    Ok(Ok(drift_batches(
        dir,
        "scores",
        &[reference_side],
        &[current_side],
        options,
    )
    .await?))
}

/// `columns` of `batches` as nullable doubles, in that order (as SQL's `CAST(.. AS DOUBLE)`:
/// a value that is not a number is an error, not a null).
fn as_doubles(
    batches: &[keel_lake::arrow::array::RecordBatch],
    columns: &[String],
) -> anyhow::Result<Vec<keel_lake::arrow::array::RecordBatch>> {
    use keel_lake::arrow::array::RecordBatch;
    use keel_lake::arrow::compute::{CastOptions, cast_with_options};
    use keel_lake::arrow::datatypes::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(
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
                        .with_context(|| format!("column {c:?} is missing"))?;
                    cast_with_options(column, &DataType::Float64, &strict)
                        .with_context(|| format!("column {c:?} ({}) as a double", column.data_type()))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(schema.clone(), arrays)?)
        })
        .collect()
}

/// The logged outputs of the window against the window before (`None` before there is one).
async fn previous_window(
    lake: &Lake,
    outputs: &[&str],
    window: &dyn Fn(i64, i64, &[String]) -> String,
    (now_us, window_us): (i64, i64),
    all_tables: &[String],
    dir: &std::path::Path,
    options: &keel_monitor::DriftOptions,
) -> anyhow::Result<Option<keel_monitor::DriftReport>> {
    if outputs.is_empty() {
        return Ok(None);
    }
    let outputs: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
    let before = lake
        .sql_on(
            &window(now_us - 2 * window_us, now_us - window_us, &outputs),
            all_tables,
        )
        .await?;
    let after = lake
        .sql_on(&window(now_us - window_us, now_us + 1, &outputs), all_tables)
        .await?;
    if before.iter().map(|b| b.num_rows()).sum::<usize>() == 0 {
        return Ok(None);
    }
    Ok(Some(drift_batches(dir, "outputs", &before, &after, options).await?))
}

/// Writes both sides to Parquet in `dir` and runs the drift tests on a blocking thread.
async fn drift_batches(
    dir: &std::path::Path,
    name: &str,
    reference: &[keel_lake::arrow::array::RecordBatch],
    current: &[keel_lake::arrow::array::RecordBatch],
    options: &keel_monitor::DriftOptions,
) -> anyhow::Result<keel_monitor::DriftReport> {
    let write = super::data::write_parquet;
    let (r, c) = (
        dir.join(format!("{name}_ref.parquet")),
        dir.join(format!("{name}_cur.parquet")),
    );
    write(&r, reference)?;
    write(&c, current)?;
    let options = options.clone();
    Ok(
        tokio::task::spawn_blocking(move || keel_monitor::drift_files(&r, &c, &options))
            .await
            .context("the drift task failed")??,
    )
}

#[cfg(test)]
mod tests {
    use super::as_doubles;
    use keel_lake::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

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
        let out = as_doubles(&[b], &["a".to_string(), "b".to_string()]).expect("numeric");
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
        let e = as_doubles(std::slice::from_ref(&b), &["x".to_string()]).expect_err("not numeric");
        assert!(format!("{e:#}").contains("column \"x\" (Utf8) as a double"), "{e:#}");
        let e = as_doubles(&[b], &["y".to_string()]).expect_err("absent");
        assert!(format!("{e:#}").contains("column \"y\" is missing"), "{e:#}");
    }
}
