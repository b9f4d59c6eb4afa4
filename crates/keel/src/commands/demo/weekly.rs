//! The flagship's weekly batch in `keel demo`. The chain's customer table lands in the lake;
//! every Monday a contextual deployment picks one promotion per customer in one batch (`keel
//! batch decide`), the list is exported for the e-mail system (`keel data export`), the
//! conversions come back as a table and are credited in bulk (`keel feedback ingest`), and the
//! week's conversion rate is compared with the holdout control group's. Week 1 explores; later
//! weeks use what earlier weeks' conversions taught the policy.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use keel_data::{Caller, ExportFormat, Ingest, Workspace};
use keel_experiments::Deployments;
use keel_lake::arrow::array::{Array, BooleanArray, StringArray};
use keel_lake::arrow::compute::cast;
use keel_lake::arrow::datatypes::DataType;
use keel_sim::weekly::{self, Send};
use keel_sim::world::World;

use crate::cli::Global;
use crate::commands::batch::print_decide;
use crate::commands::feedback::print_ingest;

/// The simulated campaign the weekly batch runs.
pub struct Campaign<'a> {
    pub deployment: &'a str,
    /// The deployment's spec (created on the first run of the demo, kept afterwards).
    pub spec: serde_json::Value,
    pub world: World,
    pub weeks: u32,
    /// Seed of the customers' responses (the world's randomness; week `w` draws from `seed + w`).
    pub seed: u64,
}

pub async fn run(
    global: &Global,
    ws: &Workspace,
    caller: &Caller,
    deployments: &Arc<Deployments>,
    campaign: &Campaign<'_>,
) -> anyhow::Result<()> {
    if deployments.get(campaign.deployment).is_err() {
        deployments
            .apply(
                campaign.deployment,
                &campaign.spec,
                &caller.actor().name,
                Some("the weekly e-mail campaign"),
            )
            .await?;
    }
    let dir = global.home.join("demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let customers = dir.join("customers.csv");
    write_file(&customers, |f| weekly::write_customers(&campaign.world, f))?;
    let about = "the chain's registered customers (simulated)";
    ingest(ws, caller, "customers", &customers, about, vec![]).await?;
    for week in 1..=campaign.weeks {
        one_week(ws, caller, deployments, campaign, &dir, week).await?;
    }
    println!(
        "  files exchanged with the e-mail system are in {}; tables: customers -> promo_sends_week_N -> promo_conversions_week_N",
        dir.display()
    );
    Ok(())
}

/// One Monday: decide for every customer, hand the list over, credit what came back.
async fn one_week(
    ws: &Workspace,
    caller: &Caller,
    deployments: &Arc<Deployments>,
    campaign: &Campaign<'_>,
    dir: &Path,
    week: u32,
) -> anyhow::Result<()> {
    let (run, sends_table, conversions_table) = (
        format!("week-{week}"),
        format!("promo_sends_week_{week}"),
        format!("promo_conversions_week_{week}"),
    );
    let job = keel_batch::DecideJob {
        deployment: campaign.deployment.to_owned(),
        from: "customers".into(),
        unit_column: "customer_id".into(),
        into: sends_table.clone(),
        run_id: Some(run.clone()),
        batch_rows: 8192,
    };
    let decided = keel_batch::decide(ws, deployments, caller, &job, &keel_batch::Control::new()).await?;
    print!("  week {week}: ");
    print_decide(&decided);
    // The list the e-mail system gets.
    let handed = dir.join(format!("{sends_table}.csv"));
    let exported = ws
        .export(caller, &sends_table, None, ExportFormat::Csv, &handed, true)
        .await?;
    println!("  exported {} sends to {}", exported.rows, handed.display());

    let sends = sends(ws, caller, &sends_table, &run).await?;
    let outcomes = weekly::convert(&campaign.world, &sends, campaign.seed + u64::from(week))?;
    let conversions = dir.join(format!("{conversions_table}.csv"));
    write_file(&conversions, |f| weekly::write_conversions(&outcomes, f))?;
    let about = "conversions the e-mail system reported for one week's sends";
    let lineage = vec![format!("table/{sends_table}")];
    ingest(ws, caller, &conversions_table, &conversions, about, lineage).await?;

    let feedback = keel_batch::IngestJob {
        deployment: campaign.deployment.to_owned(),
        from: conversions_table,
        key: keel_batch::RewardKey::Unit {
            column: "customer_id".into(),
            run,
        },
        reward_column: Some("converted".into()),
        metric_columns: Default::default(),
        batch_rows: 8192,
        files: false,
    };
    let credited = keel_batch::ingest(ws, deployments, caller, &feedback, &keel_batch::Control::new()).await?;
    print!("  ");
    print_ingest(&credited);

    let rate = |(conv, n): (u64, u64)| conv as f64 / n.max(1) as f64;
    let (keel, control) = (rate(outcomes.treated), rate(outcomes.control));
    let uniform = outcomes.treated_expected_uniform / outcomes.treated.1.max(1) as f64;
    // A 95% Wald interval on the difference of the two rates.
    let se = (keel * (1.0 - keel) / outcomes.treated.1.max(1) as f64
        + control * (1.0 - control) / outcomes.control.1.max(1) as f64)
        .sqrt();
    println!(
        "  week {week}: keel's picks converted {}/{} ({keel:.4}), the control group (rotation) {}/{} ({control:.4}): \
         difference {:+.4} (95% interval {:+.4} to {:+.4}); rotation would have converted these customers at {uniform:.4} (expected)",
        outcomes.treated.0,
        outcomes.treated.1,
        outcomes.control.0,
        outcomes.control.1,
        keel - control,
        keel - control - 1.96 * se,
        keel - control + 1.96 * se,
    );
    Ok(())
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces `table`'s rows with the file's (a new version each week).
async fn ingest(
    ws: &Workspace,
    caller: &Caller,
    table: &str,
    file: &Path,
    about: &str,
    derived_from: Vec<String>,
) -> anyhow::Result<()> {
    let request = Ingest {
        table: table.to_owned(),
        file: file.to_owned(),
        format: None,
        schema: None,
        overwrite: true,
        partition_by: None,
        owner: None,
        description: Some(about.to_owned()),
        derived_from,
        rows_read: None,
    };
    let done = ws.ingest(caller, &request).await?;
    println!(
        "  {table}: {} rows -> version {}",
        done.report.rows, done.report.version
    );
    Ok(())
}

/// A week's sends, as the batch wrote them.
async fn sends(ws: &Workspace, caller: &Caller, table: &str, run: &str) -> anyhow::Result<Vec<Send>> {
    let query = format!("SELECT unit, variant, control FROM {table} WHERE run_id = '{run}'");
    let mut sends = Vec::new();
    for batch in ws.sql(caller, &query).await? {
        let text = |i: usize| cast(batch.column(i), &DataType::Utf8);
        let (units, variants) = (text(0)?, text(1)?);
        let (units, variants, control) = (
            units.as_any().downcast_ref::<StringArray>(),
            variants.as_any().downcast_ref::<StringArray>(),
            batch.column(2).as_any().downcast_ref::<BooleanArray>(),
        );
        let (Some(units), Some(variants), Some(control)) = (units, variants, control) else {
            anyhow::bail!("promo_sends has unexpected column types: {:?}", batch.schema());
        };
        for i in 0..batch.num_rows() {
            if units.is_null(i) || variants.is_null(i) {
                continue;
            }
            sends.push(Send {
                customer: units.value(i).to_owned(),
                promotion: variants.value(i).to_owned(),
                control: control.value(i),
            });
        }
    }
    Ok(sends)
}
