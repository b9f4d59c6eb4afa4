//! `keel monitor label` and `keel monitor performance`

use anyhow::Context as _;
use keel_lake::Lake;
use keel_predlog::performance::{PerformanceOptions, PerformanceReport, performance};
use keel_predlog::{LabelIn, Sink as _};

use crate::cli::{Global, MonitorCommand};
use crate::output;

pub async fn run(global: &Global, cmd: MonitorCommand) -> anyhow::Result<()> {
    let lake = Lake::open(&global.home.join("lake"))?;
    match cmd {
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
            let tables = lake.tables()?;
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
